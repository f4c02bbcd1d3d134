// Discretized logistic likelihood of 8-bit grey (or per-channel) images, value and gradients in one
// pass (math: vae_math.cuh's discretized_logistic, 256 bins of width 1/255 centred on x = k / 255,
// the end bins open). The decoder gives per row [means (d) | raw log-scales (d)], in the image's own
// layout (an NCHW decoder: C mean channels, then C log-scale channels):
//   ls[r, i]        = soft_clamp(raw[r, i], kLogScaleMin, kLogScaleMax)
//   nll[r]          = -sum_i log P(x[r, i] | mean[r, i], ls[r, i])                            [rows]
//   dout[r, i]      = grad_scale * e^-ls dm_term                 (the means' half)             [rows, 2d]
//   dout[r, d + i]  = grad_scale * dls_term * soft_clamp'(raw)   (the log-scales' half)
// Bytes: reads 12d, writes 8d + 4 per row (4 without the gradient). A row op (for_each.cuh's run_rows).
#pragma once

#include "for_each.cuh"
#include "vae_math.cuh"

namespace vae::ops {

template <class T>
struct DiscretizedLogisticNll {
  using Scalar = T;
  const T* out;  // [rows, 2d]
  const T* x;    // [rows, d], values k / 255
  T* nll;
  T* dout;  // [rows, 2d] or null
  T grad_scale;
  int64_t items;  // d
  VAE_HD void operator()(int64_t r, int64_t i, T& acc) const {
    const T* mean = out + r * 2 * items;
    const T raw = mean[items + i];
    const T ls = math::soft_clamp(raw, T(math::kLogScaleMin), T(math::kLogScaleMax));
    const math::DiscretizedLogistic<T> t = math::discretized_logistic(x[r * items + i], mean[i], ls);
    acc -= t.log_p;
    if (!dout) return;
    T* d = dout + r * 2 * items;
    d[i] = grad_scale * t.inv_scale * t.dm_term;
    d[items + i] = grad_scale * t.dls_term * math::soft_clamp_grad(raw, T(math::kLogScaleMin), T(math::kLogScaleMax));
  }
  VAE_HD void finish(int64_t r, T total) const { nll[r] = total; }
};

template <class Be, class T>
void discretized_logistic_nll(Be& be, const T* out, const T* x, T* nll, T* dout, int rows, int64_t d,
                              scalar_t<T> grad_scale) {
  check(rows >= 1 && d >= 1 && out && x && nll, "discretized_logistic_nll", "empty shape or null pointer");
  run_rows(be, DiscretizedLogisticNll<T>{out, x, nll, dout, grad_scale, d}, rows);
}

}  // namespace vae::ops
