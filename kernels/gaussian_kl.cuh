// The analytic KL of the diagonal Gaussian posterior to N(0, I), per dimension, on the general
// latent path: what free bits over groups of dimensions needs (a per-dimension weight in the
// backward, which the fused latent_sample_kl, with one weight for every dimension, does not take).
//
// h[rows, 2L] = [mu | raw]; lv = soft_clamp(raw, -30, 20); KL_ru = (e^lv + mu^2 - 1 - lv) / 2.
//   rows:      kl[r] = sum_u KL_ru                                                          [rows]
//   dims:      kl_dim[u] = sum_r KL_ru (rows in order)                                      [L]
//   backward:  dh[r, u] += w_u mu_ru,  dh[r, L + u] += w_u (e^lv - 1) / 2 * soft_clamp'(raw)   [rows, 2L]
//              (the gradient of sum_r sum_u w_u KL_ru; the sample's own part comes from
//              gaussian_posterior_backward with a zero log q weight)
// Bytes: rows and dims read 8L per row (each) and write 4 per row / 4 per dimension; backward
// reads 8L + 4L and writes 8L per row. Items are rows, dimensions or elements: deterministic.
#pragma once

#include "for_each.cuh"
#include "vae_math.cuh"

namespace vae::ops {

template <class T>
VAE_HD T posterior_kl(const T* h, int latent, int64_t r, int u) {
  const T* mu = h + r * 2 * latent;
  return math::gaussian_kl(mu[u], math::soft_clamp(mu[latent + u], T(math::kLogvarMin), T(math::kLogvarMax)));
}

template <class T>
struct GaussianKlRows {
  const T* h;
  T* kl;
  int latent;
  VAE_HD void operator()(int64_t r) const {
    T acc = T(0);
    for (int u = 0; u < latent; ++u) acc += posterior_kl(h, latent, r, u);
    kl[r] = acc;
  }
};

template <class T>
struct GaussianKlDims {
  const T* h;
  T* kl_dim;
  int rows, latent;
  VAE_HD void operator()(int64_t u) const {
    T acc = T(0);
    for (int r = 0; r < rows; ++r) acc += posterior_kl(h, latent, r, static_cast<int>(u));
    kl_dim[u] = acc;
  }
};

template <class T>
struct GaussianKlBackward {
  const T* h;
  const T* dim_weight;  // [L]
  T* dh;
  int latent;
  VAE_HD void operator()(int64_t i) const {
    const int64_t r = i / latent;
    const int u = static_cast<int>(i % latent);
    const T* mu = h + r * 2 * latent;
    const T raw = mu[latent + u];
    const T lv = math::soft_clamp(raw, T(math::kLogvarMin), T(math::kLogvarMax));
    const T w = dim_weight[u];
    dh[r * 2 * latent + u] += w * mu[u];
    dh[r * 2 * latent + latent + u] +=
        w * math::gaussian_kl_grad_logvar(lv) * math::soft_clamp_grad(raw, T(math::kLogvarMin), T(math::kLogvarMax));
  }
};

// kl [rows] and, when kl_dim is non-null, kl_dim [L].
template <class Be, class T>
void gaussian_kl_forward(Be& be, const T* h, int rows, int latent, T* kl, T* kl_dim) {
  check(rows >= 1 && latent >= 1 && h && kl, "gaussian_kl_forward", "empty shape or null pointer");
  run(be, GaussianKlRows<T>{h, kl, latent}, rows);
  if (kl_dim) run(be, GaussianKlDims<T>{h, kl_dim, rows, latent}, latent);
}

// dh += the gradient of sum_r sum_u dim_weight[u] KL_ru.
template <class Be, class T>
void gaussian_kl_backward(Be& be, const T* h, const T* dim_weight, int rows, int latent, T* dh) {
  check(rows >= 1 && latent >= 1 && h && dim_weight && dh, "gaussian_kl_backward", "empty shape or null pointer");
  run(be, GaussianKlBackward<T>{h, dim_weight, dh, latent}, int64_t(rows) * latent);
}

}  // namespace vae::ops
