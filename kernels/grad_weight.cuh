// The weight a term has in the loss, as the backward passes read it. A plain ELBO weighs every
// row's KL term alike (beta / batch: a training step's record's kl_grad_weight); the
// importance-weighted bound weighs each sample by its normalised importance weight, so the
// backward of a prior or posterior takes one weight per row. at(r) is scale times, in order of
// precedence, rows[r], the step record's kl_grad_weight, or scalar (a constant weight: the tests'
// and the analytic per-dimension path's; scale -1: a term that enters the loss with the opposite
// sign, as a flow's log-determinant does).
#pragma once

#include "hd.cuh"
#include "step_scalars.cuh"

namespace vae::ops {

template <class T>
struct GradWeight {
  T scalar = T(0);
  const StepScalars* per_step = nullptr;
  const T* rows = nullptr;
  T scale = T(1);
  VAE_HD T at(int64_t r) const { return scale * (rows ? rows[r] : per_step ? T(per_step->kl_grad_weight) : scalar); }
  GradWeight negated() const {
    GradWeight g = *this;
    g.scale = -scale;
    return g;
  }
  bool same_as(const GradWeight& o) const {
    return scalar == o.scalar && per_step == o.per_step && rows == o.rows && scale == o.scale;
  }
};

// A prior's backward: the weight of -log p(z_r) in the loss for the gradient in z, and for the
// gradient in the prior's own parameters. They differ only for the doubly-reparameterised bound,
// whose encoder-side (z) weights are the squared normalised weights.
template <class T>
struct PriorGradWeights {
  GradWeight<T> z, params;
  static PriorGradWeights uniform(T w, const StepScalars* per_step) { return {{w, per_step}, {w, per_step}}; }
};

}  // namespace vae::ops
