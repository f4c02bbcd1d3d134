// The bounded log-variance of an encoder head [mu | raw log-variance] (2L per row), as the papers
// with gated networks use it (vae_vampprior: Hardtanh(-6, 2) on the log-variance): mu passes
// through, the log-variance is held in [lo, hi].
//   hard: lv = min(max(raw, lo), hi),            dlv/draw = 1 inside (lo, hi), 0 outside
//   soft: lv = c + s tanh((raw - c) / s),        dlv/draw = 1 - tanh^2, c = (lo + hi)/2, s = (hi - lo)/2
//         (NVAE's soft clamp, centred on the range: smooth, never flat, close to the identity near c)
//   forward:  y[r, u] = h[r, u] (u < L), y[r, L + u] = clamp(h[r, L + u])            [rows, W]
//   backward: dh[r, u] = dy[r, u], dh[r, L + u] = dy[r, L + u] * clamp'(h[r, L + u])   [rows, W]
// A row may be wider than the head (W >= 2L, default 2L): columns from 2L on pass through as mu does
// (a hierarchy's encoder output: the top's head, then the lower levels' bottom-up heads, which are
// clamped after the top-down path adds to them, latent/top_down.hpp).
// Bytes: forward reads and writes 4W per row; backward reads 8W, writes 4W. Planar: plane = row.
#pragma once

#include "for_each.cuh"
#include "vae_math.cuh"

namespace vae::ops {

template <class T>
struct LogvarBounds {
  T lo, hi;
  bool soft;
  VAE_HD T value(T raw) const {
    if (soft) {
      const T c = T(0.5) * (lo + hi), s = T(0.5) * (hi - lo);
      return c + s * hd::tanh((raw - c) / s);
    }
    return raw < lo ? lo : (raw > hi ? hi : raw);
  }
  VAE_HD T grad(T raw) const {
    if (soft) {
      const T c = T(0.5) * (lo + hi), s = T(0.5) * (hi - lo);
      const T t = hd::tanh((raw - c) / s);
      return T(1) - t * t;
    }
    return raw > lo && raw < hi ? T(1) : T(0);
  }
};

template <class T>
struct LogvarClampForward {
  const T* h;
  T* y;
  LogvarBounds<T> bounds;
  int64_t plane_items;  // W
  int64_t latent;       // L
  VAE_HD void at(int64_t r, int64_t u) const {
    const int64_t k = r * plane_items + u;
    y[k] = u < latent || u >= 2 * latent ? h[k] : bounds.value(h[k]);
  }
  VAE_HD void operator()(int64_t i) const { at(i / plane_items, i % plane_items); }
};

template <class T>
struct LogvarClampBackward {
  const T* h;
  const T* dy;
  T* dh;
  LogvarBounds<T> bounds;
  int64_t plane_items;  // W
  int64_t latent;       // L
  VAE_HD void at(int64_t r, int64_t u) const {
    const int64_t k = r * plane_items + u;
    dh[k] = u < latent || u >= 2 * latent ? dy[k] : dy[k] * bounds.grad(h[k]);
  }
  VAE_HD void operator()(int64_t i) const { at(i / plane_items, i % plane_items); }
};

// width: the row's length W (0: the head alone, 2L). dh may be dy (in place).
template <class Be, class T>
void logvar_clamp_forward(Be& be, const T* h, T* y, int rows, int latent, LogvarBounds<T> bounds, int64_t width = 0) {
  if (width == 0) width = 2 * int64_t(latent);
  check(rows >= 0 && latent >= 1 && width >= 2 * int64_t(latent) && (rows == 0 || (h && y)), "logvar_clamp_forward",
        "empty latent, a row narrower than the head, or null pointer");
  check(bounds.lo < bounds.hi, "logvar_clamp_forward", "the range must have lo < hi");
  run(be, LogvarClampForward<T>{h, y, bounds, width, latent}, int64_t(rows) * width);
}

template <class Be, class T>
void logvar_clamp_backward(Be& be, const T* h, const T* dy, T* dh, int rows, int latent, LogvarBounds<T> bounds,
                           int64_t width = 0) {
  if (width == 0) width = 2 * int64_t(latent);
  check(rows >= 0 && latent >= 1 && width >= 2 * int64_t(latent) && (rows == 0 || (h && dy && dh)),
        "logvar_clamp_backward", "empty latent, a row narrower than the head, or null pointer");
  check(bounds.lo < bounds.hi, "logvar_clamp_backward", "the range must have lo < hi");
  run(be, LogvarClampBackward<T>{h, dy, dh, bounds, width, latent}, int64_t(rows) * width);
}

}  // namespace vae::ops
