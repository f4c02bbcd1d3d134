// Gaussian likelihood, value and gradients in one pass, with a fixed or a learned per-pixel sigma.
//   ls[i]         = soft_clamp(log_sigma_raw[i], -6.9, 4), or fixed_log_sigma
//   nll[r]        = sum_i 0.5 log(2 pi) + ls[i] + (x - m)^2 / (2 e^(2 ls[i]))          [rows]
//   dmean[r, i]   = grad_scale * (m - x) e^(-2 ls[i])                                 [rows, d]
//   dlog_sigma[i] = grad_scale * soft_clamp'(raw[i]) * sum_r (1 - (x - m)^2 e^(-2 ls[i]))   [d]
// Bytes: reads 8d (+4d for the learned sigma) and writes 4d + 4 per row; the sigma gradient reads
// the [rows, d] inputs again. The likelihood is a row op (one task / block per row, fixed-order
// sum); the sigma gradient one item per pixel over the rows in order (the batch is short).
#pragma once

#include "for_each.cuh"
#include "vae_math.cuh"

namespace vae::ops {

template <class T>
VAE_HD T gaussian_log_sigma(const T* raw, T fixed, int64_t i) {
  return raw ? math::soft_clamp(raw[i], T(math::kLogSigmaMin), T(math::kLogSigmaMax)) : fixed;
}

template <class T>
struct GaussianNll {
  using Scalar = T;
  const T* mean;
  const T* x;
  const T* log_sigma_raw;  // or null: fixed_log_sigma everywhere
  T fixed_log_sigma;
  T* nll;
  T* dmean;  // or null
  T grad_scale;
  int64_t items;  // d
  VAE_HD void operator()(int64_t r, int64_t i, T& acc) const {
    const int64_t k = r * items + i;
    const T ls = gaussian_log_sigma(log_sigma_raw, fixed_log_sigma, i);
    acc += math::gaussian_nll(mean[k], x[k], ls);
    if (dmean) dmean[k] = grad_scale * math::gaussian_nll_grad_mean(mean[k], x[k], ls);
  }
  VAE_HD void finish(int64_t r, T total) const { nll[r] = total; }
};

template <class T>
struct GaussianLogSigmaGrad {
  const T* mean;
  const T* x;
  const T* log_sigma_raw;
  T* dlog_sigma;
  T grad_scale;
  int rows, d;
  VAE_HD void operator()(int64_t i) const {
    const T ls = gaussian_log_sigma(log_sigma_raw, T(0), i);
    T g = 0;
    for (int r = 0; r < rows; ++r) {
      const int64_t k = int64_t(r) * d + i;
      g += math::gaussian_nll_grad_log_sigma(mean[k], x[k], ls);
    }
    dlog_sigma[i] = grad_scale * g * math::soft_clamp_grad(log_sigma_raw[i], T(math::kLogSigmaMin), T(math::kLogSigmaMax));
  }
};

// dlog_sigma[d] (summed over rows, scaled) is written when both it and log_sigma_raw are non-null.
template <class Be, class T>
void gaussian_nll(Be& be, const T* mean, const T* x, const T* log_sigma_raw, scalar_t<T> fixed_log_sigma, T* nll,
                  T* dmean, T* dlog_sigma, int rows, int d, scalar_t<T> grad_scale) {
  check(rows >= 1 && d >= 1 && mean && x && nll, "gaussian_nll", "empty shape or null pointer");
  run_rows(be, GaussianNll<T>{mean, x, log_sigma_raw, fixed_log_sigma, nll, dmean, grad_scale, d}, rows);
  if (dlog_sigma && log_sigma_raw)
    run(be, GaussianLogSigmaGrad<T>{mean, x, log_sigma_raw, dlog_sigma, grad_scale, rows, d}, d);
}

}  // namespace vae::ops
