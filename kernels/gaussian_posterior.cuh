// The diagonal Gaussian posterior q(z|x) = N(mu, diag(e^lv)) of the general latent path (any prior,
// any objective): reparameterised samples with their log-density, and the backward pass. The
// (N(0, I) prior, ELBO) case has its fused twin with the analytic KL, latent_sample_kl.cu.
//
// Encoder head h[rows/k, 2L] = [mu | raw]; lv = soft_clamp(raw, -30, 20); sigma = e^(lv/2).
// Sample i of data row b = i / k (j = i % k) uses eps[u] = Philox normal at counter
// (u/4, row0 + b, step + j, stream): training passes k = 1 and kStreamLatent (the fused path's noise,
// element for element), importance sampling k samples and kStreamImportance.
//   sample:   z = mu + sigma * e, e = eps_scale * eps                                     [rows, L]
//             log_q[i] = sign * sum_u (-e^2/2 - lv/2 - log(2 pi)/2)  (log q(z|x) at that z) [rows]
//   backward: the loss holds w * log q(z|x) (w = beta / batch) and, through dz, everything that
//             reads z. With z = mu + sigma * e the total derivative of log q is 0 in mu and -1/2
//             in lv, so
//             dmu = dz,  draw = (dz * e * sigma / 2 - w / 2) * soft_clamp'(raw)            [rows, 2L]
// Bytes per sample: sample reads 8L (h) and writes 4L + 4; backward reads 8L + 4L, writes 8L.
// One item per sample row, sequential over L: deterministic. With a StepScalars record (a training
// step), step and w are read from it when the work runs.
#pragma once

#include "backend/backend.hpp"
#include "for_each.cuh"
#include "philox.cuh"
#include "vae_math.cuh"

namespace vae::ops {

template <class T>
struct GaussianPosteriorSample {
  const T* h;
  T* z;
  T* log_q;  // may be null
  int latent, k;
  uint64_t seed;
  uint32_t stream;
  uint64_t step;
  int64_t row0;
  T eps_scale, log_q_sign;
  const StepScalars* per_step;

  VAE_HD void operator()(int64_t i) const {
    const int64_t b = i / k, j = i % k;
    const uint64_t word = (per_step ? per_step->philox_step : step) + static_cast<uint64_t>(j);
    const T* mu = h + b * 2 * latent;
    const T* raw = mu + latent;
    T* zi = z + i * latent;
    T acc = T(0);
    philox_row_normals(seed, stream, row0 + b, word, latent, eps_scale != T(0), [&](int u, float eps) {
      const T lv = math::soft_clamp(raw[u], T(math::kLogvarMin), T(math::kLogvarMax));
      const T e = eps_scale * T(eps);
      zi[u] = mu[u] + hd::exp(T(0.5) * lv) * e;
      acc += T(-0.5) * e * e - T(0.5) * lv - T(math::kHalfLog2Pi);
    });
    if (log_q) log_q[i] = log_q_sign * acc;
  }
};

template <class T>
struct GaussianPosteriorBackward {
  const T* h;
  const T* dz;
  T* dh;
  int latent;
  uint64_t seed;
  uint32_t stream;
  uint64_t step;
  int64_t row0;
  T eps_scale, log_q_weight;
  const StepScalars* per_step;

  VAE_HD void operator()(int64_t r) const {
    const uint64_t word = per_step ? per_step->philox_step : step;
    const T w = per_step ? T(per_step->kl_grad_weight) : log_q_weight;
    const T* mu = h + r * 2 * latent;
    const T* raw = mu + latent;
    const T* g = dz + r * latent;
    T* dmu = dh + r * 2 * latent;
    T* draw = dmu + latent;
    philox_row_normals(seed, stream, row0 + r, word, latent, eps_scale != T(0), [&](int u, float eps) {
      const T lv = math::soft_clamp(raw[u], T(math::kLogvarMin), T(math::kLogvarMax));
      const T e = eps_scale * T(eps);
      dmu[u] = g[u];
      const T dlv = g[u] * e * T(0.5) * hd::exp(T(0.5) * lv) - T(0.5) * w;
      draw[u] = dlv * math::soft_clamp_grad(raw[u], T(math::kLogvarMin), T(math::kLogvarMax));
    });
  }
};

// The noise of one call: where it comes from and how it is scaled (eps_scale 0: z = mu).
struct PosteriorNoise {
  uint64_t seed = 0;
  uint32_t stream = kStreamLatent;
  uint64_t step = 0;
  int64_t row0 = 0;
  float eps_scale = 1.0f;
  const StepScalars* per_step = nullptr;  // step (and the backward's weight) from here when set
};

// z[rows*k, L] and log_q[rows*k] = log_q_sign * log q(z|x) (log_q may be null) for h[rows, 2L].
template <class Be, class T>
void gaussian_posterior_sample(Be& be, const T* h, int rows, int k, int latent, const PosteriorNoise& n,
                               scalar_t<T> log_q_sign, T* z, T* log_q) {
  check(rows >= 1 && k >= 1 && latent >= 1 && h && z, "gaussian_posterior_sample", "empty shape or null pointer");
  run(be,
      GaussianPosteriorSample<T>{h, z, log_q, latent, k, n.seed, n.stream, n.step, n.row0, T(n.eps_scale), log_q_sign,
                                 n.per_step},
      int64_t(rows) * k);
}

// dh[rows, 2L] from dz[rows, L] and the weight of log q in the loss (n.per_step's kl_grad_weight
// when set); the noise must be the forward call's (k = 1).
template <class Be, class T>
void gaussian_posterior_backward(Be& be, const T* h, const T* dz, int rows, int latent, const PosteriorNoise& n,
                                 scalar_t<T> log_q_weight, T* dh) {
  check(rows >= 1 && latent >= 1 && h && dz && dh, "gaussian_posterior_backward", "empty shape or null pointer");
  run(be,
      GaussianPosteriorBackward<T>{h, dz, dh, latent, n.seed, n.stream, n.step, n.row0, T(n.eps_scale), log_q_weight,
                                   n.per_step},
      rows);
}

}  // namespace vae::ops
