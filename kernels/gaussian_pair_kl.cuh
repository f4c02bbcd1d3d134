// The analytic KL between two diagonal Gaussians given as encoder-style heads, KL(q || p) per row:
// a hierarchy's level term KL(q(z_l | x, z_>l) || p(z_l | z_>l)), where both sides are networks'
// outputs and both get a gradient (the top-down path is shared by the prior and the posterior).
// hq, hp [rows, 2L] = [mu | raw]; lv = soft_clamp(raw, -30, 20);
//   KL_ru = (lvp - lvq + (e^lvq + (muq - mup)^2) e^-lvp - 1) / 2
//   rows:      kl[r] = sum_u KL_ru                                                          [rows]
//   dims:      kl_dim[u] = sum_r KL_ru (rows in order)                                      [L]
//   backward:  with v = w_r dim_weight[u] (the weight of KL_ru in the loss; dim_weight null = 1)
//              dhq[r, u]     += v (muq - mup) e^-lvp
//              dhq[r, L + u] += v (e^(lvq - lvp) - 1) / 2 * soft_clamp'(rawq)
//              dhp[r, u]     -= v (muq - mup) e^-lvp
//              dhp[r, L + u] += v (1 - (e^lvq + (muq - mup)^2) e^-lvp) / 2 * soft_clamp'(rawp)
// With p = N(0, I) (hp all zeros) it is gaussian_kl.cuh's KL. Bytes: rows and dims read 16L per row
// (each) and write 4 per row / per dimension; backward reads 16L, reads and writes 16L per row.
// Items are rows, dimensions or elements (one (r, u) writes its four gradient entries): deterministic.
#pragma once

#include "for_each.cuh"
#include "grad_weight.cuh"
#include "vae_math.cuh"

namespace vae::ops {

template <class T>
struct GaussianPair {
  const T* hq;
  const T* hp;
  int latent;
  VAE_HD T kl(int64_t r, int u) const {
    const T* q = hq + r * 2 * latent;
    const T* p = hp + r * 2 * latent;
    const T lvq = math::soft_clamp(q[latent + u], T(math::kLogvarMin), T(math::kLogvarMax));
    const T lvp = math::soft_clamp(p[latent + u], T(math::kLogvarMin), T(math::kLogvarMax));
    const T d = q[u] - p[u];
    return T(0.5) * (lvp - lvq + (hd::exp(lvq) + d * d) * hd::exp(-lvp) - T(1));
  }
};

template <class T>
struct GaussianPairKlRows {
  GaussianPair<T> g;
  T* kl;
  VAE_HD void operator()(int64_t r) const {
    T acc = T(0);
    for (int u = 0; u < g.latent; ++u) acc += g.kl(r, u);
    kl[r] = acc;
  }
};

template <class T>
struct GaussianPairKlDims {
  GaussianPair<T> g;
  T* kl_dim;
  int rows;
  VAE_HD void operator()(int64_t u) const {
    T acc = T(0);
    for (int r = 0; r < rows; ++r) acc += g.kl(r, static_cast<int>(u));
    kl_dim[u] = acc;
  }
};

template <class T>
struct GaussianPairKlBackward {
  GaussianPair<T> g;
  GradWeight<T> weight;
  const T* dim_weight;  // [L] or null
  T* dhq;
  T* dhp;
  VAE_HD void operator()(int64_t i) const {
    const int L = g.latent;
    const int64_t r = i / L;
    const int u = static_cast<int>(i % L);
    const T* q = g.hq + r * 2 * L;
    const T* p = g.hp + r * 2 * L;
    const T rawq = q[L + u], rawp = p[L + u];
    const T lvq = math::soft_clamp(rawq, T(math::kLogvarMin), T(math::kLogvarMax));
    const T lvp = math::soft_clamp(rawp, T(math::kLogvarMin), T(math::kLogvarMax));
    const T inv_vp = hd::exp(-lvp), d = q[u] - p[u];
    const T v = weight.at(r) * (dim_weight ? dim_weight[u] : T(1));
    const T dmu = v * d * inv_vp;
    dhq[r * 2 * L + u] += dmu;
    dhp[r * 2 * L + u] -= dmu;
    dhq[r * 2 * L + L + u] += v * T(0.5) * (hd::exp(lvq - lvp) - T(1)) *
                              math::soft_clamp_grad(rawq, T(math::kLogvarMin), T(math::kLogvarMax));
    dhp[r * 2 * L + L + u] += v * T(0.5) * (T(1) - (hd::exp(lvq) + d * d) * inv_vp) *
                              math::soft_clamp_grad(rawp, T(math::kLogvarMin), T(math::kLogvarMax));
  }
};

// kl [rows] and, when kl_dim is non-null, kl_dim [L].
template <class Be, class T>
void gaussian_pair_kl_forward(Be& be, const T* hq, const T* hp, int rows, int latent, T* kl, T* kl_dim) {
  check(rows >= 1 && latent >= 1 && hq && hp && kl, "gaussian_pair_kl_forward", "empty shape or null pointer");
  const GaussianPair<T> g{hq, hp, latent};
  run(be, GaussianPairKlRows<T>{g, kl}, rows);
  if (kl_dim) run(be, GaussianPairKlDims<T>{g, kl_dim, rows}, latent);
}

// dhq, dhp += the gradient of sum_r sum_u w_r dim_weight[u] KL_ru.
template <class Be, class T>
void gaussian_pair_kl_backward(Be& be, const T* hq, const T* hp, int rows, int latent, const GradWeight<T>& weight,
                               const T* dim_weight, T* dhq, T* dhp) {
  check(rows >= 1 && latent >= 1 && hq && hp && dhq && dhp, "gaussian_pair_kl_backward", "empty shape or null pointer");
  run(be, GaussianPairKlBackward<T>{{hq, hp, latent}, weight, dim_weight, dhq, dhp}, int64_t(rows) * latent);
}

}  // namespace vae::ops
