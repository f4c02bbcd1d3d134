// The latent block's fused fast path: reparameterised sample and analytic KL to N(0, I), forward
// and backward (the general path is gaussian_posterior.cuh with a prior's density).
//
// Input h[rows, 2L] = [mu | raw]; logvar = soft_clamp(raw, -30, 20); sigma = exp(logvar / 2);
// eps[r, u] = Philox normal at counter (u/4, row0 + r, step, kStreamLatent): never stored.
//   forward:  z = mu + eps_scale * sigma * eps                        [rows, L]   (z = mu when eps_scale = 0)
//             kl_sample[r] = sum_u 0.5 (e^lv + mu^2 - 1 - lv)        [rows]
//             kl_dim[u]    = sum_r (the same term)                   [L]   (gaussian_kl.cuh's GaussianKlDims)
//   backward: dmu  = dz + w * mu                     (w = beta / batch, the KL weight: grad_weight.cuh)
//             draw = (dz * eps_scale * eps * sigma / 2 + w * (e^lv - 1) / 2) * soft_clamp'(raw)
// Bytes: forward reads h twice (8L per row for the rows, again for kl_dim) and writes 4L + 4 per
// row; backward reads h and dz (12L per row) and writes dh (8L per row).
// With a StepScalars record (a training step), the step is read from it when the op runs; so is w
// when the weight names the record.
// Items are groups of 4 columns, so each Philox block is computed once: the forward is a row op
// (the KL summed in column order), the backward one item per (row, group).
#pragma once

#include "for_each.cuh"
#include "gaussian_kl.cuh"
#include "grad_weight.cuh"
#include "philox.cuh"
#include "vae_math.cuh"

namespace vae::ops {

template <class T>
struct LatentSampleKlForward {
  using Scalar = T;
  const T* h;
  T* z;
  T* kl_sample;  // or null
  int latent;
  uint64_t seed, step;
  int64_t row0;
  T eps_scale;
  const StepScalars* per_step;  // or null
  int64_t items;                // groups of 4 columns
  VAE_HD void operator()(int64_t r, int64_t group, T& acc) const {
    const T* mu = h + r * 2 * latent;
    const T* raw = mu + latent;
    T* zr = z + r * latent;
    const int c0 = static_cast<int>(group) * 4;
    float eps[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (eps_scale != T(0))
      philox_normals(philox_block(seed, kStreamLatent, row0 + r, philox_step_of(per_step, step), c0 >> 2), eps);
    for (int lane = 0; lane < 4; ++lane) {
      const int u = c0 + lane;
      if (u >= latent) break;
      const T lv = math::soft_clamp(raw[u], T(math::kLogvarMin), T(math::kLogvarMax));
      zr[u] = eps_scale == T(0) ? mu[u] : mu[u] + eps_scale * hd::exp(T(0.5) * lv) * T(eps[lane]);
      acc += math::gaussian_kl(mu[u], lv);
    }
  }
  VAE_HD void finish(int64_t r, T total) const {
    if (kl_sample) kl_sample[r] = total;
  }
};

template <class T>
struct LatentSampleKlBackward {
  const T* h;
  const T* dz;
  T* dh;
  int latent, groups;
  uint64_t seed, step;
  int64_t row0;
  T eps_scale;
  GradWeight<T> kl_weight;
  const StepScalars* per_step;  // or null: the step as given
  VAE_HD void operator()(int64_t i) const {
    const int64_t r = i / groups;
    const int c0 = static_cast<int>(i % groups) * 4;
    const T w = kl_weight.at(r);
    const T* mu = h + r * 2 * latent;
    const T* raw = mu + latent;
    const T* g = dz + r * latent;
    T* dmu = dh + r * 2 * latent;
    T* draw = dmu + latent;
    float eps4[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // the forward's noise, recomputed
    if (eps_scale != T(0))
      philox_normals(philox_block(seed, kStreamLatent, row0 + r, philox_step_of(per_step, step), c0 >> 2), eps4);
    for (int lane = 0; lane < 4; ++lane) {
      const int u = c0 + lane;
      if (u >= latent) break;
      const T lv = math::soft_clamp(raw[u], T(math::kLogvarMin), T(math::kLogvarMax));
      const T sigma = hd::exp(T(0.5) * lv);
      dmu[u] = g[u] + w * mu[u];
      const T dlv = g[u] * eps_scale * T(eps4[lane]) * T(0.5) * sigma + w * math::gaussian_kl_grad_logvar(lv);
      draw[u] = dlv * math::soft_clamp_grad(raw[u], T(math::kLogvarMin), T(math::kLogvarMax));
    }
  }
};

// z [rows, L], kl_sample [rows] (may be null) and kl_dim [L] (may be null).
template <class Be, class T>
void latent_sample_kl_forward(Be& be, const LatentArgs& a, const T* h, T* z, T* kl_sample, T* kl_dim) {
  check(a.rows >= 1 && a.latent >= 1 && h && z, "latent_sample_kl_forward", "empty shape or null pointer");
  run_rows(be,
           LatentSampleKlForward<T>{h, z, kl_sample, a.latent, a.seed, a.step, a.row0, T(a.eps_scale), a.per_step,
                                    (a.latent + 3) / 4},
           a.rows);
  if (kl_dim) run(be, GaussianKlDims<T>{h, kl_dim, a.rows, a.latent}, a.latent);
}

// dh [rows, 2L] from dz and the KL's gradient weighted by kl_weight (beta / batch: in a training step
// the step record's kl_grad_weight).
template <class Be, class T>
void latent_sample_kl_backward(Be& be, const LatentArgs& a, const T* h, const T* dz, const GradWeight<T>& kl_weight,
                               T* dh) {
  check(a.rows >= 1 && a.latent >= 1 && h && dz && dh, "latent_sample_kl_backward", "empty shape or null pointer");
  const int groups = (a.latent + 3) / 4;
  run(be,
      LatentSampleKlBackward<T>{h, dz, dh, a.latent, groups, a.seed, a.step, a.row0, T(a.eps_scale), kl_weight,
                                a.per_step},
      int64_t(a.rows) * groups);
}

}  // namespace vae::ops
