// Priors p(z): log-density with its backward, their own parameters in the model's flat buffers,
// and sampling. The standard normal has no parameters; the mixture of Gaussians learns its weights,
// means and variances through the Monte-Carlo KL term log q(z|x) - log p(z) of the loss. The
// VampPrior (Tomczak & Welling 2018) is p(z) = (1/K) sum_k q(z | u_k): the encoder's posteriors at
// K learned pseudo-inputs u_k = clamp(raw_k, 0, 1). Its density needs the encoder's output at the
// pseudo-inputs, so it offers the model its PseudoInputs: the model runs the encoder on them beside
// the batch and binds that output there; the gradient reaches the encoder through the same rows,
// and the pseudo-inputs through the encoder's input gradient there.
// Built from the model's configuration by make_prior; the math of each is one file in kernels/.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "grad_weight.cuh"
#include "graph/layers.hpp"
#include "latent/posterior.hpp"
#include "vae/config.hpp"
#include "vae/tensor.hpp"

namespace vae {

// Inputs a prior learns for the encoder to run on beside each batch (the VampPrior's pseudo-inputs):
// what couples such a prior to the encoder, held by the prior itself.
class PseudoInputs {
 public:
  virtual ~PseudoInputs() = default;
  // The rows the encoder must also run on.
  virtual int count() const = 0;
  // Writes the input images [count(), input_dim] (backend memory).
  virtual void write(Backend& be, float* x) const = 0;
  // Where the encoder's output at them is (h [count(), head width]) for the prior's next
  // add_log_prob, backward and sample calls, and where its backward writes that output's gradient
  // (dh, the same layout; null outside training).
  virtual void bind_encoding(const float* h, float* dh) = 0;
  // Their parameter gradient from the encoder's input gradient at them (overwritten).
  virtual void backward(Backend& be, const float* dx) = 0;
};

class Prior {
 public:
  explicit Prior(int latent) : latent_(latent) {}
  virtual ~Prior() = default;
  int latent() const { return latent_; }
  virtual PriorType type() const = 0;
  // N(0, I): with a Gaussian posterior and the ELBO the latent block takes the fused fast path
  // (latent_sample_kl, the analytic KL).
  virtual bool is_standard_normal() const { return false; }

  // Parameters, as modules declare theirs (graph/layers.hpp): named "prior.<tensor>".
  virtual int64_t layout(int64_t offset) { return offset; }
  virtual void bind(float* /*params*/, float* /*grads*/) {}
  virtual void param_slices(std::vector<ParamSlice>& /*out*/) const {}
  virtual void initialize(std::vector<float>& /*params*/, uint64_t /*seed*/, uint32_t& /*tensor_index*/) const {}

  // Makes room for batches of up to rows rows (grows, never shrinks); generation() counts the
  // reallocations, as Sequential's does, so recorded work addressing the old scratch is retired.
  virtual void prepare(int /*rows*/, Device /*device*/) {}
  virtual uint64_t generation() const { return 0; }

  // out[r] += sign * log p(z_r) for z [rows, latent]. Keeps what backward needs about this z.
  virtual void add_log_prob(Backend& be, const float* z, int rows, float sign, float* out) = 0;
  // After add_log_prob on the same z: dz += w.z_r * d(-log p(z_r))/dz, and this prior's parameter
  // gradients of sum_r w.params_r * -log p(z_r) (overwritten; the VampPrior's go to the bound
  // encoder rows, see bind_encoding).
  virtual void backward(Backend& be, const float* z, int rows, const ops::PriorGradWeights<float>& w, float* dz) = 0;
  // z [n, latent] drawn from the prior with its spread scaled by temperature (Philox, seed).
  virtual void sample(Backend& be, float* z, int n, float temperature, uint64_t seed) = 0;

  // A prior conditioned on the class label, p(z | y) (label_gaussian): it reads the labels of the z
  // rows of its next add_log_prob, backward and sample calls from bind_labels, y [rows / repeat]
  // (the device's float class indices; z row i has label y[i / repeat]). The others ignore it.
  virtual bool conditional() const { return false; }
  virtual void bind_labels(const float* /*y*/, int /*repeat*/) {}

  // The inputs this prior needs the encoder to run on (the VampPrior's), or null.
  virtual PseudoInputs* pseudo_inputs() { return nullptr; }
  // Their count (0 without).
  int pseudo_input_count() { return pseudo_inputs() ? pseudo_inputs()->count() : 0; }
  // Data-dependent initialisation from samples of the posterior z [rows, L] (the flow prior's
  // ActNorms), before the first training step of a run.
  virtual void initialize_from(Backend& /*be*/, const float* /*z*/, int /*rows*/) {}
  // The flow prior's log |det dg/dz| for the first rows of the last add_log_prob, a view [rows]
  // (an undefined tensor for the others).
  virtual Tensor last_logdet(int /*rows*/) const { return Tensor(); }

 private:
  int latent_;
};

// The prior config.prior names. The posterior is the VampPrior's: its mixture is the posterior's
// Gaussians at the pseudo-inputs.
std::unique_ptr<Prior> make_prior(const ModelConfig& config, const Posterior& posterior);

}  // namespace vae
