// Mixture of discretized logistics per pixel (PixelCNN++, Salimans et al. 2017; NVAE), value and
// gradients in one pass, for grey (C = 1) or RGB (C = 3) 8-bit images; each channel's bin mass is
// vae_math.cuh's discretized_logistic (256 bins of width 1/255 centred on x = k / 255, open ends).
// The decoder gives per row K (1 + 2C + C(C-1)/2) planes of HW positions (NCHW):
//   logits  l[k]          planes [0, K)
//   means   m[k, c]       planes K + k C + c
//   raw log-scales        planes K + K C + k C + c     (ls = soft_clamp(raw, kLogScaleMin, kLogScaleMax))
//   coefficients (C = 3)  planes K + 2 K C + 3 k + j   (alpha, beta, gamma = tanh(raw))
// At one position, with x_c = x[r, c, p] in [0, 1], component k's channel means are coupled
// linearly to the channels before them (PixelCNN++'s autoregression over colours):
//   mu0 = m0,  mu1 = m1 + alpha x0,  mu2 = m2 + beta x0 + gamma x1
//   log p_k  = log softmax(l)_k + sum_c log P(x_c | mu_c, ls_kc)
//   nll[r]   = -sum_p logsumexp_k log p_k                                                 [rows]
// and with w_k = p_k / sum_j p_j (the component's responsibility), pi = softmax(l):
//   d nll / d l_k      = pi_k - w_k
//   d nll / d m_kc     = w_k e^-ls dm_term_kc,  d nll / d raw_kc = w_k dls_term_kc soft_clamp'(raw)
//   d nll / d raw_alpha = (d nll / d m_k1) x0 (1 - alpha^2); beta: (d nll / d m_k2) x0 (1 - beta^2);
//   gamma: (d nll / d m_k2) x1 (1 - gamma^2)
// The backward recomputes each component's terms rather than holding K C of them (registers on
// CUDA). K <= kMaxDmolComponents. Bytes per position: reads 4 (P + C), writes 4 P (P = the planes)
// with the gradient, and 4 per row. A row op (for_each.cuh's run_rows), one item per position.
//
// dmol_image: the picture of the same output, per position the most probable component's coupled
// means clamped to [0, 1] (mu0, then mu1 and mu2 from the clamped channels before them). Planar.
#pragma once

#include "for_each.cuh"
#include "vae_math.cuh"

namespace vae::ops {

constexpr int kMaxDmolComponents = 32;

// The decoder's planes per pixel position for K components over C channels: logits, means,
// log-scales and the colour coefficients (ModelConfig::decoder_output_channels says the same).
constexpr int64_t dmol_planes(int components, int channels) {
  return int64_t(components) * (1 + 2 * channels + channels * (channels - 1) / 2);
}

inline void check_dmol_shape(int components, int channels, const char* op) {
  check(components >= 1 && components <= kMaxDmolComponents, op, "components must be in [1, 32]");
  check(channels == 1 || channels == 3, op, "channels must be 1 or 3");
}

template <class T>
struct DmolLayout {
  const T* out;  // this row's planes
  int64_t hw;
  int K, C;
  VAE_HD T at(int plane, int64_t p) const { return out[plane * hw + p]; }
  VAE_HD int logit(int k) const { return k; }
  VAE_HD int mean(int k, int c) const { return K + k * C + c; }
  VAE_HD int log_scale(int k, int c) const { return K + K * C + k * C + c; }
  VAE_HD int coeff(int k, int j) const { return K + 2 * K * C + 3 * k + j; }
  // Component k's coupled mean of channel c at position p, given the channels before it (x).
  VAE_HD T coupled_mean(int k, int c, int64_t p, const T* x) const {
    T m = at(mean(k, c), p);
    if (c == 1) m += hd::tanh(at(coeff(k, 0), p)) * x[0];
    if (c == 2) m += hd::tanh(at(coeff(k, 1), p)) * x[0] + hd::tanh(at(coeff(k, 2), p)) * x[1];
    return m;
  }
};

template <class T>
struct DmolNll {
  using Scalar = T;
  const T* out;  // [rows, P, hw]
  const T* x;    // [rows, C, hw]
  T* nll;
  T* dout;  // [rows, P, hw] or null
  T grad_scale;
  int K, C;
  int64_t planes;
  int64_t items;  // hw
  VAE_HD void operator()(int64_t r, int64_t p, T& acc) const {
    const DmolLayout<T> o{out + r * planes * items, items, K, C};
    T xv[3] = {T(0), T(0), T(0)};
    for (int c = 0; c < C; ++c) xv[c] = x[(r * C + c) * items + p];
    T top = o.at(0, p);
    for (int k = 1; k < K; ++k) top = hd::max(top, o.at(k, p));
    T norm = T(0);
    for (int k = 0; k < K; ++k) norm += hd::exp(o.at(k, p) - top);
    const T log_norm = top + hd::log(norm);  // log sum_k e^l_k
    T lp[kMaxDmolComponents];
    T best = T(-1e30);
    for (int k = 0; k < K; ++k) {
      T s = o.at(k, p) - log_norm;
      for (int c = 0; c < C; ++c) {
        const T ls = math::soft_clamp(o.at(o.log_scale(k, c), p), T(math::kLogScaleMin), T(math::kLogScaleMax));
        s += math::discretized_logistic(xv[c], o.coupled_mean(k, c, p, xv), ls).log_p;
      }
      lp[k] = s;
      best = hd::max(best, s);
    }
    T total = T(0);
    for (int k = 0; k < K; ++k) total += hd::exp(lp[k] - best);
    const T log_p = best + hd::log(total);
    acc -= log_p;
    if (!dout) return;
    T* d = dout + r * planes * items;
    for (int k = 0; k < K; ++k) {
      const T w = hd::exp(lp[k] - log_p);
      d[o.logit(k) * items + p] = grad_scale * (hd::exp(o.at(k, p) - log_norm) - w);
      T dmu[3] = {T(0), T(0), T(0)};
      for (int c = 0; c < C; ++c) {
        const T raw = o.at(o.log_scale(k, c), p);
        const T ls = math::soft_clamp(raw, T(math::kLogScaleMin), T(math::kLogScaleMax));
        const math::DiscretizedLogistic<T> t = math::discretized_logistic(xv[c], o.coupled_mean(k, c, p, xv), ls);
        dmu[c] = grad_scale * w * t.inv_scale * t.dm_term;
        d[o.mean(k, c) * items + p] = dmu[c];
        d[o.log_scale(k, c) * items + p] =
            grad_scale * w * t.dls_term * math::soft_clamp_grad(raw, T(math::kLogScaleMin), T(math::kLogScaleMax));
      }
      if (C == 3) {
        const T alpha = hd::tanh(o.at(o.coeff(k, 0), p)), beta = hd::tanh(o.at(o.coeff(k, 1), p)),
                gamma = hd::tanh(o.at(o.coeff(k, 2), p));
        d[o.coeff(k, 0) * items + p] = dmu[1] * xv[0] * (T(1) - alpha * alpha);
        d[o.coeff(k, 1) * items + p] = dmu[2] * xv[0] * (T(1) - beta * beta);
        d[o.coeff(k, 2) * items + p] = dmu[2] * xv[1] * (T(1) - gamma * gamma);
      }
    }
  }
  VAE_HD void finish(int64_t r, T total) const { nll[r] = total; }
};

template <class T>
struct DmolImage {
  const T* out;
  T* image;  // [rows, C, hw]
  int K, C;
  int64_t planes;
  int64_t plane_items;  // hw
  VAE_HD void at(int64_t r, int64_t p) const {
    const DmolLayout<T> o{out + r * planes * plane_items, plane_items, K, C};
    int best = 0;
    for (int k = 1; k < K; ++k)
      if (o.at(k, p) > o.at(best, p)) best = k;
    T xv[3] = {T(0), T(0), T(0)};
    for (int c = 0; c < C; ++c) {
      const T m = o.coupled_mean(best, c, p, xv);
      xv[c] = m < T(0) ? T(0) : (m > T(1) ? T(1) : m);
      image[(r * C + c) * plane_items + p] = xv[c];
    }
  }
  VAE_HD void operator()(int64_t i) const { at(i / plane_items, i % plane_items); }
};

template <class Be, class T>
void dmol_nll(Be& be, const T* out, const T* x, T* nll, T* dout, int rows, int components, int channels, int64_t hw,
              scalar_t<T> grad_scale) {
  check(rows >= 1 && hw >= 1 && out && x && nll, "dmol_nll", "empty shape or null pointer");
  check_dmol_shape(components, channels, "dmol_nll");
  run_rows(be, DmolNll<T>{out, x, nll, dout, grad_scale, components, channels, dmol_planes(components, channels), hw},
           rows);
}

template <class Be, class T>
void dmol_image(Be& be, const T* out, T* image, int rows, int components, int channels, int64_t hw) {
  check(rows >= 0 && hw >= 1 && (rows == 0 || (out && image)), "dmol_image", "empty shape or null pointer");
  check_dmol_shape(components, channels, "dmol_image");
  run(be, DmolImage<T>{out, image, components, channels, dmol_planes(components, channels), hw}, int64_t(rows) * hw);
}

}  // namespace vae::ops
