// Priors p(z): log-density with its backward, their own parameters in the model's flat buffers,
// and sampling. The standard normal has no parameters; the mixture of Gaussians learns its weights,
// means and variances through the Monte-Carlo KL term log q(z|x) - log p(z) of the loss.
// Built from PriorConfig by make_prior; the math of each is one file in kernels/.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "graph/layers.hpp"
#include "vae/config.hpp"
#include "vae/tensor.hpp"

namespace vae {

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
  // After add_log_prob on the same z: dz += weight * d(-log p(z))/dz, and this prior's parameter
  // gradients of weight * sum_r -log p(z_r) (overwritten). weight is per_step->kl_grad_weight when set.
  virtual void backward(Backend& be, const float* z, int rows, float weight, const StepScalars* per_step, float* dz) = 0;
  // z [n, latent] drawn from the prior with its spread scaled by temperature (Philox, seed).
  virtual void sample(Backend& be, float* z, int n, float temperature, uint64_t seed) = 0;

 private:
  int latent_;
};

std::unique_ptr<Prior> make_prior(const PriorConfig& config, int latent);

}  // namespace vae
