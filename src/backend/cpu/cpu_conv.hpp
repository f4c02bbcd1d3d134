// The CPU convolution: im2col + BLAS GEMM, templated on the scalar (float in the backend, double in
// the finite-difference tests). tests/test_conv.cpp holds a naive direct convolution this is checked
// against on both backends.
//
// The columns are kernel-tap-major (Caffe's layout), so im2col writes and col2im reads runs of one
// output row at a time and the GEMM output is channel-major, one contiguous plane per image:
//   columns[(c*kh + i)*kw + j, b*P + p] = x[b, c, oy*s - pad + i, ox*s - pad + j]   (0 outside)
//   forward:         Yk[K, N*P] = W[K, CKK] columns;  y[b, k, :] = Yk[k, b*P .. b*P + P) + bias[k]
//   backward_data:   Yk = dy as [K, N*P];  dcolumns = W^T Yk;  dx = col2im(dcolumns)
//   backward_filter: dW[K, CKK] = Yk columns^T;  db[k] = sum over b, then p, of dy[b, k, p]
// with P = oh*ow output positions and CKK = c*kh*kw, a chunk of images at a time (conv_chunk_images;
// N is the chunk's size). Workspace: the chunk's columns (CKK*N*P) and Yk (K*N*P).
// Every sum runs in an order fixed by the shapes (BLAS's for a fixed thread count, ours
// otherwise): same inputs, same bits.
#pragma once

#include <algorithm>
#include <cstdint>

#include "backend/backend.hpp"
#include "backend/cpu/cpu_ops.hpp"
#include "channel_bias.cuh"

namespace vae::cpu {

// Images per chunk: the batch is convolved a chunk at a time so that the chunk's columns (about 2 MB)
// stay in cache between im2col and the GEMM that reads them. A function of the geometry alone, so the
// order of every sum (dW adds the chunks in order) does not depend on the batch's split over threads.
inline int conv_chunk_images(const ConvGeometry& g) {
  const int64_t column_bytes = static_cast<int64_t>(sizeof(float)) * g.c * g.kh * g.kw * g.oh() * g.ow();
  return static_cast<int>(std::clamp<int64_t>((int64_t{2} << 20) / std::max<int64_t>(column_bytes, 1), 1, g.n));
}

inline int64_t conv_workspace_elements(const ConvGeometry& g) {
  const int64_t positions = static_cast<int64_t>(conv_chunk_images(g)) * g.oh() * g.ow();
  return positions * (static_cast<int64_t>(g.c) * g.kh * g.kw) + positions * g.k;
}

// The geometry of images [first, first + count) of g's batch.
inline ConvGeometry conv_chunk(const ConvGeometry& g, int count) {
  ConvGeometry c = g;
  c.n = count;
  return c;
}

// The output columns ox whose input column ox*stride - pad + j lies inside the image: [lo, hi).
struct ValidOutputs {
  int lo, hi;
};
inline ValidOutputs valid_outputs(const ConvGeometry& g, int j) {
  const int first = g.pad - j;  // ox*stride >= first
  const int lo = first <= 0 ? 0 : (first + g.stride - 1) / g.stride;
  const int last = g.w - 1 + g.pad - j;  // ox*stride <= last
  const int hi = last < 0 ? 0 : std::min(g.ow(), last / g.stride + 1);
  return {std::min(lo, hi), hi};
}

// One (kernel tap, image) run per item: P consecutive column entries, read along input rows.
template <class T>
void im2col(const ConvGeometry& g, const T* x, T* columns) {
  const int oh = g.oh(), ow = g.ow(), taps = g.c * g.kh * g.kw, positions = oh * ow;
  const int64_t np = static_cast<int64_t>(g.n) * positions;
#pragma omp parallel for schedule(static)
  for (int64_t item = 0; item < static_cast<int64_t>(taps) * g.n; ++item) {
    const int tap = static_cast<int>(item / g.n), b = static_cast<int>(item % g.n);
    const int c = tap / (g.kh * g.kw), i = tap / g.kw % g.kh, j = tap % g.kw;
    const ValidOutputs v = valid_outputs(g, j);
    const T* plane = x + (static_cast<int64_t>(b) * g.c + c) * g.h * g.w;
    T* __restrict out = columns + tap * np + static_cast<int64_t>(b) * positions;
    for (int oy = 0; oy < oh; ++oy, out += ow) {
      const int iy = oy * g.stride - g.pad + i;
      if (iy < 0 || iy >= g.h) {
        std::fill(out, out + ow, T(0));
        continue;
      }
      const int64_t base = static_cast<int64_t>(iy) * g.w - g.pad + j;  // + ox*stride >= 0 inside [lo, hi)
      for (int ox = 0; ox < v.lo; ++ox) out[ox] = T(0);
      for (int ox = v.lo; ox < v.hi; ++ox) out[ox] = plane[base + ox * g.stride];
      for (int ox = v.hi; ox < ow; ++ox) out[ox] = T(0);
    }
  }
}

// dx = the sum of each column entry back into the pixel it came from; dx is overwritten. One item
// per (image, channel) plane, its taps and positions in order: every pixel's sum has a fixed order.
template <class T>
void col2im(const ConvGeometry& g, const T* columns, T* dx) {
  const int oh = g.oh(), ow = g.ow(), positions = oh * ow;
  const int64_t np = static_cast<int64_t>(g.n) * positions, hw = static_cast<int64_t>(g.h) * g.w;
#pragma omp parallel for schedule(static)
  for (int64_t item = 0; item < static_cast<int64_t>(g.n) * g.c; ++item) {
    const int b = static_cast<int>(item / g.c), c = static_cast<int>(item % g.c);
    T* __restrict plane = dx + item * hw;
    std::fill(plane, plane + hw, T(0));
    for (int i = 0; i < g.kh; ++i)
      for (int j = 0; j < g.kw; ++j) {
        const ValidOutputs v = valid_outputs(g, j);
        const T* in = columns + ((static_cast<int64_t>(c) * g.kh + i) * g.kw + j) * np + static_cast<int64_t>(b) * positions;
        for (int oy = 0; oy < oh; ++oy, in += ow) {
          const int iy = oy * g.stride - g.pad + i;
          if (iy < 0 || iy >= g.h) continue;
          const int64_t base = static_cast<int64_t>(iy) * g.w - g.pad + j;
          for (int ox = v.lo; ox < v.hi; ++ox) plane[base + ox * g.stride] += in[ox];
        }
      }
  }
}

// Yk[k, b*P + p] = y[b, k, p] (NCHW to channel-major), and back with the bias: contiguous planes.
template <class T>
void nchw_to_channel_major(const T* y, T* yk, int n, int k, int positions) {
  const int64_t np = static_cast<int64_t>(n) * positions;
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < static_cast<int64_t>(n) * k; ++plane) {
    const int64_t b = plane / k, ch = plane % k;
    std::copy(y + plane * positions, y + (plane + 1) * positions, yk + ch * np + b * positions);
  }
}

template <class T>
void channel_major_to_nchw(const T* yk, const T* bias, T* y, int n, int k, int positions) {
  const int64_t np = static_cast<int64_t>(n) * positions;
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < static_cast<int64_t>(n) * k; ++plane) {
    const int64_t b = plane / k, ch = plane % k;
    const T* src = yk + ch * np + b * positions;
    T* dst = y + plane * positions;
    const T add = bias ? bias[ch] : T(0);
    for (int p = 0; p < positions; ++p) dst[p] = src[p] + add;
  }
}

// Calls f(first image, the chunk's geometry, its columns, its Yk) for each chunk of images in order,
// the two workspace parts sized for that chunk.
template <class T, class F>
void for_each_image_chunk(const ConvGeometry& g, T* workspace, F&& f) {
  const int chunk = conv_chunk_images(g);
  const int64_t taps = static_cast<int64_t>(g.c) * g.kh * g.kw;
  for (int b0 = 0; b0 < g.n; b0 += chunk) {
    const ConvGeometry c = conv_chunk(g, std::min(chunk, g.n - b0));
    f(static_cast<int64_t>(b0), c, workspace, workspace + static_cast<int64_t>(c.n) * c.oh() * c.ow() * taps);
  }
}

template <class T>
void conv_forward(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y, T* workspace) {
  const int positions = g.oh() * g.ow(), ckk = g.c * g.kh * g.kw;
  const int64_t in_image = static_cast<int64_t>(g.c) * g.h * g.w, out_image = static_cast<int64_t>(g.k) * positions;
  for_each_image_chunk(g, workspace, [&](int64_t b0, const ConvGeometry& c, T* columns, T* yk) {
    const int np = c.n * positions;
    im2col(c, x + b0 * in_image, columns);
    gemm<T>(false, false, g.k, np, ckk, T(1), w, ckk, columns, np, T(0), yk, np);
    channel_major_to_nchw(yk, bias, y + b0 * out_image, c.n, g.k, positions);
  });
}

template <class T>
void conv_backward_data(const ConvGeometry& g, const T* dy, const T* w, T* dx, T* workspace) {
  const int positions = g.oh() * g.ow(), ckk = g.c * g.kh * g.kw;
  const int64_t in_image = static_cast<int64_t>(g.c) * g.h * g.w, out_image = static_cast<int64_t>(g.k) * positions;
  for_each_image_chunk(g, workspace, [&](int64_t b0, const ConvGeometry& c, T* dcolumns, T* yk) {
    const int np = c.n * positions;
    nchw_to_channel_major(dy + b0 * out_image, yk, c.n, g.k, positions);
    gemm<T>(true, false, ckk, np, g.k, T(1), w, ckk, yk, np, T(0), dcolumns, np);
    col2im(c, dcolumns, dx + b0 * in_image);
  });
}

// dW sums the chunks in order (the first GEMM overwrites, the rest add); db is channel_bias.cuh's
// gradient (images in order, each image's positions in order).
template <class T>
void conv_backward_filter(const ConvGeometry& g, const T* x, const T* dy, T* dw, T* db, T* workspace) {
  const int positions = g.oh() * g.ow(), ckk = g.c * g.kh * g.kw;
  const int64_t in_image = static_cast<int64_t>(g.c) * g.h * g.w, out_image = static_cast<int64_t>(g.k) * positions;
  for_each_image_chunk(g, workspace, [&](int64_t b0, const ConvGeometry& c, T* columns, T* yk) {
    const int np = c.n * positions;
    im2col(c, x + b0 * in_image, columns);
    nchw_to_channel_major(dy + b0 * out_image, yk, c.n, g.k, positions);
    gemm<T>(false, true, g.k, ckk, np, T(1), yk, np, columns, np, b0 == 0 ? T(0) : T(1), dw, ckk);
  });
  if (db) ops::cpu_for_rows(ops::ChannelBiasGrad<T>{dy, db, g.k, positions, int64_t(g.n) * positions}, g.k);
}

}  // namespace vae::cpu
