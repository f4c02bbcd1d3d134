// The standard normal prior p(z) = N(0, I) on the general latent path (the fused latent_sample_kl
// takes the analytic KL instead). Sampling is elementwise.cuh's normal_fill (kStreamPrior).
//   log_prob:  out[r] += sign * sum_u (-z_u^2/2 - log(2 pi)/2)                           [rows]
//   grad_z:    dz[r, u] += w_r * z[r, u]   (the gradient of -w_r log p(z_r); w = beta / batch, or
//              a per-row weight: grad_weight.cuh)                                          [rows, L]
// Bytes: log_prob reads 4L + 4 and writes 4 per row; grad_z reads 8 and writes 4 per element.
#pragma once

#include "for_each.cuh"
#include "grad_weight.cuh"
#include "step_scalars.cuh"
#include "vae_math.cuh"

namespace vae::ops {

template <class T>
struct StandardNormalLogProb {
  const T* z;
  T* out;
  int latent;
  T sign;
  VAE_HD void operator()(int64_t r) const {
    const T* zr = z + r * latent;
    T acc = T(0);
    for (int u = 0; u < latent; ++u) acc += T(-0.5) * zr[u] * zr[u] - T(math::kHalfLog2Pi);
    out[r] += sign * acc;
  }
};

template <class T>
struct StandardNormalGradZ {
  const T* z;
  T* dz;
  int latent;
  GradWeight<T> weight;
  VAE_HD void operator()(int64_t i) const { dz[i] += weight.at(i / latent) * z[i]; }
};

template <class Be, class T>
void standard_normal_log_prob(Be& be, const T* z, int rows, int latent, scalar_t<T> sign, T* out) {
  check(rows >= 1 && latent >= 1 && z && out, "standard_normal_log_prob", "empty shape or null pointer");
  run(be, StandardNormalLogProb<T>{z, out, latent, sign}, rows);
}

// weight: of -log p(z_r) in the loss, per row.
template <class Be, class T>
void standard_normal_grad_z(Be& be, const T* z, int rows, int latent, const GradWeight<T>& weight, T* dz) {
  check(rows >= 1 && latent >= 1 && z && dz, "standard_normal_grad_z", "empty shape or null pointer");
  run(be, StandardNormalGradZ<T>{z, dz, latent, weight}, int64_t(rows) * latent);
}

}  // namespace vae::ops
