// Row-wise moves and scalings the objectives need around the networks, over [rows, cols] buffers:
//   repeat_rows:  out[b*k + j, :] = x[b, :]        (each data row for its k importance samples)
//   scale_rows:   x[r, :] *= s[r]                  (per-sample weights on a gradient, in place)
//   copy_values:  dst[i] = src[i]                  (into a larger buffer, inside a recorded step)
//   scale_values: x[i] *= scale                    (a rank's share of the global batch on its gradient)
//   add_scaled:   dst[i] += scale * src[i]         (a flow's log-determinant into a log-density)
//   unit_clamp_backward: g[i] = raw[i] in (0, 1) ? dy[i] : 0   (the gradient through clamp(raw, 0, 1),
//                 the VampPrior's pseudo-inputs; clamp01 itself is Backend's)
// One item per element: any order gives the same bits. Bytes: 8 per element moved (repeat, copy,
// scale_rows reads 4 more per row), 12 per element for the clamp's gradient.
#pragma once

#include "for_each.cuh"

namespace vae::ops {

// Both planar (for_each.cuh): a plane is a row of cols, so the CPU divides once per row.
template <class T>
struct RepeatRows {
  const T* x;
  T* out;
  int64_t plane_items;  // cols
  int k;
  VAE_HD void at(int64_t row, int64_t c) const { out[row * plane_items + c] = x[row / k * plane_items + c]; }
  VAE_HD void operator()(int64_t i) const { at(i / plane_items, i % plane_items); }
};

template <class T>
struct ScaleRows {
  T* x;
  const T* s;
  int64_t plane_items;  // cols
  VAE_HD void at(int64_t row, int64_t c) const { x[row * plane_items + c] *= s[row]; }
  VAE_HD void operator()(int64_t i) const { at(i / plane_items, i % plane_items); }
};

template <class T>
struct CopyValues {
  const T* src;
  T* dst;
  VAE_HD void operator()(int64_t i) const { dst[i] = src[i]; }
};

template <class T>
struct ScaleValues {
  T* x;
  T scale;
  VAE_HD void operator()(int64_t i) const { x[i] *= scale; }
};

template <class T>
struct AddScaled {
  const T* src;
  T* dst;
  T scale;
  VAE_HD void operator()(int64_t i) const { dst[i] += scale * src[i]; }
};

template <class T>
struct UnitClampBackward {
  const T* raw;
  const T* dy;
  T* g;
  VAE_HD void operator()(int64_t i) const { g[i] = raw[i] > T(0) && raw[i] < T(1) ? dy[i] : T(0); }
};

template <class Be, class T>
void repeat_rows(Be& be, const T* x, int rows, int64_t cols, int k, T* out) {
  check(rows >= 1 && cols >= 1 && k >= 1 && x && out, "repeat_rows", "empty shape or null pointer");
  run(be, RepeatRows<T>{x, out, cols, k}, int64_t(rows) * k * cols);
}

template <class Be, class T>
void scale_rows(Be& be, T* x, const T* s, int rows, int64_t cols) {
  check(rows >= 1 && cols >= 1 && x && s, "scale_rows", "empty shape or null pointer");
  run(be, ScaleRows<T>{x, s, cols}, int64_t(rows) * cols);
}

template <class Be, class T>
void copy_values(Be& be, const T* src, int64_t n, T* dst) {
  check(n >= 0 && (n == 0 || (src && dst)), "copy_values", "null pointer");
  run(be, CopyValues<T>{src, dst}, n);
}

template <class Be, class T>
void scale_values(Be& be, T* x, int64_t n, scalar_t<T> scale) {
  check(n >= 0 && (n == 0 || x), "scale_values", "null pointer");
  run(be, ScaleValues<T>{x, scale}, n);
}

template <class Be, class T>
void add_scaled(Be& be, const T* src, int64_t n, scalar_t<T> scale, T* dst) {
  check(n >= 0 && (n == 0 || (src && dst)), "add_scaled", "null pointer");
  run(be, AddScaled<T>{src, dst, scale}, n);
}

template <class Be, class T>
void unit_clamp_backward(Be& be, const T* raw, const T* dy, int64_t n, T* g) {
  check(n >= 1 && raw && dy && g, "unit_clamp_backward", "empty shape or null pointer");
  run(be, UnitClampBackward<T>{raw, dy, g}, n);
}

}  // namespace vae::ops
