#include "latent/latent_block.hpp"

#include "elementwise.cuh"
#include "gaussian_kl.cuh"
#include "gaussian_posterior.cuh"
#include "importance_sample.cuh"
#include "latent_sample_kl.cuh"
#include "philox.cuh"
#include "rows.cuh"
#include "vae/error.hpp"

namespace vae {
namespace {

ops::PosteriorNoise noise_of(const LatentArgs& a) {
  ops::PosteriorNoise n;
  n.seed = a.seed;
  n.stream = kStreamLatent;
  n.step = a.step;
  n.row0 = a.row0;
  n.eps_scale = a.eps_scale;
  n.per_step = a.per_step;
  return n;
}

}  // namespace

LatentBlock::LatentBlock(const ModelConfig& config)
    : latent_(config.latent),
      prior_(make_prior(config)),
      flow_("posterior.flow", config.latent, config.posterior_flow_steps, config.posterior_flow_hidden),
      fused_(prior_->is_standard_normal() && config.posterior_flow_steps == 0) {}

void LatentBlock::set_fused(bool on) { fused_ = on && prior_->is_standard_normal() && !has_posterior_flow(); }

void LatentBlock::set_kl_by_dimension(bool on) {
  if (on && (!prior_->is_standard_normal() || has_posterior_flow()))
    throw Error("the KL per dimension needs the standard normal prior and a posterior without flow steps");
  by_dimension_ = on;
}

int64_t LatentBlock::layout(int64_t offset) { return prior_->layout(flow_.layout(offset)); }

void LatentBlock::bind(float* params, float* grads) {
  flow_.bind(params, grads);
  prior_->bind(params, grads);
}

void LatentBlock::param_slices(std::vector<ParamSlice>& out) const {
  flow_.param_slices(out);
  prior_->param_slices(out);
}

void LatentBlock::initialize(std::vector<float>& params, uint64_t seed, uint32_t& tensor_index) const {
  flow_.initialize(params, seed, tensor_index);
  prior_->initialize(params, seed, tensor_index);
}

void LatentBlock::prepare(int rows, Device device) {
  prior_->prepare(rows, device);
  if (!has_posterior_flow()) return;
  flow_.prepare(rows, device);
  if (rows <= capacity_) return;
  z0_ = Tensor({rows, latent_}, device);
  logdet_ = Tensor({rows}, device);
  capacity_ = rows;
  ++generation_;
}

void LatentBlock::initialize_from(Backend& be, const float* h, int rows, uint64_t seed, float* z) {
  LatentArgs a;
  a.rows = rows;
  a.latent = latent_;
  a.seed = seed;
  if (has_posterior_flow()) {
    ops::gaussian_posterior_sample(be, h, rows, 1, latent_, noise_of(a), 1.0f, z0_.data(), static_cast<float*>(nullptr));
    flow_.initialize_from(be, z0_.data(), rows);
    ops::fill(be, logdet_.data(), rows, 0.0f);
    ops::copy_values(be, flow_.forward(be, z0_.data(), rows, logdet_.data()), int64_t(rows) * latent_, z);
  } else {
    ops::gaussian_posterior_sample(be, h, rows, 1, latent_, noise_of(a), 1.0f, z, static_cast<float*>(nullptr));
  }
  prior_->initialize_from(be, z, rows);
}

void LatentBlock::sample_through_flow(Backend& be, const LatentArgs& a, int k, uint64_t step_scale, uint32_t stream,
                                      float log_q_sign, const float* h, float* z, float* out) {
  ops::PosteriorNoise n = noise_of(a);
  n.stream = stream;
  n.step_scale = step_scale;
  const int64_t rows = int64_t(a.rows) * k;
  if (!has_posterior_flow()) {
    ops::gaussian_posterior_sample(be, h, a.rows, k, latent_, n, log_q_sign, z, out);
    return;
  }
  if (rows > capacity_) throw Error("LatentBlock: " + std::to_string(rows) + " rows but prepared for " +
                                    std::to_string(capacity_) + " (a bug in vae: prepare must run first)");
  // log q(z|x) = log q0(z0|x) - log |det df/dz0|.
  ops::gaussian_posterior_sample(be, h, a.rows, k, latent_, n, log_q_sign, z0_.data(), out);
  ops::fill(be, logdet_.data(), rows, 0.0f);
  const float* zf = flow_.forward(be, z0_.data(), static_cast<int>(rows), logdet_.data());
  ops::copy_values(be, zf, rows * latent_, z);
  ops::add_scaled(be, static_cast<const float*>(logdet_.data()), rows, -log_q_sign, out);
}

void LatentBlock::forward(Backend& be, const LatentArgs& a, const float* h, float* z, float* kl, float* kl_dim) {
  if (by_dimension_) {
    ops::gaussian_posterior_sample(be, h, a.rows, 1, latent_, noise_of(a), 1.0f, z, static_cast<float*>(nullptr));
    ops::gaussian_kl_forward(be, h, a.rows, latent_, kl, kl_dim);
    return;
  }
  if (fused_) {
    ops::latent_sample_kl_forward(be, a, h, z, kl, kl_dim);
    return;
  }
  // kl = log q(z|x), then minus log p(z).
  sample_through_flow(be, a, 1, 1, kStreamLatent, 1.0f, h, z, kl);
  prior_->add_log_prob(be, z, a.rows, -1.0f, kl);
}

void LatentBlock::backward(Backend& be, const LatentArgs& a, const float* h, const float* z, float* dz, float kl_weight,
                           const float* dim_weight, float* dh) {
  if (by_dimension_) {
    if (!dim_weight) throw Error("LatentBlock: the per-dimension KL path needs its weights (a bug in vae)");
    // The sample's own path (no log q term: the KL is analytic), then the KL's per-dimension gradient.
    ops::gaussian_posterior_backward(be, h, dz, a.rows, 1, latent_, noise_of(a), ops::GradWeight<float>{}, false, dh);
    ops::gaussian_kl_backward(be, h, dim_weight, a.rows, latent_, dh);
    return;
  }
  if (fused_) {
    ops::latent_sample_kl_backward(be, a, h, dz, kl_weight, dh);
    return;
  }
  const ops::GradWeight<float> w{kl_weight, a.per_step};
  backward_k(be, a, h, z, 1, dz, {w, w}, w, false, dh);
}

void LatentBlock::sample_k(Backend& be, const LatentArgs& a, const float* h, int k, float* z, float* lpq) {
  // -log q(z|x), then plus log p(z).
  sample_through_flow(be, a, k, static_cast<uint64_t>(k), kStreamLatent, -1.0f, h, z, lpq);
  prior_->add_log_prob(be, z, a.rows * k, 1.0f, lpq);
}

void LatentBlock::backward_k(Backend& be, const LatentArgs& a, const float* h, const float* z, int k, float* dz,
                             const ops::PriorGradWeights<float>& prior_weight, const ops::GradWeight<float>& log_q_weight,
                             bool dreg, float* dh) {
  ops::PosteriorNoise n = noise_of(a);
  n.step_scale = static_cast<uint64_t>(k);
  const int rows = a.rows * k;
  prior_->backward(be, z, rows, prior_weight, dz);
  const float* dz0 = dz;
  if (has_posterior_flow()) {
    if (dreg) throw Error("the doubly-reparameterised gradient needs a posterior without flow steps (a bug in vae: "
                          "the configuration check should have refused it)");
    // The loss holds w log q = w (log q0 - logdet): the log-determinant's weight is -w.
    dz0 = flow_.backward(be, dz, rows, log_q_weight.negated(), true);
  }
  ops::gaussian_posterior_backward(be, h, dz0, a.rows, k, latent_, n, log_q_weight, dreg, dh);
}

void LatentBlock::importance_sample(Backend& be, const float* h, int rows, int k, uint64_t seed, int64_t row0,
                                    int64_t sample0, float* z, float* log_pz_minus_qz) {
  if (fused_) {
    ops::latent_importance_sample(be, h, z, log_pz_minus_qz, rows, k, latent_, seed, row0, sample0);
    return;
  }
  LatentArgs a;
  a.rows = rows;
  a.latent = latent_;
  a.seed = seed;
  a.step = static_cast<uint64_t>(sample0);
  a.row0 = row0;
  // -log q(z|x), then plus log p(z).
  sample_through_flow(be, a, k, 1, kStreamImportance, -1.0f, h, z, log_pz_minus_qz);
  prior_->add_log_prob(be, z, rows * k, 1.0f, log_pz_minus_qz);
}

}  // namespace vae
