#include "latent/latent_block.hpp"

#include "gaussian_kl.cuh"
#include "gaussian_posterior.cuh"
#include "importance_sample.cuh"
#include "latent_sample_kl.cuh"
#include "philox.cuh"
#include "vae/error.hpp"

namespace vae {
namespace {

// The posterior's noise for a call with these arguments: k samples per row from `stream`, the
// counter word of sample j being step * step_scale + j.
ops::PosteriorNoise noise_of(const LatentArgs& a, uint64_t step_scale = 1, uint32_t stream = kStreamLatent) {
  ops::PosteriorNoise n;
  n.seed = a.seed;
  n.stream = stream;
  n.step = a.step;
  n.step_scale = step_scale;
  n.row0 = a.row0;
  n.eps_scale = a.eps_scale;
  n.per_step = a.per_step;
  return n;
}

}  // namespace

LatentBlock::LatentBlock(const ModelConfig& config)
    : latent_(config.latent),
      posterior_(config),
      prior_(make_prior(config, posterior_)),
      fused_(prior_->is_standard_normal() && !posterior_.has_flow()) {}

void LatentBlock::set_fused(bool on) { fused_ = on && prior_->is_standard_normal() && !has_posterior_flow(); }

void LatentBlock::set_kl_by_dimension(bool on) {
  if (on && (!prior_->is_standard_normal() || has_posterior_flow()))
    throw Error("the KL per dimension needs the standard normal prior and a posterior without flow steps");
  by_dimension_ = on;
}

int64_t LatentBlock::layout(int64_t offset) { return prior_->layout(posterior_.layout(offset)); }

void LatentBlock::bind(float* params, float* grads) {
  posterior_.bind(params, grads);
  prior_->bind(params, grads);
}

void LatentBlock::param_slices(std::vector<ParamSlice>& out) const {
  posterior_.param_slices(out);
  prior_->param_slices(out);
}

void LatentBlock::initialize(std::vector<float>& params, uint64_t seed, uint32_t& tensor_index) const {
  posterior_.initialize(params, seed, tensor_index);
  prior_->initialize(params, seed, tensor_index);
}

void LatentBlock::prepare(int rows, Device device) {
  prior_->prepare(rows, device);
  posterior_.prepare(rows, device);
}

void LatentBlock::initialize_from(Backend& be, const float* h, int rows, uint64_t seed, float* z) {
  LatentArgs a;
  a.rows = rows;
  a.latent = latent_;
  a.seed = seed;
  posterior_.initialize_from(be, h, rows, noise_of(a), z);
  prior_->initialize_from(be, z, rows);
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
  posterior_.sample(be, h, a.rows, 1, noise_of(a), 1.0f, z, kl);
  prior_->add_log_prob(be, z, a.rows, -1.0f, kl);
}

void LatentBlock::backward(Backend& be, const LatentArgs& a, const float* h, const float* z, float* dz,
                           const float* dim_weight, float* dh) {
  if (!a.per_step) throw Error("LatentBlock::backward: a training step's backward reads its weights from the step record "
                               "(a bug in vae: none was given)");
  if (by_dimension_) {
    if (!dim_weight) throw Error("LatentBlock: the per-dimension KL path needs its weights (a bug in vae)");
    // The sample's own path (no log q term: the KL is analytic), then the KL's per-dimension gradient.
    ops::gaussian_posterior_backward(be, h, dz, a.rows, 1, latent_, noise_of(a), ops::GradWeight<float>{}, false, dh);
    ops::gaussian_kl_backward(be, h, dim_weight, a.rows, latent_, dh);
    return;
  }
  if (fused_) {
    ops::latent_sample_kl_backward(be, a, h, dz, ops::GradWeight<float>{0.0f, a.per_step}, dh);
    return;
  }
  const ops::GradWeight<float> w{0.0f, a.per_step};
  backward_k(be, a, h, z, 1, dz, {w, w}, w, false, dh);
}

void LatentBlock::sample_k(Backend& be, const LatentArgs& a, const float* h, int k, float* z, float* lpq) {
  // -log q(z|x), then plus log p(z).
  posterior_.sample(be, h, a.rows, k, noise_of(a, static_cast<uint64_t>(k)), -1.0f, z, lpq);
  prior_->add_log_prob(be, z, a.rows * k, 1.0f, lpq);
}

void LatentBlock::backward_k(Backend& be, const LatentArgs& a, const float* h, const float* z, int k, float* dz,
                             const ops::PriorGradWeights<float>& prior_weight, const ops::GradWeight<float>& log_q_weight,
                             bool dreg, float* dh) {
  prior_->backward(be, z, a.rows * k, prior_weight, dz);
  posterior_.backward(be, h, dz, a.rows, k, noise_of(a, static_cast<uint64_t>(k)), log_q_weight, dreg, dh);
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
  posterior_.sample(be, h, rows, k, noise_of(a, 1, kStreamImportance), -1.0f, z, log_pz_minus_qz);
  prior_->add_log_prob(be, z, rows * k, 1.0f, log_pz_minus_qz);
}

}  // namespace vae
