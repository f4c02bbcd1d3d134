// The latent block between encoder and decoder, in three parts (DESIGN.md):
//   Posterior  q(z|x): a diagonal Gaussian from the encoder head h = [mu | raw log-variance]
//              (kernels/gaussian_posterior.cuh); returns z and log q(z|x).
//   Prior      p(z): latent/prior.hpp (standard normal, mixture of Gaussians).
//   Objective  the loss from per-sample terms: the ELBO with a KL weight beta,
//              loss = mean_r (nll_r + beta * kl_r), kl_r = log q(z_r|x_r) - log p(z_r).
// For (Gaussian, N(0, I), ELBO) the block takes the fused fast path, latent_sample_kl: one kernel
// with the analytic KL in place of the Monte-Carlo term (lower variance; the default model's bits).
#pragma once

#include <memory>

#include "backend/backend.hpp"
#include "latent/prior.hpp"
#include "vae/config.hpp"

namespace vae {

class LatentBlock {
 public:
  explicit LatentBlock(const ModelConfig& config);
  int latent() const { return latent_; }
  int head_width() const { return 2 * latent_; }  // the encoder's output: [mu | raw log-variance]
  Prior& prior() { return *prior_; }
  const Prior& prior() const { return *prior_; }
  // The fused (Gaussian, N(0, I), ELBO) path. Tests may turn it off to check the general path
  // against it; the model never does.
  bool fused() const { return fused_; }
  void set_fused(bool on) { fused_ = on && prior_->is_standard_normal(); }
  // The KL per dimension exists when the prior factorises like the posterior (the fused path).
  bool reports_kl_per_dim() const { return fused_; }

  // Training and evaluation forward for h [rows, head_width()]: z [rows, L] and the KL term per row,
  // kl[r] (analytic when fused, log q - log p otherwise); kl_dim [L] (sum over rows) when fused and
  // non-null.
  void forward(Backend& be, const LatentArgs& a, const float* h, float* z, float* kl, float* kl_dim);
  // dh [rows, head_width()] from dz (the decoder's gradient at z; the prior's term is added to it in
  // place) with kl_weight = beta / batch (a.per_step's kl_grad_weight when set). Also writes the
  // prior's parameter gradients. Needs the forward call on the same h and z just before.
  void backward(Backend& be, const LatentArgs& a, const float* h, const float* z, float* dz, float kl_weight,
                float* dh);
  // k samples per row for the importance-weighted bound: z [rows*k, L] and
  // log p(z) - log q(z|x) [rows*k], sample j of row b from Philox (u/4, row0 + b, sample0 + j).
  void importance_sample(Backend& be, const float* h, int rows, int k, uint64_t seed, int64_t row0, int64_t sample0,
                         float* z, float* log_pz_minus_qz);

 private:
  int latent_;
  std::unique_ptr<Prior> prior_;
  bool fused_;
};

}  // namespace vae
