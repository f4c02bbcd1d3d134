// Importance sampling for the k-sample bound on log p(x) (Burda et al.), streamed over chunks of k.
//   latent_importance_sample: for data row b and sample j (row b*k + j), eps from Philox counter
//     (u/4, row0 + b, sample0 + j, kStreamImportance); z = mu + sigma * eps                 [rows*k, L]
//     log_pz_minus_qz = sum_u -z^2/2 + eps^2/2 + lv/2  (log N(z;0,I) - log N(z;mu,sigma^2))  [rows*k]
//     Bytes: reads 8L per data row per sample (from cache), writes 4L + 4 per sample.
//   logsumexp_accumulate: per data row, folds w_j = log_pz_minus_qz - nll over the chunk into a
//     running (max, sum) so memory does not grow with k: afterwards log sum_j e^w_j = max + log(sum).
//     A row whose log-weights are all -inf so far keeps (-inf, 0): log p(x) = -inf, never NaN.
//     With running_sum_sq it also folds sum_j e^(2 (w_j - max)), so that the weights' effective
//     sample size (sum w)^2 / sum w^2 (Kong 1992) is sum^2 / sum_sq, both relative to the one max.
//     Reads 8k bytes per row, writes 8 (12).
// One item per sample row / data row, sequential over L / k: deterministic.
#pragma once

#include "for_each.cuh"
#include "philox.cuh"
#include "vae_math.cuh"

namespace vae::ops {

template <class T>
struct LatentImportanceSample {
  const T* h;
  T* z;
  T* log_pz_minus_qz;
  int k, latent;
  uint64_t seed;
  int64_t row0, sample0;
  VAE_HD void operator()(int64_t row) const {
    const int64_t b = row / k, j = row % k;
    const T* mu = h + b * 2 * latent;
    T acc = 0;
    philox_row_normals(seed, kStreamImportance, uint64_t(row0 + b), uint64_t(sample0 + j), latent, true,
                       [&](int u, float e) {
                         const T eps = T(e);
                         const T lv = math::soft_clamp(mu[latent + u], T(math::kLogvarMin), T(math::kLogvarMax));
                         const T zu = mu[u] + hd::exp(T(0.5) * lv) * eps;
                         z[row * latent + u] = zu;
                         // log N(z; 0, 1) - log N(z; mu, sigma^2); the 0.5*log(2 pi) terms cancel.
                         acc += T(-0.5) * zu * zu + T(0.5) * eps * eps + T(0.5) * lv;
                       });
    log_pz_minus_qz[row] = acc;
  }
};

template <class T>
struct LogSumExpAccumulate {
  const T* log_pz_minus_qz;
  const T* nll;
  int k;
  T* running_max;
  T* running_sum;
  T* running_sum_sq;  // optional
  VAE_HD void operator()(int64_t b) const {
    const T* a = log_pz_minus_qz + b * k;
    const T* c = nll + b * k;
    const T old_max = running_max[b], none = T(-INFINITY);
    T m = old_max;
    for (int j = 0; j < k; ++j) m = m < a[j] - c[j] ? a[j] - c[j] : m;  // std::max's order: a NaN is passed over
    if (m == none) {  // every weight so far is zero: the sums stay 0 (not exp(-inf + inf))
      running_sum[b] = T(0);
      if (running_sum_sq) running_sum_sq[b] = T(0);
      return;
    }
    const T rescale = old_max == none ? T(0) : hd::exp(old_max - m);
    T s = old_max == none ? T(0) : running_sum[b] * rescale;
    T s2 = old_max == none || !running_sum_sq ? T(0) : running_sum_sq[b] * rescale * rescale;
    for (int j = 0; j < k; ++j) {
      const T e = hd::exp(a[j] - c[j] - m);
      s += e;
      s2 += e * e;
    }
    running_max[b] = m;
    running_sum[b] = s;
    if (running_sum_sq) running_sum_sq[b] = s2;
  }
};

template <class Be, class T>
void latent_importance_sample(Be& be, const T* h, T* z, T* log_pz_minus_qz, int rows, int k, int latent,
                              uint64_t seed, int64_t row0, int64_t sample0) {
  check(rows >= 1 && k >= 1 && latent >= 1 && h && z && log_pz_minus_qz, "latent_importance_sample",
        "empty shape or null pointer");
  run(be, LatentImportanceSample<T>{h, z, log_pz_minus_qz, k, latent, seed, row0, sample0}, int64_t(rows) * k);
}

template <class Be, class T>
void logsumexp_accumulate(Be& be, const T* log_pz_minus_qz, const T* nll, int rows, int k, T* running_max,
                          T* running_sum, T* running_sum_sq = nullptr) {
  check(rows >= 1 && k >= 1 && log_pz_minus_qz && nll && running_max && running_sum, "logsumexp_accumulate",
        "empty shape or null pointer");
  run(be, LogSumExpAccumulate<T>{log_pz_minus_qz, nll, k, running_max, running_sum, running_sum_sq}, rows);
}

}  // namespace vae::ops
