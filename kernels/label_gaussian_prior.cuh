// The label-conditioned prior of a conditional VAE, p(z | y) = N(z; m_y, diag(e^lv_y)): one learned
// diagonal Gaussian per class (lv = soft_clamp(raw, -30, 20)). Parameters: means [classes, L], raw
// log-variances [classes, L]. Labels y are the device's float class indices (condition.cuh), one per
// data row; z row i belongs to data row i / repeat (k importance samples of a row share its label).
//   log_prob:   out[i] += sign * sum_u -((z_iu - m_yu)^2 e^-lv_yu + lv_yu + log 2 pi) / 2      [rows]
//   grad_z:     dz[i, u] += w_i (z_iu - m_yu) e^-lv_yu      (the gradient of -w_i log p(z_i | y))
//   grad_param: dmeans[c, u] = -sum_{i: y = c} w_i (z_iu - m_cu) e^-lv_cu
//               draw[c, u]   = -sum_{i: y = c} w_i ((z_iu - m_cu)^2 e^-lv_cu - 1) / 2 * soft_clamp'(raw)
//               (overwritten: one item per parameter, summing the rows in order: deterministic)
//   sample:     z_i = m_y + T e^(lv_y / 2) eps, eps as normal_fill draws it (row i, kStreamPrior)
// Bytes: log_prob reads 12L + 4 and writes 4 per row; grad_z reads 12L, writes 4L per row;
// grad_param reads 4L + 8 per row for each of the 2 classes x L parameter columns it sums.
#pragma once

#include "for_each.cuh"
#include "grad_weight.cuh"
#include "philox.cuh"
#include "vae_math.cuh"

namespace vae::ops {

template <class T>
struct LabelGaussianParams {
  const T* means;       // [classes, L]
  const T* raw_logvar;  // [classes, L]
  const T* labels;      // [rows / repeat], float class indices
  int classes, latent, repeat;
  VAE_HD int64_t label_of(int64_t i) const { return int64_t(labels[i / repeat]); }
  VAE_HD T logvar(int64_t cu) const { return math::soft_clamp(raw_logvar[cu], T(math::kLogvarMin), T(math::kLogvarMax)); }
};

template <class T>
struct LabelGaussianLogProb {
  LabelGaussianParams<T> p;
  const T* z;
  T* out;
  T sign;
  VAE_HD void operator()(int64_t i) const {
    const int64_t c = p.label_of(i) * p.latent;
    const T* zi = z + i * p.latent;
    T acc = T(0);
    for (int u = 0; u < p.latent; ++u) {
      const T lv = p.logvar(c + u), d = zi[u] - p.means[c + u];
      acc -= T(0.5) * (d * d * hd::exp(-lv) + lv) + T(math::kHalfLog2Pi);
    }
    out[i] += sign * acc;
  }
};

template <class T>
struct LabelGaussianGradZ {
  LabelGaussianParams<T> p;
  const T* z;
  T* dz;
  GradWeight<T> weight;
  VAE_HD void operator()(int64_t k) const {
    const int64_t i = k / p.latent, u = k % p.latent, c = p.label_of(i) * p.latent + u;
    dz[k] += weight.at(i) * (z[k] - p.means[c]) * hd::exp(-p.logvar(c));
  }
};

// One item per parameter column (c, u): both of its gradients, over the rows of class c in order.
template <class T>
struct LabelGaussianGradParams {
  LabelGaussianParams<T> p;
  const T* z;
  int64_t rows;
  GradWeight<T> weight;
  T* dmeans;
  T* draw;
  VAE_HD void operator()(int64_t cu) const {
    const int64_t c = cu / p.latent, u = cu % p.latent;
    const T m = p.means[cu], raw = p.raw_logvar[cu];
    const T lv = p.logvar(cu), inv_var = hd::exp(-lv);
    T gm = T(0), glv = T(0);
    for (int64_t i = 0; i < rows; ++i) {
      if (p.label_of(i) != c) continue;
      const T w = weight.at(i), d = z[i * p.latent + u] - m;
      gm -= w * d * inv_var;
      glv -= w * T(0.5) * (d * d * inv_var - T(1));
    }
    dmeans[cu] = gm;
    draw[cu] = glv * math::soft_clamp_grad(raw, T(math::kLogvarMin), T(math::kLogvarMax));
  }
};

template <class T>
struct LabelGaussianSample {
  LabelGaussianParams<T> p;
  T* z;
  T temperature;
  uint64_t seed;
  int groups;  // ceil(L / 4): one Philox block per 4 columns, as normal_fill
  VAE_HD void operator()(int64_t k) const {
    const int64_t i = k / groups;
    const int c0 = static_cast<int>(k % groups) * 4;
    float eps[4];
    philox_normals(philox_block(seed, kStreamPrior, uint64_t(i), 0, uint64_t(c0) >> 2), eps);
    const int64_t c = p.label_of(i) * p.latent;
    for (int lane = 0; lane < 4 && c0 + lane < p.latent; ++lane) {
      const int64_t cu = c + c0 + lane;
      z[i * p.latent + c0 + lane] = p.means[cu] + temperature * hd::exp(T(0.5) * p.logvar(cu)) * T(eps[lane]);
    }
  }
};

inline void check_label_gaussian(const void* means, const void* raw, const void* labels, int classes, int latent,
                                 int repeat, const char* op) {
  check(means && raw && labels, op, "null parameters or labels (a conditional prior needs the batch's labels)");
  check(classes >= 1 && latent >= 1 && repeat >= 1, op, "empty shape");
}

template <class Be, class T>
void label_gaussian_log_prob(Be& be, const LabelGaussianParams<T>& p, const T* z, int rows, scalar_t<T> sign, T* out) {
  check_label_gaussian(p.means, p.raw_logvar, p.labels, p.classes, p.latent, p.repeat, "label_gaussian_log_prob");
  check(rows >= 1 && z && out, "label_gaussian_log_prob", "empty shape or null pointer");
  run(be, LabelGaussianLogProb<T>{p, z, out, sign}, rows);
}

// weight: of -log p(z_i | y) in the loss, for z (dz) and for the parameters (dmeans, draw: overwritten).
template <class Be, class T>
void label_gaussian_backward(Be& be, const LabelGaussianParams<T>& p, const T* z, int rows, const PriorGradWeights<T>& w,
                             T* dz, T* dmeans, T* draw) {
  check_label_gaussian(p.means, p.raw_logvar, p.labels, p.classes, p.latent, p.repeat, "label_gaussian_backward");
  check(rows >= 1 && z && dz && dmeans && draw, "label_gaussian_backward", "empty shape or null pointer");
  run(be, LabelGaussianGradZ<T>{p, z, dz, w.z}, int64_t(rows) * p.latent);
  run(be, LabelGaussianGradParams<T>{p, z, rows, w.params, dmeans, draw}, int64_t(p.classes) * p.latent);
}

template <class Be, class T>
void label_gaussian_sample(Be& be, const LabelGaussianParams<T>& p, int n, scalar_t<T> temperature, uint64_t seed, T* z) {
  check_label_gaussian(p.means, p.raw_logvar, p.labels, p.classes, p.latent, p.repeat, "label_gaussian_sample");
  check(n >= 1 && z, "label_gaussian_sample", "empty shape or null pointer");
  const int groups = (p.latent + 3) / 4;
  run(be, LabelGaussianSample<T>{p, z, temperature, seed, groups}, int64_t(n) * groups);
}

}  // namespace vae::ops
