#include "latent/latent_block.hpp"

#include "gaussian_kl.cuh"
#include "gaussian_posterior.cuh"
#include "vae/error.hpp"
#include "philox.cuh"

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
    : latent_(config.latent), prior_(make_prior(config)), fused_(prior_->is_standard_normal()) {}

void LatentBlock::set_kl_by_dimension(bool on) {
  if (on && !prior_->is_standard_normal())
    throw Error("the KL per dimension needs the standard normal prior, not " + to_string(prior_->type()));
  by_dimension_ = on;
}

void LatentBlock::forward(Backend& be, const LatentArgs& a, const float* h, float* z, float* kl, float* kl_dim) {
  if (by_dimension_) {
    ops::gaussian_posterior_sample(be, h, a.rows, 1, latent_, noise_of(a), 1.0f, z, static_cast<float*>(nullptr));
    ops::gaussian_kl_forward(be, h, a.rows, latent_, kl, kl_dim);
    return;
  }
  if (fused_) {
    be.latent_sample_kl_forward(a, h, z, kl, kl_dim);
    return;
  }
  // kl = log q(z|x), then minus log p(z).
  ops::gaussian_posterior_sample(be, h, a.rows, 1, latent_, noise_of(a), 1.0f, z, kl);
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
    be.latent_sample_kl_backward(a, h, dz, kl_weight, dh);
    return;
  }
  prior_->backward(be, z, a.rows, ops::PriorGradWeights<float>::uniform(kl_weight, a.per_step), dz);
  ops::gaussian_posterior_backward(be, h, dz, a.rows, latent_, noise_of(a), kl_weight, dh);
}

void LatentBlock::sample_k(Backend& be, const LatentArgs& a, const float* h, int k, float* z, float* lpq) {
  ops::PosteriorNoise n = noise_of(a);
  n.step_scale = static_cast<uint64_t>(k);
  // -log q(z|x), then plus log p(z).
  ops::gaussian_posterior_sample(be, h, a.rows, k, latent_, n, -1.0f, z, lpq);
  prior_->add_log_prob(be, z, a.rows * k, 1.0f, lpq);
}

void LatentBlock::backward_k(Backend& be, const LatentArgs& a, const float* h, const float* z, int k, float* dz,
                             const ops::PriorGradWeights<float>& prior_weight, const ops::GradWeight<float>& log_q_weight,
                             bool dreg, float* dh) {
  ops::PosteriorNoise n = noise_of(a);
  n.step_scale = static_cast<uint64_t>(k);
  prior_->backward(be, z, a.rows * k, prior_weight, dz);
  ops::gaussian_posterior_backward(be, h, dz, a.rows, k, latent_, n, log_q_weight, dreg, dh);
}

void LatentBlock::importance_sample(Backend& be, const float* h, int rows, int k, uint64_t seed, int64_t row0,
                                    int64_t sample0, float* z, float* log_pz_minus_qz) {
  if (fused_) {
    be.latent_importance_sample(h, z, log_pz_minus_qz, rows, k, latent_, seed, row0, sample0);
    return;
  }
  ops::PosteriorNoise n;
  n.seed = seed;
  n.stream = kStreamImportance;
  n.step = static_cast<uint64_t>(sample0);
  n.row0 = row0;
  // -log q(z|x), then plus log p(z).
  ops::gaussian_posterior_sample(be, h, rows, k, latent_, n, -1.0f, z, log_pz_minus_qz);
  prior_->add_log_prob(be, z, rows * k, 1.0f, log_pz_minus_qz);
}

}  // namespace vae
