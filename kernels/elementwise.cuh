// Small element-wise operations for sampling, display and bookkeeping.
//   sigmoid:           y = 1 / (1 + e^-x)   (stable form, vae_math.cuh)                     8n bytes
//   clamp01:           y = min(max(x, 0), 1)   (NaN stays NaN)                               8n bytes
//   fill:              x = value                                                            4n bytes
//   normal_fill:       z[r, c] = scale * Philox normal at (c/4, r, step, stream)            4n bytes
//   accumulate_scaled: dst[i] += scale * src[i], or nothing when any src[i] is not finite
//                      (epoch sums of the loss parts stay on the device; a skipped step's loss
//                      stays out of them). n is tiny: one item does it all.               12n bytes
// sigmoid and clamp01 may run in place (x == y). One item per element (normal_fill: per group of
// 4 columns, one Philox block each): any order gives the same bits.
#pragma once

#include "for_each.cuh"
#include "philox.cuh"
#include "vae_math.cuh"

namespace vae::ops {

template <class T>
struct Sigmoid {
  const T* x;
  T* y;
  // Per pixel (the Bernoulli decoder's image): the vectorizing form (vae_math.cuh).
  VAE_HD void operator()(int64_t i) const { y[i] = math::bernoulli_mean(x[i]); }
};

template <class T>
struct Clamp01 {
  const T* x;
  T* y;
  VAE_HD void operator()(int64_t i) const {
    const T v = x[i];
    y[i] = v < T(0) ? T(0) : (T(1) < v ? T(1) : v);  // std::clamp's comparisons
  }
};

template <class T>
struct Fill {
  T* x;
  T value;
  VAE_HD void operator()(int64_t i) const { x[i] = value; }
};

template <class T>
struct NormalFill {
  T* z;
  int cols, groups;
  T scale;
  uint64_t seed, step;
  uint32_t stream;
  VAE_HD void operator()(int64_t i) const {
    const int64_t r = i / groups;
    const int c0 = static_cast<int>(i % groups) * 4;
    float eps[4];
    philox_normals(philox_block(seed, stream, uint64_t(r), step, uint64_t(c0) >> 2), eps);
    for (int lane = 0; lane < 4 && c0 + lane < cols; ++lane) z[r * cols + c0 + lane] = scale * T(eps[lane]);
  }
};

template <class T>
struct AccumulateScaled {
  const T* src;
  T* dst;
  int n;
  T scale;
  VAE_HD void operator()(int64_t) const {
    for (int i = 0; i < n; ++i)
      if (!hd::isfinite(src[i])) return;
    for (int i = 0; i < n; ++i) dst[i] += scale * src[i];
  }
};

template <class Be, class T>
void sigmoid(Be& be, const T* x, T* y, int64_t n) {
  check(n >= 0 && (n == 0 || (x && y)), "sigmoid", "null pointer or negative size");
  run(be, Sigmoid<T>{x, y}, n);
}

template <class Be, class T>
void clamp01(Be& be, const T* x, T* y, int64_t n) {
  check(n >= 0 && (n == 0 || (x && y)), "clamp01", "null pointer or negative size");
  run(be, Clamp01<T>{x, y}, n);
}

template <class Be, class T>
void fill(Be& be, T* x, int64_t n, scalar_t<T> value) {
  check(n >= 0 && (n == 0 || x), "fill", "null pointer or negative size");
  run(be, Fill<T>{x, value}, n);
}

// z[rows, cols] = scale * N(0, 1) from Philox (c/4, r, step, stream).
template <class Be, class T>
void normal_fill(Be& be, T* z, int rows, int cols, scalar_t<T> scale, uint64_t seed, uint32_t stream, uint64_t step) {
  check(rows >= 1 && cols >= 1 && z, "normal_fill", "empty shape or null pointer");
  const int groups = (cols + 3) / 4;
  run(be, NormalFill<T>{z, cols, groups, scale, seed, step, stream}, int64_t(rows) * groups);
}

template <class Be, class T>
void accumulate_scaled(Be& be, const T* src, int n, scalar_t<T> scale, T* dst) {
  check(n >= 1 && src && dst, "accumulate_scaled", "empty shape or null pointer");
  run(be, AccumulateScaled<T>{src, dst, n, scale}, 1);
}

}  // namespace vae::ops
