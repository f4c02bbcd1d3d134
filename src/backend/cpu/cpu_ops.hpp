// The CPU reference operations, templated on the scalar: the backend runs them in float, the
// finite-difference tests in double. Each is the obvious loop (plus BLAS for GEMM) so it can serve
// as the definition the CUDA kernels are checked against.
//
// Determinism: every reduction runs in a fixed order that does not depend on the thread count;
// OpenMP only splits independent rows or elements.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdint>
#include <type_traits>

#include <cblas.h>

#include "philox.cuh"
#include "vae_math.cuh"

namespace vae::cpu {

// Row-major C[M,N] = alpha * op(A) op(B) + beta * C.
template <class T>
void gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda, const T* b,
          int ldb, T beta, T* c, int ldc) {
  const auto ta = trans_a ? CblasTrans : CblasNoTrans;
  const auto tb = trans_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

template <class T>
void linear_forward(const T* x, const T* w, const T* b, T* y, int rows, int in, int out) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) std::copy(b, b + out, y + static_cast<int64_t>(r) * out);
  gemm<T>(false, true, rows, out, in, T(1), x, in, w, in, T(1), y, out);
}

// Calls f(c0, c1) for blocks of kColumnBlock columns [c0, c1) in parallel: column-wise work whose
// per-column order (rows first to last) does not depend on the thread count.
constexpr int kColumnBlock = 64;
template <class F>
void for_column_blocks(int cols, F&& f) {
  constexpr int kBlock = kColumnBlock;
  const int blocks = (cols + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < blocks; ++b) f(b * kBlock, std::min(cols, (b + 1) * kBlock));
}

// s[c] = sum over rows of m[r, c], rows in order (the bias gradient).
template <class T>
void column_sums(const T* m, T* s, int rows, int cols) {
  for_column_blocks(cols, [&](int c0, int c1) {
    // A local accumulator the compiler can keep in vector registers (s might alias m otherwise).
    T acc[kColumnBlock] = {};
    const int w = c1 - c0;
    for (int r = 0; r < rows; ++r) {
      const T* __restrict row = m + static_cast<int64_t>(r) * cols + c0;
      for (int c = 0; c < w; ++c) acc[c] += row[c];
    }
    std::copy(acc, acc + w, s + c0);
  });
}

template <class T>
void linear_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, int rows, int in, int out) {
  gemm<T>(true, false, out, in, rows, T(1), dy, out, x, in, T(0), dw, in);
  if (db) column_sums(dy, db, rows, out);
  if (dx) gemm<T>(false, false, rows, in, out, T(1), dy, out, w, in, T(0), dx, in);
}

// y = max(0, x W^T + b): the linear layer, then ReLU in place (the same values as the two apart).
template <class T>
void linear_relu_forward(const T* x, const T* w, const T* b, T* y, int rows, int in, int out) {
  linear_forward(x, w, b, y, rows, in, out);
  const int64_t n = static_cast<int64_t>(rows) * out;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = math::activation(math::Act::ReLU, y[i], T(0));
}

// dpre = (dy W) * relu'(a), dbias = column sums of dpre. relu'(a) = relu'(pre) because a > 0 exactly
// when pre > 0, so the ReLU's output stands in for its input.
template <class T>
void linear_relu_input_backward(const T* w, const T* dy, const T* a, T* dpre, T* dbias, int rows, int in, int out) {
  gemm<T>(false, false, rows, in, out, T(1), dy, out, w, in, T(0), dpre, in);
  // The ReLU mask and the column sums in one pass over dpre (the same operations, in the same
  // order per element and per column, as the two passes apart).
  for_column_blocks(in, [&](int c0, int c1) {
    T acc[kColumnBlock] = {};
    const int w = c1 - c0;
    for (int r = 0; r < rows; ++r) {
      T* __restrict row = dpre + static_cast<int64_t>(r) * in + c0;
      const T* __restrict ar = a + static_cast<int64_t>(r) * in + c0;
      for (int c = 0; c < w; ++c) {
        // relu'(a) as a 0/1 factor without a branch (vectorizes); the product is what
        // activation_grad gives, bit for bit, NaN and the sign of zero included.
        row[c] = row[c] * (ar[c] > T(0) ? T(1) : T(0));
        acc[c] += row[c];
      }
    }
    std::copy(acc, acc + w, dbias + c0);
  });
}

// The activation chosen once per call, not per element: each loop then has one formula and
// vectorizes (a switch inside it cost ~50 instructions an element). Same values as math::activation.
template <class F>
void with_activation(math::Act act, F&& f) {
  switch (act) {
    case math::Act::ReLU: return f(std::integral_constant<math::Act, math::Act::ReLU>{});
    case math::Act::LeakyReLU: return f(std::integral_constant<math::Act, math::Act::LeakyReLU>{});
    case math::Act::Tanh: return f(std::integral_constant<math::Act, math::Act::Tanh>{});
    case math::Act::SiLU: return f(std::integral_constant<math::Act, math::Act::SiLU>{});
    default: return f(std::integral_constant<math::Act, math::Act::Identity>{});
  }
}

template <class T>
void activation_forward(math::Act act, T slope, const T* x, T* y, int64_t n) {
  with_activation(act, [&](auto a) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) y[i] = math::activation(decltype(a)::value, x[i], slope);
  });
}

template <class T>
void activation_backward(math::Act act, T slope, const T* x, const T* dy, T* dx, int64_t n) {
  with_activation(act, [&](auto a) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * math::activation_grad(decltype(a)::value, x[i], slope);
  });
}

// Calls f(col, eps) for every column of one row (philox_row_normals, always drawn).
template <class F>
inline void for_each_eps(uint64_t seed, uint32_t stream, uint64_t row, uint64_t step, int cols, F&& f) {
  philox_row_normals(seed, stream, row, step, cols, true, f);
}

template <class T>
void latent_sample_kl_forward(int rows, int latent, uint64_t seed, uint64_t step, int64_t row0,
                              T eps_scale, const T* h, T* z, T* kl_sample, T* kl_dim) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const T* mu = h + static_cast<int64_t>(r) * 2 * latent;
    const T* raw = mu + latent;
    T* zr = z + static_cast<int64_t>(r) * latent;
    T kl = 0;
    for (int u = 0; u < latent; ++u) {
      const T lv = math::soft_clamp(raw[u], T(math::kLogvarMin), T(math::kLogvarMax));
      zr[u] = hd::exp(T(0.5) * lv);  // sigma, until the noise is applied below
      kl += math::gaussian_kl(mu[u], lv);
    }
    if (eps_scale == T(0)) {
      for (int u = 0; u < latent; ++u) zr[u] = mu[u];
    } else {
      for_each_eps(seed, kStreamLatent, row0 + r, step, latent,
                   [&](int u, float eps) { zr[u] = mu[u] + eps_scale * zr[u] * T(eps); });
    }
    if (kl_sample) kl_sample[r] = kl;
  }
  if (kl_dim) {
    std::fill(kl_dim, kl_dim + latent, T(0));
    for (int r = 0; r < rows; ++r) {
      const T* mu = h + static_cast<int64_t>(r) * 2 * latent;
      for (int u = 0; u < latent; ++u) {
        const T lv = math::soft_clamp(mu[latent + u], T(math::kLogvarMin), T(math::kLogvarMax));
        kl_dim[u] += math::gaussian_kl(mu[u], lv);
      }
    }
  }
}

template <class T>
void latent_sample_kl_backward(int rows, int latent, uint64_t seed, uint64_t step, int64_t row0,
                               T eps_scale, const T* h, const T* dz, T kl_weight, T* dh) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const T* mu = h + static_cast<int64_t>(r) * 2 * latent;
    const T* raw = mu + latent;
    const T* g = dz + static_cast<int64_t>(r) * latent;
    T* dmu = dh + static_cast<int64_t>(r) * 2 * latent;
    T* draw = dmu + latent;
    auto grad = [&](int u, float eps) {
      const T lv = math::soft_clamp(raw[u], T(math::kLogvarMin), T(math::kLogvarMax));
      const T sigma = hd::exp(T(0.5) * lv);
      dmu[u] = g[u] + kl_weight * mu[u];
      const T dlv = g[u] * eps_scale * T(eps) * T(0.5) * sigma + kl_weight * math::gaussian_kl_grad_logvar(lv);
      draw[u] = dlv * math::soft_clamp_grad(raw[u], T(math::kLogvarMin), T(math::kLogvarMax));
    };
    if (eps_scale == T(0)) {
      for (int u = 0; u < latent; ++u) grad(u, 0.0f);
    } else {
      for_each_eps(seed, kStreamLatent, row0 + r, step, latent, grad);  // the forward pass's noise, recomputed
    }
  }
}

template <class T>
void bernoulli_nll(const T* logits, const T* x, T* nll, T* dlogits, int rows, int d, T grad_scale) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const int64_t base = static_cast<int64_t>(r) * d;
    T sum = 0;
    if (dlogits) {
      for (int i = 0; i < d; ++i) {
        T grad;
        sum += math::bernoulli_nll_with_grad(logits[base + i], x[base + i], grad);
        dlogits[base + i] = grad_scale * grad;
      }
    } else {
      for (int i = 0; i < d; ++i) sum += math::bernoulli_nll(logits[base + i], x[base + i]);
    }
    nll[r] = sum;
  }
}

template <class T>
void gaussian_nll(const T* mean, const T* x, const T* log_sigma_raw, T fixed_log_sigma, T* nll, T* dmean,
                  T* dlog_sigma, int rows, int d, T grad_scale) {
  auto log_sigma_at = [&](int i) {
    return log_sigma_raw ? math::soft_clamp(log_sigma_raw[i], T(math::kLogSigmaMin), T(math::kLogSigmaMax))
                         : fixed_log_sigma;
  };
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const int64_t base = static_cast<int64_t>(r) * d;
    T sum = 0;
    for (int i = 0; i < d; ++i) {
      const T ls = log_sigma_at(i);
      sum += math::gaussian_nll(mean[base + i], x[base + i], ls);
      if (dmean) dmean[base + i] = grad_scale * math::gaussian_nll_grad_mean(mean[base + i], x[base + i], ls);
    }
    nll[r] = sum;
  }
  if (dlog_sigma && log_sigma_raw) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < d; ++i) {
      const T ls = log_sigma_at(i);
      T g = 0;
      for (int r = 0; r < rows; ++r) {
        const int64_t k = static_cast<int64_t>(r) * d + i;
        g += math::gaussian_nll_grad_log_sigma(mean[k], x[k], ls);
      }
      dlog_sigma[i] = grad_scale * g *
                      math::soft_clamp_grad(log_sigma_raw[i], T(math::kLogSigmaMin), T(math::kLogSigmaMax));
    }
  }
}

template <class T>
void latent_importance_sample(const T* h, T* z, T* log_pz_minus_qz, int rows, int k, int latent,
                              uint64_t seed, int64_t row0, int64_t sample0) {
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < static_cast<int64_t>(rows) * k; ++row) {
    const int64_t b = row / k, j = row % k;
    const T* mu = h + b * 2 * latent;
    T acc = 0;
    for_each_eps(seed, kStreamImportance, row0 + b, sample0 + j, latent, [&](int u, float e) {
      const T eps = T(e);
      const T lv = math::soft_clamp(mu[latent + u], T(math::kLogvarMin), T(math::kLogvarMax));
      const T zu = mu[u] + hd::exp(T(0.5) * lv) * eps;
      z[row * latent + u] = zu;
      // log N(z; 0, 1) - log N(z; mu, sigma^2); the 0.5*log(2 pi) terms cancel.
      acc += T(-0.5) * zu * zu + T(0.5) * eps * eps + T(0.5) * lv;
    });
    log_pz_minus_qz[row] = acc;
  }
}

template <class T>
void logsumexp_accumulate(const T* log_pz_minus_qz, const T* nll, int rows, int k, T* running_max,
                          T* running_sum) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < rows; ++b) {
    const T* a = log_pz_minus_qz + static_cast<int64_t>(b) * k;
    const T* c = nll + static_cast<int64_t>(b) * k;
    const T old_max = running_max[b], none = -std::numeric_limits<T>::infinity();
    T m = old_max;
    for (int j = 0; j < k; ++j) m = std::max(m, a[j] - c[j]);
    // Every weight so far is zero (log-weight -inf): the sum stays 0, its log -inf (not exp(-inf + inf)).
    if (m == none) {
      running_sum[b] = T(0);
      continue;
    }
    T s = old_max == none ? T(0) : running_sum[b] * hd::exp(old_max - m);
    for (int j = 0; j < k; ++j) s += hd::exp(a[j] - c[j] - m);
    running_max[b] = m;
    running_sum[b] = s;
  }
}

}  // namespace vae::cpu
