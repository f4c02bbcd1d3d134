// A normalising flow over z in R^L: `steps` steps of ActNorm, an invertible linear map in LU form
// and an affine coupling layer (RealNVP / Glow; the math is kernels/flow.cuh). The flow prior uses
// it in the normalising direction (z -> eps, log p(z) = log N(eps) + logdet), the posterior flow in
// the generative one (the Gaussian sample z0 -> z, log q(z|x) = log q0(z0|x) - logdet); both train
// forward() and backward(), and sampling from the prior runs inverse(), the stack in reverse.
// Parameters live in the model's flat buffers, named <name>.<step>.actnorm.{bias,log_scale},
// .linear.{lu,log_scale}, .coupling.{0,2}.{weight,bias}.
#pragma once

#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "flow.cuh"
#include "graph/layers.hpp"
#include "vae/tensor.hpp"

namespace vae {

class Flow {
 public:
  Flow(std::string name, int latent, int steps, int hidden);
  int steps() const { return steps_; }
  int latent() const { return latent_; }

  int64_t layout(int64_t offset);
  void bind(float* params, float* grads);
  void param_slices(std::vector<ParamSlice>& out) const;
  // ActNorm at the identity, the linear map at the reversal permutation (lu = 0, log-scales 0),
  // the couplings' first layers U(+-1/sqrt(d)) (Philox) and their last layers at zero: the flow
  // starts as a fixed permutation of z until initialize_from sets the ActNorms from data.
  void initialize(std::vector<float>& params, uint64_t seed, uint32_t& tensor_index) const;

  // Room for batches of up to rows rows (grows only); generation() counts reallocations.
  void prepare(int rows, Device device);
  uint64_t generation() const { return generation_; }

  // y = f(x) for x [rows, L] (kept for backward); logdet[r] += log |det df/dx| (logdet may be null).
  // Returns y, the flow's own buffer, valid until the next forward.
  const float* forward(Backend& be, const float* x, int rows, float* logdet);
  // After forward on the same rows: dx from dy and each row's weight of logdet in the loss (wld).
  // With params, also the flow's parameter gradients (overwritten). Returns dx (own buffer).
  const float* backward(Backend& be, const float* dy, int rows, const ops::GradWeight<float>& wld, bool params);
  // x = f^-1(y) (x must not alias y).
  void inverse(Backend& be, const float* y, int rows, float* x);
  // Glow's data-dependent ActNorm initialisation: step by step, the bias and log-scale that give
  // the step's input x [rows, L] zero mean and unit variance per dimension, then the step forward.
  void initialize_from(Backend& be, const float* x, int rows);

 private:
  struct Offsets {
    int64_t an_bias, an_scale, lu, lu_scale, w1, b1, w2, b2;
  };
  ops::CouplingParams<float> coupling(int s) const;
  // The coupling net's output width, 2m: a log-scale and a shift per transformed dimension.
  int64_t net_width() const { return 2 * (latent_ - latent_ / 2); }
  // Step s forward from x into its kept activations (act(3s + 2) is its output, returned).
  const float* step_forward(Backend& be, int s, const float* x, int rows, float* logdet);
  float* act(int i) { return acts_.data() + int64_t(i) * capacity_ * latent_; }

  std::string name_;
  int latent_, steps_, hidden_;
  std::vector<Offsets> at_;
  float *params_ = nullptr, *grads_ = nullptr;
  int capacity_ = 0;
  uint64_t generation_ = 0;
  // acts_: each layer's output, 3 per step [rows, L]; t_: the LU layers' U x; hp_, o_: the couplings'
  // hidden pre-activations [rows, H] and outputs [rows, 2m]; the backward's ping-pong gradients and scratch.
  Tensor acts_, t_, hp_, o_, grad_a_, grad_b_, dt_, dout_, dhp_;
  std::vector<const float*> inputs_;  // each layer's input in the last forward
};

}  // namespace vae
