// The gated linear unit of Dauphin et al. (2017) as vae_vampprior's GatedDense/GatedConv2d use it:
// a layer with twice the outputs followed by this op, the second half gating the first.
// Per row (one sample) of 2w pre-activations pre = [a | g] (a Linear's 2w outputs, or a conv's 2c
// channels of w/c positions each: the same memory), w outputs:
//   forward:  h[r, j] = a[r, j] * sigmoid(g[r, j])                                  [rows, w]
//   backward: da[r, j] = dh[r, j] * sigmoid(g[r, j])
//             dg[r, j] = dh[r, j] * a[r, j] * sigmoid(g) * (1 - sigmoid(g))         [rows, 2w] = [da | dg]
// Bytes: forward reads 8w, writes 4w per row; backward reads 12w, writes 8w. Planar (for_each.cuh):
// plane = row, so the half offset is a loop invariant and the body vectorizes.
#pragma once

#include "for_each.cuh"
#include "vae_math.cuh"

namespace vae::ops {

template <class T>
struct GateForward {
  const T* pre;
  T* h;
  int64_t plane_items;  // w
  VAE_HD void at(int64_t r, int64_t j) const {
    const T* row = pre + r * 2 * plane_items;
    h[r * plane_items + j] = row[j] * math::sigmoid_wide(row[plane_items + j]);
  }
  VAE_HD void operator()(int64_t i) const { at(i / plane_items, i % plane_items); }
};

template <class T>
struct GateBackward {
  const T* pre;
  const T* dh;
  T* dpre;
  int64_t plane_items;  // w
  VAE_HD void at(int64_t r, int64_t j) const {
    const T* row = pre + r * 2 * plane_items;
    T* drow = dpre + r * 2 * plane_items;
    const T s = math::sigmoid_wide(row[plane_items + j]);
    const T d = dh[r * plane_items + j];
    drow[j] = d * s;
    drow[plane_items + j] = d * row[j] * s * (T(1) - s);
  }
  VAE_HD void operator()(int64_t i) const { at(i / plane_items, i % plane_items); }
};

template <class Be, class T>
void gate_forward(Be& be, const T* pre, T* h, int rows, int64_t width) {
  check(rows >= 0 && width >= 1 && (rows == 0 || (pre && h)), "gate_forward", "empty width or null pointer");
  run(be, GateForward<T>{pre, h, width}, int64_t(rows) * width);
}

template <class Be, class T>
void gate_backward(Be& be, const T* pre, const T* dh, T* dpre, int rows, int64_t width) {
  check(rows >= 0 && width >= 1 && (rows == 0 || (pre && dh && dpre)), "gate_backward",
        "empty width or null pointer");
  run(be, GateBackward<T>{pre, dh, dpre, width}, int64_t(rows) * width);
}

}  // namespace vae::ops
