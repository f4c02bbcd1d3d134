// Logistic likelihood per pixel, value and gradients in one pass: the continuous density under the
// discretized logistic likelihoods of PixelCNN++, NVAE and vae_vampprior (which subtract two of its
// CDFs per 8-bit level), with a mean and a log-scale per element from the decoder.
//   z[r,i]         = (x - m) e^(-ls)
//   nll[r]         = sum_i ls + z + 2 softplus(-z)        (= -log [e^-z / (s (1 + e^-z)^2)])   [rows]
//   dmean[r, i]    = grad_scale * -e^(-ls) tanh(z / 2)                                          [rows, d]
//   dlog_scale[r,i]= grad_scale * (1 - z tanh(z / 2))                                          [rows, d]
// Finite at any z (softplus without overflow). Bytes: reads 12d, writes 8d + 4 per row (4 without
// the gradients). A row op (for_each.cuh's run_rows): one task / one block per row, a fixed-order sum.
#pragma once

#include "for_each.cuh"
#include "vae_math.cuh"

namespace vae::ops {

template <class T>
struct LogisticNll {
  using Scalar = T;
  const T* mean;
  const T* log_scale;
  const T* x;
  T* nll;
  T* dmean;       // or null (then dlog_scale is not written either)
  T* dlog_scale;  // or null
  T grad_scale;
  int64_t items;  // d
  VAE_HD void operator()(int64_t r, int64_t i, T& acc) const {
    const int64_t k = r * items + i;
    const T inv_s = hd::exp(-log_scale[k]);
    const T z = (x[k] - mean[k]) * inv_s;
    acc += log_scale[k] + z + T(2) * math::softplus(-z);
    if (!dmean) return;
    const T t = hd::tanh(T(0.5) * z);
    dmean[k] = grad_scale * (-inv_s * t);
    if (dlog_scale) dlog_scale[k] = grad_scale * (T(1) - z * t);
  }
  VAE_HD void finish(int64_t r, T total) const { nll[r] = total; }
};

template <class Be, class T>
void logistic_nll(Be& be, const T* mean, const T* log_scale, const T* x, T* nll, T* dmean, T* dlog_scale, int rows,
                  int d, scalar_t<T> grad_scale) {
  check(rows >= 1 && d >= 1 && mean && log_scale && x && nll, "logistic_nll", "empty shape or null pointer");
  check(dmean || !dlog_scale, "logistic_nll", "the log-scale gradient comes with the mean's");
  run_rows(be, LogisticNll<T>{mean, log_scale, x, nll, dmean, dlog_scale, grad_scale, d}, rows);
}

}  // namespace vae::ops
