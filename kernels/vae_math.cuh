// Element-wise formulas of the VAE, written once for the CPU backend and the CUDA kernels.
//
// Templated on the scalar so the CPU reference can run them in double for finite-difference checks.
// Every function is numerically stable over the whole float range of its inputs (see each comment).
#pragma once

#include <type_traits>

#include "hd.cuh"

namespace vae::math {

// log1p(e) for e >= 0 from one log: u = 1 + e is rounded, and log(u) * e / (u - 1) cancels that
// rounding (Goldberg 1991, Theorem 4: within a few ulps). glibc's logf is a fast table method while
// its log1pf is not: on the CPU this was 12% of a training step at batch 1024.
template <class T>
VAE_HD T log1p_nonnegative(T e) {
  const T u = T(1) + e;
  return u == T(1) ? e : hd::log(u) * (e / (u - T(1)));
}

// log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|). softplus and sigmoid serve the latent
// units (a few dozen a row, in loops that do not vectorize): there glibc's scalar expf and logf
// are faster than the polynomials the per-pixel Bernoulli below uses.
template <class T>
VAE_HD T softplus(T x) {
  return (x > T(0) ? x : T(0)) + log1p_nonnegative(hd::exp(-hd::abs(x)));
}

template <class T>
VAE_HD T sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + hd::exp(-x));
  const T e = hd::exp(x);
  return e / (T(1) + e);
}

// The same sigmoid for loops over every hidden unit of a layer (the gate: 600 a row of a gated
// 300-300 MLP), with e^-|x| from hd::exp_nonpositive and a select instead of a branch, so that the
// CPU's loop vectorizes: with glibc's expf, a call per element, the gate was 15% of an evaluation's
// time (perf, k = 5000). Within 2 ulps of sigmoid; in double the same formula with ::exp.
template <class T>
VAE_HD T sigmoid_wide(T x) {
  const T e = hd::exp_nonpositive(-hd::abs(x));
  const T d = T(1) / (T(1) + e);
  return x >= T(0) ? d : e * d;
}

// log(1 + e) for e in [0, 1] (the Bernoulli's e = e^-|l|): 2 atanh(s) with s = e / (2 + e) <= 1/3,
// whose odd series shrinks by s^2 <= 1/9 a term, so seven terms are within float rounding (4 ulps of
// log1p over [0, 1], test_math.cpp). No log call, so a row of pixels vectorizes on the CPU, where
// glibc's logf is a call per element (the Bernoulli with libm was 13% of a batch-4096 step, 4.4%
// with this and hd::exp_nonpositive). In double: ::log1p, exactly, for the finite-difference checks.
template <class T>
VAE_HD T log1p_unit(T e) {
  if constexpr (std::is_same_v<T, float>) {
    const float s = e / (2.0f + e);
    // Below 2^-30 the series' tail is under 2^-60 of s: 0 keeps the products out of the subnormal
    // range, where x86 arithmetic takes ~100 cycles an operation unless denormals are flushed.
    const float s2 = s > 0x1p-30f ? s * s : 0.0f;
    float p = 1.0f / 13.0f;
    p = p * s2 + 1.0f / 11.0f;
    p = p * s2 + 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    return 2.0f * s + 2.0f * s * s2 * p;
  } else {
    return hd::log1p(e);
  }
}

// -log Bernoulli(x | sigmoid(l)) = softplus(l) - x*l: exact and finite at any logit, also for
// soft targets x in [0, 1]. Gradient with respect to l: sigmoid(l) - x. Per pixel, so written with
// the vectorizable e = exp_nonpositive(-|l|) and log1p_unit, without branches.
template <class T>
VAE_HD T bernoulli_nll(T logit, T x) {
  return (logit > T(0) ? logit : T(0)) + log1p_unit(hd::exp_nonpositive(-hd::abs(logit))) - x * logit;
}
// The Bernoulli's mean sigmoid(l) per pixel (its gradient's first term, and the decoded image):
// from e = exp_nonpositive(-|l|) with one division for both signs, so a row of pixels vectorizes.
template <class T>
VAE_HD T bernoulli_mean(T logit) {
  const T e = hd::exp_nonpositive(-hd::abs(logit));
  const T r = T(1) / (T(1) + e);  // sigmoid(|l|)
  return logit >= T(0) ? r : e * r;
}
template <class T>
VAE_HD T bernoulli_nll_grad(T logit, T x) {
  return bernoulli_mean(logit) - x;
}
// Both from one exponential e = e^-|l| (the value and the gradient each need it): the same values as
// bernoulli_nll and bernoulli_nll_grad, bit for bit, at one exp per element instead of two.
template <class T>
VAE_HD T bernoulli_nll_with_grad(T logit, T x, T& grad) {
  const T e = hd::exp_nonpositive(-hd::abs(logit));
  const T r = T(1) / (T(1) + e);
  grad = (logit >= T(0) ? r : e * r) - x;
  return (logit > T(0) ? logit : T(0)) + log1p_unit(e) - x * logit;
}

// -log N(x | mean, sigma^2) with sigma = e^log_sigma; gradients with respect to mean and log_sigma.
template <class T>
VAE_HD T gaussian_nll(T mean, T x, T log_sigma) {
  const T r = (x - mean) * hd::exp(-log_sigma);
  return T(0.91893853320467274178) + log_sigma + T(0.5) * r * r;  // 0.5*log(2*pi)
}
template <class T>
VAE_HD T gaussian_nll_grad_mean(T mean, T x, T log_sigma) {
  return (mean - x) * hd::exp(T(-2) * log_sigma);
}
template <class T>
VAE_HD T gaussian_nll_grad_log_sigma(T mean, T x, T log_sigma) {
  const T r = (x - mean) * hd::exp(-log_sigma);
  return T(1) - r * r;
}

// Smooth clamp into (lo, hi): identity to within e^-(distance to the bound) in the middle, so it
// changes nothing a network normally produces, but exp() of the result can never overflow.
//   y = hi - softplus(hi - (lo + softplus(x - lo)))
template <class T>
VAE_HD T soft_clamp(T x, T lo, T hi) {
  const T above_lo = lo + softplus(x - lo);
  return hi - softplus(hi - above_lo);
}
template <class T>
VAE_HD T soft_clamp_grad(T x, T lo, T hi) {
  const T above_lo = lo + softplus(x - lo);
  return sigmoid(x - lo) * sigmoid(hi - above_lo);
}

// The discretized logistic of 8-bit data on [0, 1] (PixelCNN++, NVAE): pixel value k in 0..255 is
// x = k / 255, the centre of a bin of width 1/255; the end bins reach to -inf and +inf. With mean m
// and log-scale ls (soft-clamped to [kLogScaleMin, kLogScaleMax]), a = (x - m + 1/510) e^-ls and
// b = (x - m - 1/510) e^-ls, the bin's mass is
//   interior:  sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - e^-(a - b))
//              log p = -softplus(-a) - softplus(b) + log(-expm1(-(a - b)))
//   x = 0:     log p = log sigmoid(a)     = -softplus(-a)
//   x = 1:     log p = log(1 - sigmoid(b)) = -softplus(b)
// all in log space, so a mass below float precision (x far from m) is still its own finite log,
// with no threshold and no epsilon. a - b = e^-ls / 255 <= e^7 / 255 < 4.3, so the expm1 is tame.
// The gradients, with s = e^ls:
//   d(-log p)/dm  = e^-ls * dm_term,  dm_term  = sigmoid(-a) - sigmoid(b)   (interior)
//   d(-log p)/dls = dls_term,         dls_term = a sigmoid(-a) - b sigmoid(b) + (a - b) / expm1(a - b)
// the edges keeping their one side (x = 0: sigmoid(-a), a sigmoid(-a); x = 1: -sigmoid(b), -b sigmoid(b)).
constexpr float kLogScaleMin = -7.0f;  // PixelCNN++'s floor: a bin of 1/255 then holds at most ~0.99
constexpr float kLogScaleMax = 5.0f;   // scale e^5 ~ 150 over [0, 1]: flat
constexpr double kPixelHalfBin = 1.0 / 510.0;

template <class T>
struct DiscretizedLogistic {
  T log_p;     // log of the bin's mass
  T dm_term;   // d(-log p)/dm = inv_scale * dm_term
  T dls_term;  // d(-log p)/dls
  T inv_scale;
};

template <class T>
VAE_HD DiscretizedLogistic<T> discretized_logistic(T x, T mean, T log_scale) {
  DiscretizedLogistic<T> r;
  r.inv_scale = hd::exp(-log_scale);
  const T c = x - mean;
  const T a = r.inv_scale * (c + T(kPixelHalfBin)), b = r.inv_scale * (c - T(kPixelHalfBin));
  if (x < T(kPixelHalfBin)) {  // k = 0
    const T sa = sigmoid(-a);
    r.log_p = -softplus(-a);
    r.dm_term = sa;
    r.dls_term = a * sa;
  } else if (x > T(1) - T(kPixelHalfBin)) {  // k = 255
    const T sb = sigmoid(b);
    r.log_p = -softplus(b);
    r.dm_term = -sb;
    r.dls_term = -b * sb;
  } else {
    const T sa = sigmoid(-a), sb = sigmoid(b), delta = a - b, em1 = hd::expm1(delta);
    r.log_p = -softplus(-a) - softplus(b) + hd::log(-hd::expm1(-delta));
    r.dm_term = sa - sb;
    r.dls_term = a * sa - b * sb + delta / em1;
  }
  return r;
}

// log(2 pi) / 2, the normalising constant of a standard normal density per dimension.
constexpr double kHalfLog2Pi = 0.91893853320467274178;

// Bounds of the posterior log-variance and of a learned Gaussian log-sigma.
constexpr float kLogvarMin = -30.0f;
constexpr float kLogvarMax = 20.0f;
constexpr float kLogSigmaMin = -6.9f;  // sigma >= ~1e-3: a pixel that is always 0 cannot drive NLL to -inf
constexpr float kLogSigmaMax = 4.0f;

// KL(N(mu, e^lv) || N(0, 1)) for one latent dimension, and its partial derivatives.
template <class T>
VAE_HD T gaussian_kl(T mu, T logvar) {
  return T(0.5) * (hd::exp(logvar) + mu * mu - T(1) - logvar);
}
template <class T>
VAE_HD T gaussian_kl_grad_logvar(T logvar) {
  return T(0.5) * (hd::exp(logvar) - T(1));
}

enum class Act : int { Identity = 0, ReLU = 1, LeakyReLU = 2, Tanh = 3, SiLU = 4 };

template <class T>
VAE_HD T activation(Act a, T x, T slope) {
  switch (a) {
    case Act::ReLU: return x > T(0) ? x : T(0);
    case Act::LeakyReLU: return x > T(0) ? x : slope * x;
    case Act::Tanh: return hd::tanh(x);
    case Act::SiLU: return x * sigmoid(x);
    default: return x;
  }
}
// d activation / dx evaluated at the input x.
template <class T>
VAE_HD T activation_grad(Act a, T x, T slope) {
  switch (a) {
    case Act::ReLU: return x > T(0) ? T(1) : T(0);
    case Act::LeakyReLU: return x > T(0) ? T(1) : slope;
    case Act::Tanh: {
      const T t = hd::tanh(x);
      return T(1) - t * t;
    }
    case Act::SiLU: {
      const T s = sigmoid(x);
      return s * (T(1) + x * (T(1) - s));
    }
    default: return T(1);
  }
}

// One Adam/AdamW update of a single parameter (PyTorch's formulation).
//   step_size = lr / (1 - beta1^t), denom = sqrt(v) / sqrt(1 - beta2^t) + eps
struct AdamCoefficients {
  float lr, beta1, beta2, eps, weight_decay;
  float step_size;           // lr / bias_correction1
  float inv_sqrt_bc2;        // 1 / sqrt(bias_correction2)
  float grad_scale;          // global-norm clipping factor (1 when not clipping)
  bool decoupled;            // AdamW: decay the weight, not the gradient
};
template <class T>
VAE_HD void adam_update(T& p, T g, T& m, T& v, const AdamCoefficients& c) {
  g *= T(c.grad_scale);
  if (c.weight_decay != 0.0f) {
    if (c.decoupled) p -= T(c.lr) * T(c.weight_decay) * p;
    else g += T(c.weight_decay) * p;
  }
  m = T(c.beta1) * m + (T(1) - T(c.beta1)) * g;
  v = T(c.beta2) * v + (T(1) - T(c.beta2)) * g * g;
  const T denom = hd::sqrt(v) * T(c.inv_sqrt_bc2) + T(c.eps);
  p -= T(c.step_size) * m / denom;
}

}  // namespace vae::math
