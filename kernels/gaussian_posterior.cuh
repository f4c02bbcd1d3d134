// The diagonal Gaussian posterior q(z|x) = N(mu, diag(e^lv)) of the general latent path (any prior,
// any objective): reparameterised samples with their log-density, and the backward pass. The
// (N(0, I) prior, ELBO) case has its fused fast path with the analytic KL, latent_sample_kl.cuh.
//
// Encoder head h[rows/k, 2L] = [mu | raw]; lv = soft_clamp(raw, -30, 20); sigma = e^(lv/2).
// Sample i of data row b = i / k (j = i % k) uses eps[u] = Philox normal at counter
// (u/4, row0 + b, step * step_scale + j, stream). The ELBO's training passes k = 1 and kStreamLatent
// (the fused path's noise, element for element); the importance-weighted bound's training k samples,
// kStreamLatent and step_scale k (so no two steps share a draw, and k = 1 is the ELBO's noise);
// evaluation's importance sampling k samples, step = the first sample's index and kStreamImportance.
//   sample:   z = mu + sigma * e, e = eps_scale * eps                                     [rows*k, L]
//             log_q[i] = sign * sum_u (-e^2/2 - lv/2 - log(2 pi)/2)  (log q(z|x) at that z) [rows*k]
//   backward: the loss holds sum_i w_i log q(z_i|x) (the ELBO: w_i = beta / batch; IWAE: the
//             normalised importance weight over the batch) and, through dz, everything that reads
//             z. With z = mu + sigma * e the total derivative of log q is 0 in mu and -1/2 in lv:
//               dmu = sum_j dz_j,  dlv = sum_j (dz_j * e_j * sigma / 2 - w_j / 2)
//             Doubly reparameterised (DReG, Tucker et al. 2018): log q's parameters are held
//             fixed, and only its path through z counts, d log q / dz = -e / sigma:
//               dmu = sum_j (dz_j - w_j e_j / sigma),  dlv = sum_j (dz_j * e_j * sigma - w_j e_j^2) / 2
//             draw = dlv * soft_clamp'(raw)                                               [rows, 2L]
//   moments:  mu[r, u] = h[r, u], lv[r, u] = soft_clamp(h[r, L + u])             [rows, L] each
//             (the posterior as the latent tools and the Python package hand it out)
// Bytes per sample: sample reads 8L (h) and writes 4L + 4; backward reads 8L + 4kL, writes 8L;
// moments reads 8L and writes 8L per row.
// One item per data row, sequential over its samples and L: deterministic. With a StepScalars
// record (a training step), step (and an unweighted w) are read from it when the work runs.
#pragma once

#include "for_each.cuh"
#include "grad_weight.cuh"
#include "philox.cuh"
#include "step_scalars.cuh"
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
  uint64_t step, step_scale;
  int64_t row0;
  T eps_scale, log_q_sign;
  const StepScalars* per_step;

  VAE_HD void operator()(int64_t i) const {
    const int64_t b = i / k, j = i % k;
    const uint64_t word = philox_step_of(per_step, step) * step_scale + static_cast<uint64_t>(j);
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
  const T* dz;  // [rows*k, L]
  T* dh;
  int latent, k;
  uint64_t seed;
  uint32_t stream;
  uint64_t step, step_scale;
  int64_t row0;
  T eps_scale;
  GradWeight<T> weight;  // of log q(z_i|x), per sample row i
  bool dreg;
  const StepScalars* per_step;

  VAE_HD void operator()(int64_t b) const {
    const uint64_t base = philox_step_of(per_step, step) * step_scale;
    const T* mu = h + b * 2 * latent;
    const T* raw = mu + latent;
    T* dmu = dh + b * 2 * latent;
    T* dlv = dmu + latent;
    for (int j = 0; j < k; ++j) {
      const int64_t i = b * k + j;
      const T w = weight.at(i);
      const T* g = dz + i * latent;
      philox_row_normals(seed, stream, row0 + b, base + static_cast<uint64_t>(j), latent, eps_scale != T(0),
                         [&](int u, float eps) {
                           const T lv = math::soft_clamp(raw[u], T(math::kLogvarMin), T(math::kLogvarMax));
                           const T e = eps_scale * T(eps);
                           const T sigma = hd::exp(T(0.5) * lv);
                           const T gm = dreg ? g[u] - w * e / sigma : g[u];
                           const T gl = dreg ? T(0.5) * (g[u] * e * sigma - w * e * e) : g[u] * e * T(0.5) * sigma - T(0.5) * w;
                           dmu[u] = j == 0 ? gm : dmu[u] + gm;
                           dlv[u] = j == 0 ? gl : dlv[u] + gl;
                         });
    }
    for (int u = 0; u < latent; ++u)
      dlv[u] *= math::soft_clamp_grad(raw[u], T(math::kLogvarMin), T(math::kLogvarMax));
  }
};

// log q(z_i | h_b) at given samples z [rows*k, L] (b = i / k): out[i] += sign * that. The
// doubly-reparameterised gradient's check holds these parameters fixed while z moves; the
// diagnostics evaluate the aggregate posterior with it.
template <class T>
struct GaussianLogDensity {
  const T* h;
  const T* z;
  T* out;
  int latent, k;
  T sign;
  VAE_HD void operator()(int64_t i) const {
    const T* mu = h + (i / k) * 2 * latent;
    const T* zi = z + i * latent;
    T acc = T(0);
    for (int u = 0; u < latent; ++u) {
      const T lv = math::soft_clamp(mu[latent + u], T(math::kLogvarMin), T(math::kLogvarMax));
      const T d = zi[u] - mu[u];
      acc += T(-0.5) * d * d * hd::exp(-lv) - T(0.5) * lv - T(math::kHalfLog2Pi);
    }
    out[i] += sign * acc;
  }
};

template <class Be, class T>
void gaussian_log_density(Be& be, const T* h, const T* z, int rows, int k, int latent, scalar_t<T> sign, T* out) {
  check(rows >= 1 && k >= 1 && latent >= 1 && h && z && out, "gaussian_log_density", "empty shape or null pointer");
  run(be, GaussianLogDensity<T>{h, z, out, latent, k, sign}, int64_t(rows) * k);
}

// Its backward, both the density's parameters and the point moving: the loss holds
// sum_i w_i log N(z_i; h_b) (b = i / k; a hierarchy's conditional prior log p(z_l | z_l+1) in the
// importance-weighted bound, w = minus the sample's normalised weight). With d = z - mu:
//   dz[i, u]    += -w_i d e^-lv
//   dh[b, u]    += sum_j w_i d e^-lv
//   dh[b, L+u]  += sum_j w_i (d^2 e^-lv - 1) / 2 * soft_clamp'(raw)
// One item per data row, its samples in order: deterministic. dz may be null (z held still).
// Bytes: reads 8L per row and 4L (+4L) per sample, writes 8L per row (+4L per sample).
template <class T>
struct GaussianLogDensityBackward {
  const T* h;
  const T* z;
  T* dh;
  T* dz;
  int latent, k;
  GradWeight<T> weight;
  VAE_HD void operator()(int64_t b) const {
    const T* mu = h + b * 2 * latent;
    const T* raw = mu + latent;
    T* dmu = dh + b * 2 * latent;
    T* draw = dmu + latent;
    for (int j = 0; j < k; ++j) {
      const int64_t i = b * k + j;
      const T w = weight.at(i);
      const T* zi = z + i * latent;
      T* dzi = dz ? dz + i * latent : nullptr;
      for (int u = 0; u < latent; ++u) {
        const T lv = math::soft_clamp(raw[u], T(math::kLogvarMin), T(math::kLogvarMax));
        const T inv = hd::exp(-lv), d = zi[u] - mu[u];
        if (dzi) dzi[u] -= w * d * inv;
        dmu[u] += w * d * inv;
        draw[u] += w * T(0.5) * (d * d * inv - T(1)) * math::soft_clamp_grad(raw[u], T(math::kLogvarMin), T(math::kLogvarMax));
      }
    }
  }
};

template <class Be, class T>
void gaussian_log_density_backward(Be& be, const T* h, const T* z, int rows, int k, int latent, const GradWeight<T>& weight,
                                   T* dh, T* dz) {
  check(rows >= 1 && k >= 1 && latent >= 1 && h && z && dh, "gaussian_log_density_backward", "empty shape or null pointer");
  run(be, GaussianLogDensityBackward<T>{h, z, dh, dz, latent, k, weight}, rows);
}

template <class T>
struct GaussianPosteriorMoments {
  const T* h;
  T* mu;
  T* lv;
  int latent;
  VAE_HD void operator()(int64_t i) const {
    const int64_t r = i / latent, u = i % latent;
    mu[i] = h[r * 2 * latent + u];
    lv[i] = math::soft_clamp(h[r * 2 * latent + latent + u], T(math::kLogvarMin), T(math::kLogvarMax));
  }
};

// mu and the clamped log-variance [rows, L] each from the encoder head h [rows, 2L].
template <class Be, class T>
void gaussian_posterior_moments(Be& be, const T* h, int rows, int latent, T* mu, T* lv) {
  check(rows >= 1 && latent >= 1 && h && mu && lv, "gaussian_posterior_moments", "empty shape or null pointer");
  run(be, GaussianPosteriorMoments<T>{h, mu, lv, latent}, int64_t(rows) * latent);
}

// The noise of one call: where it comes from and how it is scaled (eps_scale 0: z = mu).
struct PosteriorNoise {
  uint64_t seed = 0;
  uint32_t stream = kStreamLatent;
  uint64_t step = 0;
  uint64_t step_scale = 1;  // the counter word of sample j is step * step_scale + j
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
      GaussianPosteriorSample<T>{h, z, log_q, latent, k, n.seed, n.stream, n.step, n.step_scale, n.row0, T(n.eps_scale),
                                 log_q_sign, n.per_step},
      int64_t(rows) * k);
}

// dh[rows, 2L] from dz[rows*k, L] and the weight of each sample's log q in the loss; the noise must
// be the forward call's. dreg: the doubly-reparameterised gradient (log q's parameters held fixed).
template <class Be, class T>
void gaussian_posterior_backward(Be& be, const T* h, const T* dz, int rows, int k, int latent, const PosteriorNoise& n,
                                 const GradWeight<T>& log_q_weight, bool dreg, T* dh) {
  check(rows >= 1 && k >= 1 && latent >= 1 && h && dz && dh, "gaussian_posterior_backward", "empty shape or null pointer");
  run(be,
      GaussianPosteriorBackward<T>{h, dz, dh, latent, k, n.seed, n.stream, n.step, n.step_scale, n.row0, T(n.eps_scale),
                                   log_q_weight, dreg, n.per_step},
      rows);
}

// The ELBO's form: k = 1, one weight for every row (n.per_step's kl_grad_weight when set).
template <class Be, class T>
void gaussian_posterior_backward(Be& be, const T* h, const T* dz, int rows, int latent, const PosteriorNoise& n,
                                 scalar_t<T> log_q_weight, T* dh) {
  gaussian_posterior_backward(be, h, dz, rows, 1, latent, n, GradWeight<T>{log_q_weight, n.per_step}, false, dh);
}

}  // namespace vae::ops
