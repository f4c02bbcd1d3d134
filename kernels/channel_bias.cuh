// Per-channel bias of an NCHW tensor viewed as [n, c, hw] (the convolution layers' bias).
//   channel_bias_add:  y[b, ch, p] += bias[ch]              reads and writes n*c*hw floats, reads c
//   channel_bias_grad: db[ch] = sum_b sum_p dy[b, ch, p]    reads n*c*hw floats, writes c
// The add is one item per element; the gradient a row op with one row per channel, its n*hw
// elements in order (image by image, each image's positions in order) on the CPU and in a fixed
// tree on CUDA: deterministic on both, not the same order, so parity has a bound.
#pragma once

#include "for_each.cuh"

namespace vae::ops {

template <class T>
struct ChannelBiasAdd {
  const T* bias;
  T* y;
  int c, hw;
  VAE_HD void operator()(int64_t i) const { y[i] += bias[(i / hw) % c]; }
};

template <class T>
struct ChannelBiasGrad {
  using Scalar = T;
  const T* dy;
  T* db;
  int c, hw;
  int64_t items;  // n * hw
  VAE_HD void operator()(int64_t ch, int64_t i, T& acc) const {
    const int64_t b = i / hw, p = i % hw;
    acc += dy[(b * c + ch) * hw + p];
  }
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
