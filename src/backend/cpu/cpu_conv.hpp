// The CPU convolution: im2col + BLAS GEMM, templated on the scalar (float in the backend, double in
// the finite-difference tests). tests/test_conv.cpp holds a naive direct convolution this is checked
// against on both backends.
//
//   columns[(b*P + p), (c*kh + i)*kw + j] = x[b, c, oy*s - pad + i, ox*s - pad + j]   (0 outside)
//   forward:         Yt[N*P, K] = columns W^T;       y[b, k, p] = Yt[b*P + p, k] + bias[k]
//   backward_data:   dcolumns = Yt(dy) W;            dx = col2im(dcolumns), images in parallel
//   backward_filter: dW[K, CKK] = Yt(dy)^T columns;  db[k] = sum over b, then p, of dy[b, k, p]
// with P = oh*ow output positions and CKK = c*kh*kw. Workspace: columns (N*P*CKK) and Yt (N*P*K).
// Every sum runs in an order fixed by the shapes (BLAS's for a fixed thread count, ours
// otherwise): same inputs, same bits.
#pragma once

#include <algorithm>
#include <cstdint>

#include "backend/backend.hpp"
#include "backend/cpu/cpu_ops.hpp"

namespace vae::cpu {

inline int64_t conv_workspace_elements(const ConvGeometry& g) {
  const int64_t positions = static_cast<int64_t>(g.n) * g.oh() * g.ow();
  return positions * (static_cast<int64_t>(g.c) * g.kh * g.kw) + positions * g.k;
}

// The kernel columns j whose input column ox*stride - pad + j lies inside the image: [lo, hi).
struct ValidColumns {
  int lo, hi;
};
inline ValidColumns valid_columns(const ConvGeometry& g, int ix0) {
  return {std::max(0, -ix0), std::max(0, std::min(g.kw, g.w - ix0))};
}

template <class T>
void im2col(const ConvGeometry& g, const T* x, T* columns) {
  const int oh = g.oh(), ow = g.ow(), ckk = g.c * g.kh * g.kw;
  const int64_t rows = static_cast<int64_t>(g.n) * oh * ow;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t b = row / (oh * ow);
    const int p = static_cast<int>(row % (oh * ow)), oy = p / ow, ox = p % ow;
    const int iy0 = oy * g.stride - g.pad, ix0 = ox * g.stride - g.pad;
    const ValidColumns cols = valid_columns(g, ix0);
    T* out = columns + row * ckk;
    for (int c = 0; c < g.c; ++c) {
      const T* plane = x + (b * g.c + c) * static_cast<int64_t>(g.h) * g.w;
      for (int i = 0; i < g.kh; ++i, out += g.kw) {
        const int iy = iy0 + i;
        if (iy < 0 || iy >= g.h) {
          std::fill(out, out + g.kw, T(0));
          continue;
        }
        // One image row: kw neighbouring pixels, zero where the kernel hangs over the edge.
        const int64_t base = static_cast<int64_t>(iy) * g.w + ix0;  // + j >= 0 for j in [lo, hi)
        for (int j = 0; j < cols.lo; ++j) out[j] = T(0);
        for (int j = cols.lo; j < cols.hi; ++j) out[j] = plane[base + j];
        for (int j = std::max(cols.lo, cols.hi); j < g.kw; ++j) out[j] = T(0);
      }
    }
  }
}

// dx = the sum of each column entry back into the pixel it came from; dx is overwritten. Images run
// in parallel, each one's entries in row order, so the order of every pixel's sum is fixed.
template <class T>
void col2im(const ConvGeometry& g, const T* columns, T* dx) {
  const int oh = g.oh(), ow = g.ow(), ckk = g.c * g.kh * g.kw;
  const int64_t image = static_cast<int64_t>(g.c) * g.h * g.w;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < g.n; ++b) {
    T* img = dx + b * image;
    std::fill(img, img + image, T(0));
    for (int p = 0; p < oh * ow; ++p) {
      const int oy = p / ow, ox = p % ow;
      const int iy0 = oy * g.stride - g.pad, ix0 = ox * g.stride - g.pad;
      const ValidColumns cols = valid_columns(g, ix0);
      const T* in = columns + (static_cast<int64_t>(b) * oh * ow + p) * ckk;
      for (int c = 0; c < g.c; ++c) {
        T* plane = img + static_cast<int64_t>(c) * g.h * g.w;
        for (int i = 0; i < g.kh; ++i, in += g.kw) {
          const int iy = iy0 + i;
          if (iy < 0 || iy >= g.h) continue;
          const int64_t base = static_cast<int64_t>(iy) * g.w + ix0;
          for (int j = cols.lo; j < cols.hi; ++j) plane[base + j] += in[j];
        }
      }
    }
  }
}

// Yt[b*P + p, k] = y[b, k, p] (NCHW to position-major), and back.
template <class T>
void nchw_to_positions(const T* y, T* yt, int n, int k, int positions) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < n; ++b)
    for (int ch = 0; ch < k; ++ch) {
      const T* src = y + (static_cast<int64_t>(b) * k + ch) * positions;
      T* dst = yt + static_cast<int64_t>(b) * positions * k + ch;
      for (int p = 0; p < positions; ++p) dst[static_cast<int64_t>(p) * k] = src[p];
    }
}

template <class T>
void positions_to_nchw(const T* yt, const T* bias, T* y, int n, int k, int positions) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < n; ++b)
    for (int ch = 0; ch < k; ++ch) {
      const T* src = yt + static_cast<int64_t>(b) * positions * k + ch;
      T* dst = y + (static_cast<int64_t>(b) * k + ch) * positions;
      const T add = bias ? bias[ch] : T(0);
      for (int p = 0; p < positions; ++p) dst[p] = src[static_cast<int64_t>(p) * k] + add;
    }
}

template <class T>
void conv_forward(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y, T* workspace) {
  const int positions = g.oh() * g.ow(), ckk = g.c * g.kh * g.kw;
  const int rows = g.n * positions;
  T* columns = workspace;
  T* yt = workspace + static_cast<int64_t>(rows) * ckk;
  im2col(g, x, columns);
  gemm<T>(false, true, rows, g.k, ckk, T(1), columns, ckk, w, ckk, T(0), yt, g.k);
  positions_to_nchw(yt, bias, y, g.n, g.k, positions);
}

template <class T>
void conv_backward_data(const ConvGeometry& g, const T* dy, const T* w, T* dx, T* workspace) {
  const int positions = g.oh() * g.ow(), ckk = g.c * g.kh * g.kw;
  const int rows = g.n * positions;
  T* dcolumns = workspace;
  T* yt = workspace + static_cast<int64_t>(rows) * ckk;
  nchw_to_positions(dy, yt, g.n, g.k, positions);
  gemm<T>(false, false, rows, ckk, g.k, T(1), yt, g.k, w, ckk, T(0), dcolumns, ckk);
  col2im(g, dcolumns, dx);
}

// db[c] = sum over images, then over each image's hw in order, of dy[b, c, :].
template <class T>
void channel_bias_grad(const T* dy, T* db, int n, int c, int hw) {
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < c; ++ch) {
    T sum = 0;
    for (int b = 0; b < n; ++b) {
      const T* plane = dy + (static_cast<int64_t>(b) * c + ch) * hw;
      for (int p = 0; p < hw; ++p) sum += plane[p];
    }
    db[ch] = sum;
  }
}

template <class T>
void channel_bias_add(const T* bias, T* y, int n, int c, int hw) {
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < static_cast<int64_t>(n) * c; ++plane) {
    T* p = y + plane * hw;
    const T add = bias[plane % c];
    for (int i = 0; i < hw; ++i) p[i] += add;
  }
}

template <class T>
void conv_backward_filter(const ConvGeometry& g, const T* x, const T* dy, T* dw, T* db, T* workspace) {
  const int positions = g.oh() * g.ow(), ckk = g.c * g.kh * g.kw;
  const int rows = g.n * positions;
  T* columns = workspace;
  T* yt = workspace + static_cast<int64_t>(rows) * ckk;
  im2col(g, x, columns);
  nchw_to_positions(dy, yt, g.n, g.k, positions);
  gemm<T>(true, false, g.k, ckk, rows, T(1), yt, g.k, columns, ckk, T(0), dw, ckk);
  if (db) channel_bias_grad(dy, db, g.n, g.k, positions);
}

}  // namespace vae::cpu
