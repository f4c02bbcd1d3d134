// Bernoulli likelihood with logits, value and gradient in one pass over the logits.
//   nll[r]        = sum_i softplus(l[r,i]) - x[r,i] * l[r,i]        [rows]
//   dlogits[r, i] = grad_scale * (sigmoid(l[r,i]) - x[r,i])          [rows, d]  (skipped when null)
// Exact and finite at any logit (vae_math.cuh). Bytes: reads 8d, writes 4d + 4 per row.
// A row op (for_each.cuh's run_rows): one task / one block per row, a fixed-order sum.
#pragma once

#include "for_each.cuh"
#include "vae_math.cuh"

namespace vae::ops {

// Grad: dlogits is written (the training step) or not (evaluation): a template flag, so the
// per-pixel loop has one formula and no test.
template <class T, bool Grad>
struct BernoulliNll {
  using Scalar = T;
  const T* logits;
  const T* x;
  T* nll;
  T* dlogits;  // written when Grad
  T grad_scale;
  int64_t items;  // d
  VAE_HD void operator()(int64_t r, int64_t i, T& acc) const {
    const int64_t k = r * items + i;
    if constexpr (Grad) {
      T grad;
      acc += math::bernoulli_nll_with_grad(logits[k], x[k], grad);
      dlogits[k] = grad_scale * grad;
    } else {
      acc += math::bernoulli_nll(logits[k], x[k]);
    }
  }
  VAE_HD void finish(int64_t r, T total) const { nll[r] = total; }
};

template <class Be, class T>
void bernoulli_nll(Be& be, const T* logits, const T* x, T* nll, T* dlogits, int rows, int d, scalar_t<T> grad_scale) {
  check(rows >= 1 && d >= 1 && logits && x && nll, "bernoulli_nll", "empty shape or null pointer");
  if (dlogits) run_rows(be, BernoulliNll<T, true>{logits, x, nll, dlogits, grad_scale, d}, rows);
  else run_rows(be, BernoulliNll<T, false>{logits, x, nll, dlogits, grad_scale, d}, rows);
}

}  // namespace vae::ops
