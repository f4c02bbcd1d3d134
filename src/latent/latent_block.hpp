// The latent block between encoder and decoder: the posterior and the prior, and the latent term
// of the loss between them (DESIGN.md):
//   Posterior  q(z|x): latent/posterior.hpp, a diagonal Gaussian from the encoder head (the only
//              host code that knows its layout) with an optional flow; returns z and log q(z|x).
//   Prior      p(z): latent/prior.hpp (standard normal, mixture, VampPrior, flow).
//   The objective (model/objective.hpp) chooses which of this block's forms a step takes: the
//   ELBO's KL term kl_r = log q(z_r|x_r) - log p(z_r), or k samples per row with log p - log q
//   for the importance-weighted bounds, whose per-sample weights the backward here takes.
// For a Gaussian posterior with N(0, I) the block takes the fused fast path, latent_sample_kl: one
// kernel with the analytic KL in place of the Monte-Carlo term (lower variance; the default model's
// bits). Free bits over groups smaller than the latent need the KL per dimension with a weight per
// dimension: the analytic path (set_kl_by_dimension) computes it with ops of its own.
// A hierarchy (ModelConfig::levels) is this block's posterior and prior at its top level, with the
// levels below in a TopDown (latent/top_down.hpp): the encoder's output is [the top's head | each
// lower level's bottom-up head], z = [z_top | the lower levels], and the KL term sums every level's.
#pragma once

#include <memory>

#include "backend/backend.hpp"
#include "latent/flow.hpp"
#include "latent/posterior.hpp"
#include "latent/prior.hpp"
#include "latent/top_down.hpp"
#include "vae/config.hpp"

namespace vae {

class LatentBlock {
 public:
  explicit LatentBlock(const ModelConfig& config);
  // The prior may hold the posterior (the VampPrior's mixture is made of its Gaussians): fixed in place.
  LatentBlock(const LatentBlock&) = delete;
  LatentBlock& operator=(const LatentBlock&) = delete;
  int latent() const { return latent_; }  // z's width: every level's
  int head_width() const { return head_width_; }  // the encoder's output per row
  // The hierarchy below the top level, or null for one level.
  TopDown* top_down() { return top_down_.get(); }
  const TopDown* top_down() const { return top_down_.get(); }
  int top_latent() const { return posterior_.latent(); }
  Posterior& posterior() { return posterior_; }
  const Posterior& posterior() const { return posterior_; }
  Prior& prior() { return *prior_; }
  const Prior& prior() const { return *prior_; }
  bool has_posterior_flow() const { return posterior_.has_flow(); }

  // The flows' data-dependent initialisation (Glow's ActNorm) from the encoder's output h for one
  // batch: the posterior flow from samples z0, the flow prior from the samples z = f(z0).
  void initialize_from(Backend& be, const float* h, int rows, uint64_t seed, float* z);
  bool has_flows() const { return has_posterior_flow() || prior_->type() == PriorType::Flow; }
  // The block's parameters (the posterior flow's, then the prior's) and its workspace.
  int64_t layout(int64_t offset);
  void bind(float* params, float* grads);
  void param_slices(std::vector<ParamSlice>& out) const;
  void initialize(std::vector<float>& params, uint64_t seed, uint32_t& tensor_index) const;
  void prepare(int rows, Backend& be);
  uint64_t generation() const {
    return posterior_.generation() + prior_->generation() + generation_ + (top_down_ ? top_down_->generation() : 0);
  }
  // The fused (Gaussian, N(0, I), ELBO) path. Tests may turn it off to check the general path
  // against it; the model never does.
  bool fused() const { return fused_; }
  void set_fused(bool on);
  // The analytic KL per dimension with a weight per dimension in the backward (free bits by group);
  // needs the standard normal prior.
  void set_kl_by_dimension(bool on);
  bool kl_by_dimension() const { return by_dimension_; }
  // The KL per dimension exists when the prior factorises like the posterior (the fused path).
  bool reports_kl_per_dim() const { return fused_ || by_dimension_; }
  // The posterior's means and clamped log-variances of the last forward, [rows, latent()] each
  // (device memory): the head's for one level; every level's for a hierarchy, the lower levels'
  // at the z above them that forward drew (h: that forward's encoder output).
  void moments(Backend& be, const float* h, int rows, float* mu, float* log_var);
  // z [n, latent()] from the prior: the top's prior at temperature[0], then (a hierarchy) each
  // lower level's conditional prior at temperature[i] (the last entry for the levels past the list).
  void sample_prior(Backend& be, float* z, int n, const std::vector<float>& temperature, uint64_t seed);
  // A hierarchy's partial reconstruction codes: after forward on h at zero noise (the top's
  // posterior mean in hand), the top `keep` levels at their posterior means and the rest drawn from
  // their conditional priors at temperature: z [rows, latent()].
  void resample_below(Backend& be, const float* h, int rows, int keep, float temperature, uint64_t seed, float* z);

  // Training and evaluation forward for h [rows, head_width()]: z [rows, L] and the KL term per row,
  // kl[r] (analytic when fused, log q - log p otherwise); kl_dim [L] (sum over rows) when fused and
  // non-null.
  void forward(Backend& be, const LatentArgs& a, const float* h, float* z, float* kl, float* kl_dim);
  // dh [rows, head_width()] from dz (the decoder's gradient at z; the prior's term is added to it in
  // place) with the KL term's weight beta / batch from the step record a.per_step (kl_grad_weight),
  // or with dim_weight [L], one weight per dimension, on the analytic path. Also writes the prior's
  // parameter gradients. Needs the forward call on the same h and z just before.
  void backward(Backend& be, const LatentArgs& a, const float* h, const float* z, float* dz, const float* dim_weight,
                float* dh);
  // The importance-weighted bound's training forward: k samples per row, z [rows*k, L] and
  // lpq [rows*k] = log p(z) - log q(z|x); sample j of row r from Philox (u/4, row0 + r,
  // step * k + j, kStreamLatent), so k = 1 draws the ELBO's noise. A hierarchy: the top's samples so,
  // each level below drawn at each (TopDown::sample_k), lpq summing every level's log p - log q.
  void sample_k(Backend& be, const LatentArgs& a, const float* h, int k, float* z, float* lpq);
  // Its backward: dz [rows*k, L] (the decoder's, weighted per sample) gains the prior's term; dh
  // from dz and log q's per-sample weights, doubly reparameterised when dreg (one level only).
  void backward_k(Backend& be, const LatentArgs& a, const float* h, const float* z, int k, float* dz,
                  const ops::PriorGradWeights<float>& prior_weight, const ops::GradWeight<float>& log_q_weight, bool dreg,
                  float* dh);
  // k samples per row for the importance-weighted bound: z [rows*k, L] and
  // log p(z) - log q(z|x) [rows*k], sample j of row b from Philox (u/4, row0 + b, sample0 + j).
  void importance_sample(Backend& be, const float* h, int rows, int k, uint64_t seed, int64_t row0, int64_t sample0,
                         float* z, float* log_pz_minus_qz);

 private:
  // The top level's view of the encoder's output: one level reads h itself; a hierarchy copies the
  // top's columns into h_top_ (and its gradient out of dh_top_) around the top's ops.
  const float* top_head(Backend& be, const float* h, int rows);
  // A hierarchy's top-level copies hold n rows (the importance-weighted forms' rows * k).
  void check_samples(int n) const;

  int latent_, head_width_;
  Posterior posterior_;
  std::unique_ptr<Prior> prior_;
  bool fused_;
  bool by_dimension_ = false;
  std::unique_ptr<TopDown> top_down_;
  InitScheme init_;
  Tensor h_top_, dh_top_, z_top_, dz_top_;  // a hierarchy's top level: [rows, 2 L_top], [rows, L_top]
  int capacity_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace vae
