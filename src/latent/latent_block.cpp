#include "latent/latent_block.hpp"

#include "columns.cuh"
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

// The configuration of a hierarchy's top level: the model's, with the top's latent size.
ModelConfig top_level(const ModelConfig& c) {
  ModelConfig top = c;
  top.latent = c.top_latent();
  top.levels.clear();
  return top;
}

LatentArgs at_top(const LatentArgs& a, int top_latent) {
  LatentArgs t = a;
  t.latent = top_latent;
  return t;
}

}  // namespace

LatentBlock::LatentBlock(const ModelConfig& config)
    : latent_(config.latent),
      head_width_(2 * config.latent),
      posterior_(top_level(config)),
      prior_(make_prior(top_level(config), posterior_)),
      fused_(prior_->is_standard_normal() && !posterior_.has_flow()),
      top_down_(config.hierarchical() ? std::make_unique<TopDown>(config) : nullptr),
      init_(config.init) {
  if (top_down_ && top_down_->head_width() != head_width_)
    throw Error("LatentBlock: the hierarchy's heads do not fill the encoder's output (a bug in vae)");
  posterior_.set_encoder_stride(head_width_);
}

void LatentBlock::set_fused(bool on) { fused_ = on && prior_->is_standard_normal() && !has_posterior_flow(); }

void LatentBlock::set_kl_by_dimension(bool on) {
  if (on && (!prior_->is_standard_normal() || has_posterior_flow()))
    throw Error("the KL per dimension needs the standard normal prior and a posterior without flow steps");
  by_dimension_ = on;
}

int64_t LatentBlock::layout(int64_t offset) {
  offset = prior_->layout(posterior_.layout(offset));
  return top_down_ ? top_down_->layout(offset) : offset;
}

void LatentBlock::bind(float* params, float* grads) {
  posterior_.bind(params, grads);
  prior_->bind(params, grads);
  if (top_down_) top_down_->bind(params, grads);
}

void LatentBlock::param_slices(std::vector<ParamSlice>& out) const {
  posterior_.param_slices(out);
  prior_->param_slices(out);
  if (top_down_) top_down_->param_slices(out);
}

void LatentBlock::initialize(std::vector<float>& params, uint64_t seed, uint32_t& tensor_index) const {
  posterior_.initialize(params, seed, tensor_index);
  prior_->initialize(params, seed, tensor_index);
  if (top_down_) top_down_->initialize(params, init_, seed, tensor_index);
}

void LatentBlock::prepare(int rows, Backend& be) {
  const Device device = be.device();
  prior_->prepare(rows, device);
  posterior_.prepare(rows, device);
  if (!top_down_) return;
  top_down_->prepare(rows, be);
  if (rows <= capacity_) return;
  const int64_t top = top_latent();
  h_top_ = Tensor({rows, 2 * top}, device);
  dh_top_ = Tensor({rows, 2 * top}, device);
  z_top_ = Tensor({rows, top}, device);
  dz_top_ = Tensor({rows, top}, device);
  capacity_ = rows;
  ++generation_;
}

void LatentBlock::resample_below(Backend& be, const float* h, int rows, int keep, float temperature, uint64_t seed,
                                 float* z) {
  if (!top_down_) throw Error("keeping levels needs a hierarchical model (posterior.levels)");
  if (keep < 1 || keep > top_down_->levels())
    throw Error("keep-levels must be in [1, " + std::to_string(top_down_->levels()) + "], got " + std::to_string(keep));
  top_down_->sample(be, h, rows, keep, z_top_.data(), {temperature}, seed, 0, z);
}

void LatentBlock::check_samples(int n) const {
  if (top_down_ && n > capacity_)
    throw Error("LatentBlock: " + std::to_string(n) + " samples but prepared for " + std::to_string(capacity_));
}

const float* LatentBlock::top_head(Backend& be, const float* h, int rows) {
  if (!top_down_) return h;
  if (rows > capacity_) throw Error("LatentBlock: " + std::to_string(rows) + " rows but prepared for " + std::to_string(capacity_));
  ops::copy_columns(be, ops::Columns<const float>{h, head_width_}, ops::Columns<float>{h_top_.data(), 2 * int64_t(top_latent())},
                    rows, 2 * int64_t(top_latent()));
  return h_top_.data();
}

void LatentBlock::moments(Backend& be, const float* h, int rows, float* mu, float* log_var) {
  if (!top_down_) {
    posterior_.moments(be, h, rows, mu, log_var);
    return;
  }
  const int64_t top = top_latent();
  float* m = dh_top_.data();  // scratch: the top's mu, then its log-variance
  posterior_.moments(be, top_head(be, h, rows), rows, m, m + rows * top);
  ops::copy_columns(be, ops::Columns<const float>{m, top}, ops::Columns<float>{mu, latent_}, rows, top);
  ops::copy_columns(be, ops::Columns<const float>{m + rows * top, top}, ops::Columns<float>{log_var, latent_}, rows, top);
  top_down_->moments(be, rows, mu, log_var);
}

void LatentBlock::sample_prior(Backend& be, float* z, int n, const std::vector<float>& temperature, uint64_t seed) {
  if (temperature.empty()) throw Error("sample_prior: no temperature (a bug in vae)");
  if (!top_down_) {
    prior_->sample(be, z, n, temperature[0], seed);
    return;
  }
  // The top for all n at once (its noise is counted by sample), then the levels below in chunks
  // whose noise is counted from their first sample: the same draws for any chunk size.
  const int top = top_latent();
  Tensor zt({n, top}, be.device());
  prior_->sample(be, zt.data(), n, temperature[0], seed);
  constexpr int kChunk = 4096;
  prepare(std::min(n, kChunk), be);
  for (int first = 0; first < n; first += kChunk) {
    const int c = std::min(kChunk, n - first);
    top_down_->sample(be, nullptr, c, 1, zt.data() + int64_t(first) * top, temperature, seed, first,
                      z + int64_t(first) * latent_);
  }
}

void LatentBlock::initialize_from(Backend& be, const float* h, int rows, uint64_t seed, float* z) {
  // A hierarchy's flows are its top level's (a flow prior): initialised from the top's samples.
  LatentArgs a;
  a.rows = rows;
  a.latent = top_latent();
  a.seed = seed;
  float* zt = top_down_ ? z_top_.data() : z;
  posterior_.initialize_from(be, top_head(be, h, rows), rows, noise_of(a), zt);
  prior_->initialize_from(be, zt, rows);
}

void LatentBlock::forward(Backend& be, const LatentArgs& args, const float* h_in, float* z_out, float* kl,
                          float* kl_dim) {
  // A hierarchy: the top level on its own columns and samples, then the levels below.
  const LatentArgs a = at_top(args, top_latent());
  const float* h = top_head(be, h_in, a.rows);
  float* z = top_down_ ? z_top_.data() : z_out;
  const int L = top_latent();
  if (by_dimension_) {
    ops::gaussian_posterior_sample(be, h, a.rows, 1, L, noise_of(a), 1.0f, z, static_cast<float*>(nullptr));
    ops::gaussian_kl_forward(be, h, a.rows, L, kl, kl_dim);
  } else if (fused_) {
    ops::latent_sample_kl_forward(be, a, h, z, kl, kl_dim);
  } else {
    // kl = log q(z|x), then minus log p(z).
    posterior_.sample(be, h, a.rows, 1, noise_of(a), 1.0f, z, kl);
    prior_->add_log_prob(be, z, a.rows, -1.0f, kl);
  }
  if (top_down_) top_down_->forward(be, args, h_in, z, z_out, kl, kl_dim ? kl_dim + L : nullptr);
}

void LatentBlock::backward(Backend& be, const LatentArgs& args, const float* h_in, const float* z_in, float* dz_in,
                           const float* dim_weight, float* dh_out) {
  if (!args.per_step) throw Error("LatentBlock::backward: a training step's backward reads its weights from the step record "
                                  "(a bug in vae: none was given)");
  const LatentArgs a = at_top(args, top_latent());
  const int L = top_latent();
  // A hierarchy: the levels below first (they send their gradient up into the top's z), then the
  // top on its own columns; its head's gradient goes into dh's first 2 L_top columns.
  const float* h = h_in;
  const float* z = z_in;
  float* dz = dz_in;
  float* dh = dh_out;
  if (top_down_) {
    if (by_dimension_ && !dim_weight) throw Error("LatentBlock: the per-dimension KL path needs its weights (a bug in vae)");
    top_down_->backward(be, args, z_top_.data(), dz_in, by_dimension_ ? dim_weight + L : nullptr, dz_top_.data(), dh_out);
    h = h_top_.data();
    z = z_top_.data();
    dz = dz_top_.data();
    dh = dh_top_.data();
  }
  if (by_dimension_) {
    if (!dim_weight) throw Error("LatentBlock: the per-dimension KL path needs its weights (a bug in vae)");
    // The sample's own path (no log q term: the KL is analytic), then the KL's per-dimension gradient.
    ops::gaussian_posterior_backward(be, h, dz, a.rows, 1, L, noise_of(a), ops::GradWeight<float>{}, false, dh);
    ops::gaussian_kl_backward(be, h, dim_weight, a.rows, L, dh);
  } else if (fused_) {
    ops::latent_sample_kl_backward(be, a, h, dz, ops::GradWeight<float>{0.0f, a.per_step}, dh);
  } else {
    const ops::GradWeight<float> w{0.0f, a.per_step};
    prior_->backward(be, z, a.rows, {w, w}, dz);
    posterior_.backward(be, h, dz, a.rows, 1, noise_of(a), w, false, dh);
  }
  if (top_down_)
    ops::copy_columns(be, ops::Columns<const float>{dh_top_.data(), 2 * int64_t(L)}, ops::Columns<float>{dh_out, head_width_},
                      a.rows, 2 * int64_t(L));
}

void LatentBlock::sample_k(Backend& be, const LatentArgs& args, const float* h_in, int k, float* z_out, float* lpq) {
  // A hierarchy: the top's k samples on its own columns, then the levels below, each sample its own
  // top-down pass.
  const LatentArgs a = at_top(args, top_latent());
  check_samples(a.rows * k);
  const float* h = top_head(be, h_in, a.rows);
  float* z = top_down_ ? z_top_.data() : z_out;
  // -log q(z|x), then plus log p(z).
  posterior_.sample(be, h, a.rows, k, noise_of(a, static_cast<uint64_t>(k)), -1.0f, z, lpq);
  prior_->add_log_prob(be, z, a.rows * k, 1.0f, lpq);
  if (top_down_) top_down_->sample_k(be, args, h_in, k, z, z_out, lpq);
}

void LatentBlock::backward_k(Backend& be, const LatentArgs& args, const float* h_in, const float* z_in, int k,
                             float* dz_in, const ops::PriorGradWeights<float>& prior_weight,
                             const ops::GradWeight<float>& log_q_weight, bool dreg, float* dh_out) {
  const LatentArgs a = at_top(args, top_latent());
  if (!top_down_) {
    prior_->backward(be, z_in, a.rows * k, prior_weight, dz_in);
    posterior_.backward(be, h_in, dz_in, a.rows, k, noise_of(a, static_cast<uint64_t>(k)), log_q_weight, dreg, dh_out);
    return;
  }
  // The levels below first (they send their gradient up into the top's z), then the top on its own
  // columns. One weight per sample for each lower level's log p, its point's and its parameters'
  // alike: IWAE's (the two differ only for DReG, which ObjectiveConfig::check_model keeps to one level).
  if (dreg)
    throw Error("LatentBlock: a hierarchy trains with the iwae bound, not iwae_dreg (a bug in vae: check_model refuses it)");
  top_down_->backward_k(be, args, z_top_.data(), k, dz_in, prior_weight.params, log_q_weight, dz_top_.data(), dh_out);
  prior_->backward(be, z_top_.data(), a.rows * k, prior_weight, dz_top_.data());
  posterior_.backward(be, h_top_.data(), dz_top_.data(), a.rows, k, noise_of(a, static_cast<uint64_t>(k)), log_q_weight,
                      false, dh_top_.data());
  const int64_t top = 2 * int64_t(top_latent());
  ops::copy_columns(be, ops::Columns<const float>{dh_top_.data(), top}, ops::Columns<float>{dh_out, head_width_}, a.rows, top);
}

void LatentBlock::importance_sample(Backend& be, const float* h_in, int rows, int k, uint64_t seed, int64_t row0,
                                    int64_t sample0, float* z_out, float* log_pz_minus_qz) {
  const float* h = top_head(be, h_in, rows);
  float* z = top_down_ ? z_top_.data() : z_out;
  check_samples(rows * k);
  if (fused_) {
    ops::latent_importance_sample(be, h, z, log_pz_minus_qz, rows, k, top_latent(), seed, row0, sample0);
  } else {
    LatentArgs a;
    a.rows = rows;
    a.latent = top_latent();
    a.seed = seed;
    a.step = static_cast<uint64_t>(sample0);
    a.row0 = row0;
    // -log q(z|x), then plus log p(z).
    posterior_.sample(be, h, rows, k, noise_of(a, 1, kStreamImportance), -1.0f, z, log_pz_minus_qz);
    prior_->add_log_prob(be, z, rows * k, 1.0f, log_pz_minus_qz);
  }
  if (top_down_) top_down_->importance_sample(be, h_in, rows, k, z, seed, row0, sample0, z_out, log_pz_minus_qz);
}

}  // namespace vae
