// The CPU's device-specific operations, templated on the scalar: the backend runs them in float,
// the finite-difference tests in double: the linear layers through BLAS, with their fused ReLU
// pairs. (Every other operation is written once in kernels/ and runs on either device.)
//
// Determinism: every reduction runs in a fixed order that does not depend on the thread count;
// OpenMP only splits independent rows or elements.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include <cblas.h>
#include <omp.h>

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

// Calls f(c0, c1) for spans of columns [c0, c1) in parallel, one span per thread where the columns
// allow: column-wise work whose per-column order (rows first to last) does not depend on the thread
// count, so the span's width changes no bits. Wide spans matter: a thread walks down the rows of
// its span, and a narrow one (it was 64 columns) reads 256 bytes a row at a stride the hardware
// prefetchers do not follow, which made the ReLU-mask pass 7.6% of a batch-4096 step.
constexpr int kMaxColumnSpan = 1024;  // floats of accumulator on the stack: 4 KiB
template <class F>
void for_column_blocks(int cols, F&& f) {
  const int threads = std::max(1, omp_get_max_threads());
  const int span = std::clamp(((cols + threads - 1) / threads + 15) / 16 * 16, 64, kMaxColumnSpan);
  const int blocks = (cols + span - 1) / span;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < blocks; ++b) f(b * span, std::min(cols, (b + 1) * span));
}

// s[c] = sum over rows of m[r, c], rows in order (the bias gradient).
template <class T>
void column_sums(const T* m, T* s, int rows, int cols) {
  for_column_blocks(cols, [&](int c0, int c1) {
    // A local accumulator the compiler can keep in vector registers (s might alias m otherwise).
    T acc[kMaxColumnSpan] = {};
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
// dpre *= relu'(a) and dbias = column sums of dpre, in one pass over dpre [rows, in] (the same
// operations, in the same order per element and per column, as the two passes apart).
template <class T>
void relu_mask_column_sums(const T* a, T* dpre, T* dbias, int rows, int in) {
  for_column_blocks(in, [&](int c0, int c1) {
    T acc[kMaxColumnSpan] = {};
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

template <class T>
void linear_relu_input_backward(const T* w, const T* dy, const T* a, T* dpre, T* dbias, int rows, int in, int out) {
  gemm<T>(false, false, rows, in, out, T(1), dy, out, w, in, T(0), dpre, in);
  relu_mask_column_sums(a, dpre, dbias, rows, in);
}

}  // namespace vae::cpu
