// Element-wise activations, forward and backward.
//   forward:  y[i] = act(x[i])             reads n floats, writes n floats  (8n bytes)
//   backward: dx[i] = dy[i] * act'(x[i])   reads 2n floats, writes n floats (12n bytes)
// act is one of vae_math.cuh's (Identity, ReLU, LeakyReLU, Tanh, SiLU), chosen once per call and not
// per element: each functor has one formula, so the CPU loop vectorizes (a switch per element cost
// about 50 instructions an element there). One item per element.
#pragma once

#include <type_traits>

#include "for_each.cuh"
#include "vae_math.cuh"

namespace vae::ops {

// Calls f(std::integral_constant<math::Act, act>) for the run-time act.
template <class F>
void with_activation(math::Act act, F&& f) {
  switch (act) {
    case math::Act::ReLU: return f(std::integral_constant<math::Act, math::Act::ReLU>{});
    case math::Act::LeakyReLU: return f(std::integral_constant<math::Act, math::Act::LeakyReLU>{});
    case math::Act::Tanh: return f(std::integral_constant<math::Act, math::Act::Tanh>{});
    case math::Act::SiLU: return f(std::integral_constant<math::Act, math::Act::SiLU>{});
    default: return f(std::integral_constant<math::Act, math::Act::Identity>{});
  }
}

template <class T, math::Act A>
struct ActivationForward {
  const T* x;
  T* y;
  T slope;
  VAE_HD void operator()(int64_t i) const { y[i] = math::activation(A, x[i], slope); }
};

template <class T, math::Act A>
struct ActivationBackward {
  const T* x;
  const T* dy;
  T* dx;
  T slope;
  VAE_HD void operator()(int64_t i) const { dx[i] = dy[i] * math::activation_grad(A, x[i], slope); }
};

template <class Be, class T>
void activation_forward(Be& be, math::Act act, scalar_t<T> slope, const T* x, T* y, int64_t n) {
  check(n >= 0 && (n == 0 || (x && y)), "activation_forward", "null pointer or negative size");
  with_activation(act, [&](auto a) { run(be, ActivationForward<T, decltype(a)::value>{x, y, slope}, n); });
}

template <class Be, class T>
void activation_backward(Be& be, math::Act act, scalar_t<T> slope, const T* x, const T* dy, T* dx, int64_t n) {
  check(n >= 0 && (n == 0 || (x && dy && dx)), "activation_backward", "null pointer or negative size");
  with_activation(act, [&](auto a) { run(be, ActivationBackward<T, decltype(a)::value>{x, dy, dx, slope}, n); });
}

}  // namespace vae::ops
