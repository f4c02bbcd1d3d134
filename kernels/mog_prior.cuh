// A learned mixture of K diagonal Gaussians as the prior:
//   p(z) = sum_k pi_k N(z; m_k, diag(e^lv_k)),  pi = softmax(logits),  lv = soft_clamp(raw, -30, 20)
// Parameters (the model's flat buffer): logits [K], means [K, L], raw log-variances [K, L].
//
//   log_prob:   a[r, k] = log pi_k + sum_u log N(z_u; m_ku, e^lv_ku)
//               out[r] += sign * logsumexp_k a[r, k];  resp[r, k] = softmax_k a[r, k]       [rows, K]
//   grad_z:     dz[r, u] += w * sum_k resp[r, k] (z_u - m_ku) e^-lv_ku   (the gradient of -w log p)
//   grad_param: dlogits[k] = -w sum_r (resp[r, k] - pi_k)
//               dmeans[k, u] = -w sum_r resp[r, k] (z_ru - m_ku) e^-lv_ku
//               draw[k, u] = -w sum_r resp[r, k] ((z_ru - m_ku)^2 e^-lv_ku - 1) / 2 * soft_clamp'(raw)
//               (overwritten: one item per parameter, summing the rows in order: deterministic)
//   derive:     the tables the loops read: lv, e^-lv [K, L], log pi_k and log pi_k - sum_u (lv_ku + log 2 pi) / 2
//               [K], and the means and e^-lv again as [L, K], once per call instead of once per row
// log_prob, one row an item: the log terms a[r, k], each summing its L squares in order (on the CPU
// the components fill the SIMD lanes, reading the [L, K] tables contiguously), then the row's
// log-sum-exp and responsibilities from exponents that are never positive (hd::exp_nonpositive,
// whose loops vectorize). At K = 500, L = 40 this is what a VampPrior adds to each importance
// sample of an evaluation.
//   sample:     k ~ Categorical(pi) from one Philox uniform (row r, kStreamPriorComponent),
//               z = m_k + T sigma_k eps with eps as normal_fill draws it (row r, kStreamPrior)
// w_r is the weight of -log p(z_r) in the loss: beta / batch (a StepScalars record's kl_grad_weight
// when given), or one per row (grad_weight.cuh; the parameters' weights may differ from z's).
// The means and log-variances may be rows of a wider array (stride): the VampPrior's are the
// encoder's outputs [K, 2L] at its pseudo-inputs, and their gradients go back into the same layout. Bytes per row: log_prob reads 4L + 8KL (means and inverse variances, from cache) and writes 4K + 4;
// grad_z reads 4L + 4K and writes 4L; grad_param reads 4(L + K) per row per parameter column.
// FLOPs: about 3KL per row for log_prob (no transcendental but one exp per component) and 3KL for grad_z.
#pragma once

#include "for_each.cuh"
#include "grad_weight.cuh"
#include "philox.cuh"
#include "step_scalars.cuh"
#include "vae_math.cuh"

namespace vae::ops {

template <class T>
struct MogParams {
  const T* logits;      // [K]
  const T* means;       // [K, L], row k at k * row_stride()
  const T* raw_logvar;  // [K, L], likewise
  int components, latent;
  // Optional: the tables mog_derive fills from the parameters (log-variances, inverse variances,
  // log-weights, each component's constant, and the means and inverse variances transposed), so the
  // per-row loops need no soft_clamp, exp or normaliser of their own. Without them every value is
  // computed where it is used (log_prob needs them).
  const T* table = nullptr;  // [4KL + 2K], mog_table_size
  int64_t stride = 0;        // of the means' and log-variances' rows; 0 = latent

  VAE_HD int64_t kl() const { return int64_t(components) * latent; }
  VAE_HD int64_t row_stride() const { return stride ? stride : latent; }
  // Where (k, u) is in means and raw_logvar (the tables are always [K, L]: ku = k * L + u).
  VAE_HD int64_t at(int64_t ku) const { return stride ? (ku / latent) * stride + ku % latent : ku; }
  VAE_HD T logvar(int64_t ku) const {
    return table ? table[ku] : math::soft_clamp(raw_logvar[at(ku)], T(math::kLogvarMin), T(math::kLogvarMax));
  }
  VAE_HD T inv_var(int64_t ku) const { return table ? table[kl() + ku] : hd::exp(-logvar(ku)); }
  // log sum_k e^logits_k: log pi_k = logits_k - log_normalizer().
  VAE_HD T log_normalizer() const {
    T top = logits[0];
    for (int k = 1; k < components; ++k) top = logits[k] > top ? logits[k] : top;
    T s = T(0);
    for (int k = 0; k < components; ++k) s += hd::exp(logits[k] - top);
    return top + hd::log(s);
  }
  VAE_HD T log_pi(int k) const { return table ? table[2 * kl() + k] : logits[k] - log_normalizer(); }
  // log pi_k - sum_u (lv_ku + log 2 pi) / 2: log pi_k N(z; m_k, s_k^2) = this - sum_u (z_u - m_ku)^2 / (2 s_ku^2).
  VAE_HD T log_constant(int k) const {
    if (table) return table[2 * kl() + components + k];
    T c = log_pi(k);
    for (int u = 0; u < latent; ++u) c -= T(0.5) * logvar(int64_t(k) * latent + u) + T(math::kHalfLog2Pi);
    return c;
  }
};

// The table: lv [K, L] | e^-lv [K, L] | log pi [K] | log constant [K] | means [L, K] | e^-lv [L, K].
inline int64_t mog_table_size(int components, int latent) { return 4 * int64_t(components) * latent + 2 * components; }

// Fills p's table: items [0, KL) one (k, u) each, items [KL, KL + K) one component each (computed
// from the parameters, not from the other items' entries: no order between items).
template <class T>
struct MogDerive {
  MogParams<T> p;  // without a table
  T* table;
  VAE_HD void operator()(int64_t i) const {
    const int64_t kl = p.kl();
    if (i < kl) {
      const T lv = p.logvar(i);
      table[i] = lv;
      table[kl + i] = hd::exp(-lv);
      const int64_t k = i / p.latent, u = i % p.latent, transposed = 2 * kl + 2 * p.components + u * p.components + k;
      table[transposed] = p.means[p.at(i)];
      table[transposed + kl] = table[kl + i];
      return;
    }
    const int k = static_cast<int>(i - kl);
    table[2 * kl + k] = p.log_pi(k);
    table[2 * kl + p.components + k] = p.log_constant(k);
  }
};

// out[r] += sign * logsumexp_k a[r, k] with a[r, k] = log pi_k + log N(z_r; m_k, s_k^2), and resp[r, k]
// = e^(a[r, k] - logsumexp), from the derived tables (p.table must be set). Each a[r, k] sums its L
// squares in order; the loop over k inside the loop over u reads the [L, K] tables contiguously, so
// the CPU runs it in SIMD lanes (an outer loop over k with the sum over u inside did not vectorize).
// The largest term sets the shift of the log-sum-exp, so every exponent is <= 0.
template <class T>
struct MogLogProb {
  MogParams<T> p;
  const T* z;
  T* resp;  // [rows, K]: the log terms, then the responsibilities
  T* out;
  T sign;
  VAE_HD void operator()(int64_t r) const {
    const int64_t K = p.components, L = p.latent, kl = p.kl();
    const T* means_t = p.table + 2 * kl + 2 * K;  // [L, K]
    const T* inv_var_t = means_t + kl;             // [L, K]
    const T* log_constant = p.table + 2 * kl + K;  // [K]
    const T* zr = z + r * L;
    T* a = resp + r * K;
    VAE_SIMD
    for (int64_t k = 0; k < K; ++k) a[k] = T(0);
    for (int64_t u = 0; u < L; ++u) {
      const T zu = zr[u];
      const T* m = means_t + u * K;
      const T* iv = inv_var_t + u * K;
      VAE_SIMD
      for (int64_t k = 0; k < K; ++k) {
        const T d = zu - m[k];
        a[k] += d * d * iv[k];
      }
    }
    T top = log_constant[0] - T(0.5) * a[0];
    VAE_SIMD_REDUCTION(max, top)
    for (int64_t k = 0; k < K; ++k) {
      a[k] = log_constant[k] - T(0.5) * a[k];
      top = a[k] > top ? a[k] : top;  // a NaN is passed over
    }
    T s = T(0);
    VAE_SIMD_REDUCTION(+, s)
    for (int64_t k = 0; k < K; ++k) s += hd::exp_nonpositive(a[k] - top);
    const T lse = top + hd::log(s);
    VAE_SIMD
    for (int64_t k = 0; k < K; ++k) a[k] = hd::exp_nonpositive(a[k] - lse);
    out[r] += sign * lse;
  }
};

// One row an item; each dz[r, u] sums its K terms in order. The loop over u inside the loop over k
// runs in SIMD lanes on the CPU, over blocks of 64 dimensions (a local array of sums).
template <class T>
struct MogGradZ {
  MogParams<T> p;  // with its table
  const T* z;
  const T* resp;
  T* dz;
  GradWeight<T> weight;
  VAE_HD void operator()(int64_t r) const {
    constexpr int kBlock = 64;
    const int L = p.latent, K = p.components;
    const T* inv_var = p.table + p.kl();  // [K, L]
    const T w = weight.at(r);
    for (int u0 = 0; u0 < L; u0 += kBlock) {
      const int n = L - u0 < kBlock ? L - u0 : kBlock;
      const T* zr = z + r * L + u0;
      T g[kBlock];
      VAE_SIMD
      for (int j = 0; j < n; ++j) g[j] = T(0);
      for (int k = 0; k < K; ++k) {
        const T rk = resp[r * K + k];
        const T* m = p.means + k * p.row_stride() + u0;
        const T* iv = inv_var + int64_t(k) * L + u0;
        VAE_SIMD
        for (int j = 0; j < n; ++j) g[j] += rk * (zr[j] - m[j]) * iv[j];
      }
      T* out = dz + r * L + u0;
      VAE_SIMD
      for (int j = 0; j < n; ++j) out[j] += w * g[j];
    }
  }
};

template <class T>
struct MogGradParams {
  MogParams<T> p;
  const T* z;
  const T* resp;
  int rows;
  T* dlogits;
  T* dmeans;  // laid out as p.means (row stride p.row_stride())
  T* draw;    // laid out as p.raw_logvar
  GradWeight<T> weight;
  // Items [0, K): the logits; [K, K + KL): one (k, u) pair each, for its mean and log-variance.
  // One weight for all rows multiplies the sums (the form the ELBO has always had, to the bit);
  // per-row weights multiply each row's term (wr = 1 otherwise: exact).
  VAE_HD void operator()(int64_t i) const {
    const int K = p.components, L = p.latent;
    const bool per_row = weight.rows != nullptr;
    const T outer = per_row ? T(1) : weight.at(0);
    if (i < K) {
      const T pi = hd::exp(p.log_pi(static_cast<int>(i)));
      T g = T(0);
      for (int r = 0; r < rows; ++r) g += (per_row ? weight.at(r) : T(1)) * (resp[int64_t(r) * K + i] - pi);
      dlogits[i] = -outer * g;
      return;
    }
    const int64_t ku = i - K;
    const int k = static_cast<int>(ku / L), u = static_cast<int>(ku % L);
    const int64_t where = p.at(ku);
    const T m = p.means[where], inv_var = p.inv_var(ku);
    T gm = T(0), gl = T(0);
    for (int r = 0; r < rows; ++r) {
      const T rk = (per_row ? weight.at(r) : T(1)) * resp[int64_t(r) * K + k];
      const T d = z[int64_t(r) * L + u] - m;
      gm += rk * d * inv_var;
      gl += rk * (d * d * inv_var - T(1));
    }
    dmeans[where] = -outer * gm;
    draw[where] = -outer * T(0.5) * gl * math::soft_clamp_grad(p.raw_logvar[where], T(math::kLogvarMin), T(math::kLogvarMax));
  }
};

template <class T>
struct MogSample {
  MogParams<T> p;
  T* z;
  T temperature;
  uint64_t seed;
  VAE_HD void operator()(int64_t r) const {
    const int K = p.components, L = p.latent;
    // The component: the first k whose cumulative weight passes a uniform draw.
    const T target = T(philox_uniform(philox_block(seed, kStreamPriorComponent, r, 0, 0).v[0]));
    int k = K - 1;
    T cumulative = T(0);
    for (int c = 0; c < K; ++c) {
      cumulative += hd::exp(p.log_pi(c));
      if (target < cumulative) {
        k = c;
        break;
      }
    }
    T* zr = z + r * L;
    const int64_t m0 = int64_t(k) * L;
    const T* m = p.means + k * p.row_stride();
    philox_row_normals(seed, kStreamPrior, r, 0, L, true, [&](int u, float eps) {
      zr[u] = m[u] + temperature * hd::exp(T(0.5) * p.logvar(m0 + u)) * T(eps);
    });
  }
};

// MogGradParams over items [offset, ...): the means and log-variances without the logits. A plane
// per component (plane_items = L), so the CPU's SIMD lanes take its dimensions.
template <class T>
struct MogGradParamsFrom {
  MogGradParams<T> f;
  int64_t offset;
  int64_t plane_items;  // L
  VAE_HD void at(int64_t k, int64_t u) const { f(offset + k * plane_items + u); }
  VAE_HD void operator()(int64_t i) const { f(i + offset); }
};

template <class T>
void check_mog(const MogParams<T>& p, int rows, const char* op) {
  check(rows >= 1 && p.components >= 1 && p.latent >= 1 && p.logits && p.means && p.raw_logvar, op,
        "empty shape or null parameter pointer");
}

// p with its table filled (table: mog_table_size floats of backend memory).
template <class Be, class T>
MogParams<T> mog_derive(Be& be, MogParams<T> p, T* table) {
  check(table != nullptr, "mog_derive", "null table");
  p.table = nullptr;
  run(be, MogDerive<T>{p, table}, p.kl() + p.components);
  p.table = table;
  return p;
}

// out[r] += sign * log p(z_r); resp [rows, K] keeps the responsibilities for the backward calls.
template <class Be, class T>
void mog_log_prob(Be& be, const MogParams<T>& p, const T* z, int rows, scalar_t<T> sign, T* resp, T* out, T* table) {
  check_mog(p, rows, "mog_log_prob");
  check(z && resp && out, "mog_log_prob", "null pointer");
  run(be, MogLogProb<T>{mog_derive(be, p, table), z, resp, out, T(sign)}, rows);
}

// dz += w.z_r * d(-log p(z_r))/dz, and the parameters' gradients of sum_r w.params_r * -log p(z_r)
// (overwritten; dmeans and draw laid out as p's means and log-variances, dlogits null to skip
// them), from the responsibilities and the table mog_log_prob left for the same z and parameters
// (the table is read, not derived again).
template <class Be, class T>
void mog_backward(Be& be, const MogParams<T>& p, const T* z, const T* resp, int rows, const PriorGradWeights<T>& w,
                  T* dz, T* dlogits, T* dmeans, T* draw, const T* table) {
  check_mog(p, rows, "mog_backward");
  check(z && resp && dz && dmeans && draw && table, "mog_backward", "null pointer");
  MogParams<T> d = p;
  d.table = table;
  run(be, MogGradZ<T>{d, z, resp, dz, w.z}, rows);
  // Without dlogits (the VampPrior's weights are fixed) the items start after the logits'.
  if (dlogits) run(be, MogGradParams<T>{d, z, resp, rows, dlogits, dmeans, draw, w.params}, p.components + p.kl());
  else run(be, MogGradParamsFrom<T>{{d, z, resp, rows, dlogits, dmeans, draw, w.params}, p.components, p.latent}, p.kl());
}

template <class Be, class T>
void mog_sample(Be& be, const MogParams<T>& p, int rows, scalar_t<T> temperature, uint64_t seed, T* z, T* table) {
  check_mog(p, rows, "mog_sample");
  check(z != nullptr, "mog_sample", "null pointer");
  run(be, MogSample<T>{mog_derive(be, p, table), z, temperature, seed}, rows);
}

}  // namespace vae::ops
