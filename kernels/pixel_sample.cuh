// Images drawn from the 8-bit likelihoods rather than their means (vae sample --pixels sample): each
// value a draw from its discretized logistic, or each pixel from its mixture, quantized to k / 255.
// The noise: Philox at (column / 4, row0 + r, 0, kStreamPixels) (a value's, lane column % 4), or, for
// the mixture, blocks (p * B + j, row0 + r, 0, kStreamPixels), j < B = ceil((K + C) / 4): K uniforms
// for the Gumbel-max choice of the component, then C for the channels' logistic noise.
//   logistic:  x = m + e^ls (log u - log(1 - u)),  ls = soft_clamp(raw, kLogScaleMin, kLogScaleMax)
//   mixture:   k* = argmax_k (l_k - log(-log u_k)); then channel by channel x_c with the coupled mean
//              of k* at the channels already drawn (PixelCNN++'s sampler)
//   quantize:  min(max(round(255 x), 0), 255) / 255
// One item per value (logistic) or per pixel (mixture): any order gives the same bits.
#pragma once

#include "dmol_nll.cuh"
#include "for_each.cuh"
#include "philox.cuh"
#include "vae_math.cuh"

namespace vae::ops {

template <class T>
VAE_HD T quantize_pixel(T x) {
  T k = hd::floor(x * T(255) + T(0.5));
  k = k < T(0) ? T(0) : (k > T(255) ? T(255) : k);
  return k / T(255);
}

template <class T>
VAE_HD T logistic_noise(uint32_t bits) {
  const T u = T(philox_open_uniform(bits));
  return hd::log(u) - hd::log1p(-u);
}

template <class T>
struct LogisticPixelSample {
  const T* out;  // [rows, 2d]: means, raw log-scales
  T* image;      // [rows, d]
  int64_t d;
  uint64_t seed;
  int64_t row0;
  VAE_HD void operator()(int64_t k) const {
    const int64_t r = k / d, i = k % d;
    const T* o = out + r * 2 * d;
    const T ls = math::soft_clamp(o[d + i], T(math::kLogScaleMin), T(math::kLogScaleMax));
    const Philox4 b = philox_block(seed, kStreamPixels, uint64_t(row0 + r), 0, uint64_t(i) >> 2);
    image[k] = quantize_pixel(o[i] + hd::exp(ls) * logistic_noise<T>(philox_word(b, static_cast<int>(i & 3))));
  }
};

template <class T>
struct DmolPixelSample {
  const T* out;
  T* image;  // [rows, C, hw]
  int K, C;
  int64_t planes;
  int64_t plane_items;  // hw
  uint64_t seed;
  int64_t row0;
  // The pixel's random words in order, one Philox block per four (j only grows: each block once).
  struct Words {
    const DmolPixelSample* f;
    int64_t r, p;
    Philox4 block{};
    int loaded = -1;
    VAE_HD uint32_t operator()(int j) {
      if (j / 4 != loaded) {
        loaded = j / 4;
        const int blocks = (f->K + f->C + 3) / 4;
        block = philox_block(f->seed, kStreamPixels, uint64_t(f->row0 + r), 0, uint64_t(p * blocks + loaded));
      }
      return philox_word(block, j & 3);
    }
  };
  VAE_HD void at(int64_t r, int64_t p) const {
    const DmolLayout<T> o{out + r * planes * plane_items, plane_items, K, C};
    Words bits{this, r, p};
    int best = 0;
    T top = T(-1e30);
    for (int k = 0; k < K; ++k) {
      const T gumbel = -hd::log(-hd::log(T(philox_open_uniform(bits(k)))));
      const T v = o.at(k, p) + gumbel;
      if (v > top) top = v, best = k;
    }
    T xv[3] = {T(0), T(0), T(0)};
    for (int c = 0; c < C; ++c) {
      const T ls = math::soft_clamp(o.at(o.log_scale(best, c), p), T(math::kLogScaleMin), T(math::kLogScaleMax));
      xv[c] = quantize_pixel(o.coupled_mean(best, c, p, xv) + hd::exp(ls) * logistic_noise<T>(bits(K + c)));
      image[(r * C + c) * plane_items + p] = xv[c];
    }
  }
  VAE_HD void operator()(int64_t i) const { at(i / plane_items, i % plane_items); }
};

template <class Be, class T>
void logistic_pixel_sample(Be& be, const T* out, T* image, int rows, int64_t d, uint64_t seed, int64_t row0) {
  check(rows >= 0 && d >= 1 && (rows == 0 || (out && image)), "logistic_pixel_sample", "empty shape or null pointer");
  run(be, LogisticPixelSample<T>{out, image, d, seed, row0}, int64_t(rows) * d);
}

template <class Be, class T>
void dmol_pixel_sample(Be& be, const T* out, T* image, int rows, int components, int channels, int64_t hw, uint64_t seed,
                       int64_t row0) {
  check(rows >= 0 && hw >= 1 && (rows == 0 || (out && image)), "dmol_pixel_sample", "empty shape or null pointer");
  check_dmol_shape(components, channels, "dmol_pixel_sample");
  run(be, DmolPixelSample<T>{out, image, components, channels, dmol_planes(components, channels), hw, seed, row0},
      int64_t(rows) * hw);
}

}  // namespace vae::ops
