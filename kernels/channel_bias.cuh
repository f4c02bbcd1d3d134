// Per-channel bias of an NCHW tensor viewed as [n, c, hw] (the convolution layers' bias).
//   channel_bias_add:  y[b, ch, p] += bias[ch]              reads and writes n*c*hw floats, reads c
//   channel_bias_grad: db[ch] = sum_b sum_p dy[b, ch, p]    reads n*c*hw floats, writes c
// The add is one item per element; the gradient a row op with one row per channel, its n*hw
// elements image by image (each image's plane in SIMD lanes, the planes in order) on the CPU and in
// a fixed tree on CUDA: deterministic on both, not the same order, so parity has a bound.
#pragma once

#include "for_each.cuh"

namespace vae::ops {

// Both are planar (for_each.cuh): plane b*c + ch holds image b's channel ch.
template <class T>
struct ChannelBiasAdd {
  const T* bias;
  T* y;
  int c;
  int64_t plane_items;  // hw
  VAE_HD void at(int64_t plane, int64_t p) const { y[plane * plane_items + p] += bias[plane % c]; }
  VAE_HD void operator()(int64_t i) const { at(i / plane_items, i % plane_items); }
};

// A row per channel; its items are the n images' planes of that channel, image by image, each
// plane's positions in order (on the CPU each plane's sum in SIMD lanes, the planes added in order).
template <class T>
struct ChannelBiasGrad {
  using Scalar = T;
  const T* dy;
  T* db;
  int c;
  int64_t plane_items;  // hw
  int64_t items;        // n * hw
  VAE_HD void at(int64_t ch, int64_t b, int64_t p, T& acc) const { acc += dy[(b * c + ch) * plane_items + p]; }
  VAE_HD void operator()(int64_t ch, int64_t i, T& acc) const { at(ch, i / plane_items, i % plane_items, acc); }
  VAE_HD void finish(int64_t ch, T total) const { db[ch] = total; }
};

template <class Be, class T>
void channel_bias_add(Be& be, const T* bias, T* y, int n, int c, int hw) {
  check(n >= 1 && c >= 1 && hw >= 1 && bias && y, "channel_bias_add", "empty shape or null pointer");
  run(be, ChannelBiasAdd<T>{bias, y, c, hw}, int64_t(n) * c * hw);
}

template <class Be, class T>
void channel_bias_grad(Be& be, const T* dy, T* db, int n, int c, int hw) {
  check(n >= 1 && c >= 1 && hw >= 1 && dy && db, "channel_bias_grad", "empty shape or null pointer");
  run_rows(be, ChannelBiasGrad<T>{dy, db, c, hw, int64_t(n) * hw}, c);
}

}  // namespace vae::ops
