#include "latent/top_down.hpp"

#include <string>

#include "columns.cuh"
#include "elementwise.cuh"
#include "gaussian_pair_kl.cuh"
#include "gaussian_posterior.cuh"
#include "philox.cuh"
#include "rows.cuh"
#include "vae/error.hpp"

namespace vae {
namespace {

using ops::Columns;

Columns<const float> in(const float* p, int64_t stride) { return {p, stride}; }
Columns<float> out(float* p, int64_t stride) { return {p, stride}; }

ops::PosteriorNoise level_noise(uint64_t seed, uint32_t stream, uint64_t step, int64_t row0, float eps_scale,
                                const StepScalars* per_step) {
  ops::PosteriorNoise n;
  n.seed = seed;
  n.stream = stream;
  n.step = step;
  n.row0 = row0;
  n.eps_scale = eps_scale;
  n.per_step = per_step;
  return n;
}

// A training step's noise for level i, k samples per row (each sample its own row of the level's
// heads): sample j of row b at Philox row (row0 + b) k + j, so k = 1 is the ELBO's.
ops::PosteriorNoise training_noise(const LatentArgs& a, int level, int k = 1) {
  return level_noise(a.seed, kStreamLatentLevel0 + static_cast<uint32_t>(level), a.step, a.row0 * k, a.eps_scale,
                     a.per_step);
}

}  // namespace

TopDown::TopDown(const ModelConfig& c) : sizes_(c.levels), residual_(c.residual_posterior) {
  if (c.logvar_clamp != LogvarClampKind::None)
    clamp_ = ops::LogvarBounds<float>{c.logvar_min, c.logvar_max, c.logvar_clamp == LogvarClampKind::Soft};
  if (sizes_.size() < 2) throw Error("TopDown: a hierarchy has at least two levels (a bug in vae)");
  if (static_cast<int>(sizes_.size()) > kMaxLevels)
    throw Error("posterior.levels lists at most " + std::to_string(kMaxLevels) + " levels");
  const int hidden = c.top_down_width();
  const bool gated = c.encoder.activation == Activation::Gated;
  head_width_ = 2 * sizes_[0];
  levels_.resize(sizes_.size());
  for (size_t i = 0; i < sizes_.size(); ++i) {
    z_offset_.push_back(total_);
    total_ += sizes_[i];
    if (i == 0) continue;
    Level& l = levels_[i];
    l.size = sizes_[i];
    l.parent = sizes_[i - 1];
    l.head_column = head_width_;
    head_width_ += 2 * l.size;
    l.net = std::make_unique<Sequential>("top_down." + std::to_string(i));
    l.net->add(std::make_unique<Linear>(l.parent, hidden * (gated ? 2 : 1)));
    if (gated) l.net->add(std::make_unique<Gate>(Shape{2 * int64_t(hidden)}));
    else l.net->add(std::make_unique<ActivationLayer>(c.encoder.activation, c.encoder.leaky_slope, Shape{hidden}));
    l.net->add(std::make_unique<Linear>(hidden, 4 * l.size));
  }
}

int64_t TopDown::layout(int64_t offset) {
  for (size_t i = 1; i < levels_.size(); ++i) offset = levels_[i].net->layout(offset);
  return offset;
}

void TopDown::bind(float* params, float* grads) {
  for (size_t i = 1; i < levels_.size(); ++i) levels_[i].net->bind(params, grads);
}

void TopDown::param_slices(std::vector<ParamSlice>& out_slices) const {
  for (size_t i = 1; i < levels_.size(); ++i)
    levels_[i].net->param_slices("top_down." + std::to_string(i) + ".", out_slices);
}

void TopDown::initialize(std::vector<float>& params, InitScheme scheme, uint64_t seed, uint32_t& tensor_index) const {
  for (size_t i = 1; i < levels_.size(); ++i) levels_[i].net->initialize(params, scheme, seed, tensor_index);
}

void TopDown::prepare(int rows, Backend& be) {
  for (size_t i = 1; i < levels_.size(); ++i) levels_[i].net->prepare(rows, be);
  if (rows <= capacity_) return;
  const Device d = be.device();
  for (size_t i = 1; i < levels_.size(); ++i) {
    Level& l = levels_[i];
    const int64_t L = l.size;
    for (Tensor* t : {&l.q, &l.p, &l.dq, &l.dp, &l.b_rep}) *t = Tensor({rows, 2 * L}, d);
    l.z = Tensor({rows, L}, d);
    l.dz = Tensor({rows, L}, d);
    l.dnet = Tensor({rows, 4 * L}, d);
    l.dparent = Tensor({rows, int64_t(l.parent)}, d);
    l.kl = Tensor({rows}, d);
    if (clamp_) {
      l.q_raw = Tensor({rows, 2 * L}, d);
      l.p_raw = Tensor({rows, 2 * L}, d);
    }
  }
  capacity_ = rows;
  ++generation_;
}

uint64_t TopDown::generation() const {
  uint64_t g = generation_;
  for (size_t i = 1; i < levels_.size(); ++i) g += levels_[i].net->generation();
  return g;
}

const float* TopDown::parent_z(int i, const float* z_top) const {
  return i == 1 ? z_top : levels_[static_cast<size_t>(i - 1)].z.data();
}

void TopDown::check_rows(int rows) const {
  if (rows > capacity_) throw Error("TopDown: " + std::to_string(rows) + " rows but prepared for " + std::to_string(capacity_));
}

const float* TopDown::top_down_pass(Backend& be, int i, const float* z_top, int rows) {
  Level& l = levels_[static_cast<size_t>(i)];
  const int64_t w = 2 * int64_t(l.size);
  const float* o = l.net->forward(be, parent_z(i, z_top), rows);
  ops::copy_columns(be, in(o, 2 * w), out((clamp_ ? l.p_raw : l.p).data(), w), rows, w);
  if (clamp_) ops::logvar_clamp_forward(be, static_cast<const float*>(l.p_raw.data()), l.p.data(), rows, l.size, *clamp_);
  return o;
}

void TopDown::place(Backend& be, int i, int rows, float* z) const {
  const Level& l = levels_[static_cast<size_t>(i)];
  ops::copy_columns(be, in(l.z.data(), l.size), out(z + z_offset_[i], total_), rows, l.size);
}

void TopDown::posterior_head(Backend& be, Level& l, const float* b, int64_t b_stride, const float* o, int rows) const {
  const int64_t w = 2 * int64_t(l.size);
  ops::sum_columns(be, in(b, b_stride), in(o + w, 2 * w), residual_ ? in(l.p.data(), w) : in(nullptr, 0),
                   out((clamp_ ? l.q_raw : l.q).data(), w), rows, w);
  if (clamp_) ops::logvar_clamp_forward(be, static_cast<const float*>(l.q_raw.data()), l.q.data(), rows, l.size, *clamp_);
}

void TopDown::posterior_head_k(Backend& be, Level& l, const float* h, int rows, int k, const float* o) const {
  const int64_t w = 2 * int64_t(l.size);
  // The row's bottom-up head, once per sample (l.dq is free until the backward).
  ops::copy_columns(be, in(h + l.head_column, head_width_), out(l.dq.data(), w), rows, w);
  ops::repeat_rows(be, static_cast<const float*>(l.dq.data()), rows, w, k, l.b_rep.data());
  posterior_head(be, l, l.b_rep.data(), w, o, rows * k);
}

void TopDown::head_gradients_to_network(Backend& be, Level& l, int rows) const {
  const int64_t w = 2 * int64_t(l.size);
  // Through the clamps (in place): q's, then p's, which the residual posterior's q reads too.
  if (clamp_)
    ops::logvar_clamp_backward(be, static_cast<const float*>(l.q_raw.data()), static_cast<const float*>(l.dq.data()),
                               l.dq.data(), rows, l.size, *clamp_);
  if (residual_) ops::add_columns(be, in(l.dq.data(), w), out(l.dp.data(), w), rows, w);
  if (clamp_)
    ops::logvar_clamp_backward(be, static_cast<const float*>(l.p_raw.data()), static_cast<const float*>(l.dp.data()),
                               l.dp.data(), rows, l.size, *clamp_);
  ops::copy_columns(be, in(l.dp.data(), w), out(l.dnet.data(), 2 * w), rows, w);
  ops::copy_columns(be, in(l.dq.data(), w), out(l.dnet.data() + w, 2 * w), rows, w);
}

void TopDown::split_dz(Backend& be, const float* dz, int rows, float* dz_top) {
  ops::copy_columns(be, in(dz, total_), out(dz_top, sizes_[0]), rows, sizes_[0]);
  for (int i = 1; i < levels(); ++i) {
    Level& l = levels_[static_cast<size_t>(i)];
    ops::copy_columns(be, in(dz + z_offset_[i], total_), out(l.dz.data(), l.size), rows, l.size);
  }
}

void TopDown::network_backward(Backend& be, int i, const float* z_top, int rows, int k, float* dz_top, float* dh) {
  Level& l = levels_[static_cast<size_t>(i)];
  const int64_t w = 2 * int64_t(l.size);
  const int n = rows * k;
  head_gradients_to_network(be, l, n);
  // The bottom-up head's gradient: the sum over each row's k samples (rows j, j + k, ...).
  for (int j = 0; j < k; ++j) {
    const ops::Columns<const float> sample_j = in(l.dq.data() + int64_t(j) * w, int64_t(k) * w);
    if (j == 0) ops::copy_columns(be, sample_j, out(dh + l.head_column, head_width_), rows, w);
    else ops::add_columns(be, sample_j, out(dh + l.head_column, head_width_), rows, w);
  }
  l.net->backward(be, parent_z(i, z_top), l.dnet.data(), l.dparent.data(), n);
  float* up = i == 1 ? dz_top : levels_[static_cast<size_t>(i - 1)].dz.data();
  ops::add_columns(be, in(l.dparent.data(), l.parent), out(up, l.parent), n, l.parent);
}

void TopDown::forward(Backend& be, const LatentArgs& a, const float* h, const float* z_top, float* z, float* kl,
                      float* kl_dim) {
  const int rows = a.rows;
  check_rows(rows);
  ops::copy_columns(be, in(z_top, sizes_[0]), out(z, total_), rows, sizes_[0]);
  for (int i = 1; i < levels(); ++i) {
    Level& l = levels_[static_cast<size_t>(i)];
    const float* o = top_down_pass(be, i, z_top, rows);
    posterior_head(be, l, h + l.head_column, head_width_, o, rows);
    const ops::PosteriorNoise n = training_noise(a, i);
    ops::gaussian_posterior_sample(be, static_cast<const float*>(l.q.data()), rows, 1, l.size, n, 1.0f, l.z.data(),
                                   static_cast<float*>(nullptr));
    ops::gaussian_pair_kl_forward(be, static_cast<const float*>(l.q.data()), static_cast<const float*>(l.p.data()), rows,
                                  l.size, l.kl.data(), kl_dim ? kl_dim + (z_offset_[i] - sizes_[0]) : nullptr);
    ops::add_columns(be, in(l.kl.data(), 1), out(kl, 1), rows, 1);
    place(be, i, rows, z);
  }
}

void TopDown::backward(Backend& be, const LatentArgs& a, const float* z_top, const float* dz, const float* dim_weight,
                       float* dz_top, float* dh) {
  const int rows = a.rows;
  split_dz(be, dz, rows, dz_top);
  for (int i = levels() - 1; i >= 1; --i) {
    Level& l = levels_[static_cast<size_t>(i)];
    const int64_t w = 2 * int64_t(l.size);
    const ops::PosteriorNoise n = training_noise(a, i);
    // The sample's path (the KL is analytic: no log q term), then the KL into both heads.
    ops::gaussian_posterior_backward(be, static_cast<const float*>(l.q.data()), static_cast<const float*>(l.dz.data()),
                                     rows, 1, l.size, n, ops::GradWeight<float>{}, false, l.dq.data());
    ops::fill(be, l.dp.data(), rows * w, 0.0f);
    // Free bits by group: the weight is the dimension's (beta / rows or 0, elbo_objective.cuh) alone.
    const ops::GradWeight<float> kl_weight = dim_weight ? ops::GradWeight<float>{1.0f} : ops::GradWeight<float>{0.0f, a.per_step};
    ops::gaussian_pair_kl_backward(be, static_cast<const float*>(l.q.data()), static_cast<const float*>(l.p.data()), rows,
                                   l.size, kl_weight, dim_weight ? dim_weight + (z_offset_[i] - sizes_[0]) : nullptr,
                                   l.dq.data(), l.dp.data());
    network_backward(be, i, z_top, rows, 1, dz_top, dh);
  }
}

void TopDown::sample_k(Backend& be, const LatentArgs& a, const float* h, int k, const float* z_top, float* z,
                       float* lpq) {
  levels_k(be, h, a.rows, k, z_top, training_noise(a, 0, k), z, lpq);
}

void TopDown::backward_k(Backend& be, const LatentArgs& a, const float* z_top, int k, const float* dz,
                         const ops::GradWeight<float>& prior, const ops::GradWeight<float>& log_q, float* dz_top,
                         float* dh) {
  const int n = a.rows * k;
  split_dz(be, dz, n, dz_top);
  for (int i = levels() - 1; i >= 1; --i) {
    Level& l = levels_[static_cast<size_t>(i)];
    const int64_t w = 2 * int64_t(l.size);
    // -log p(z_i | z_{i-1}): into the prior's head and the sample; then log q's total derivative and
    // the sample's path into the posterior's head.
    ops::fill(be, l.dp.data(), n * w, 0.0f);
    ops::gaussian_log_density_backward(be, static_cast<const float*>(l.p.data()), static_cast<const float*>(l.z.data()),
                                       n, 1, l.size, prior.negated(), l.dp.data(), l.dz.data());
    const ops::PosteriorNoise noise = training_noise(a, i, k);
    ops::gaussian_posterior_backward(be, static_cast<const float*>(l.q.data()), static_cast<const float*>(l.dz.data()), n,
                                     1, l.size, noise, log_q, false, l.dq.data());
    network_backward(be, i, z_top, a.rows, k, dz_top, dh);
  }
}

void TopDown::moments(Backend& be, int rows, float* mu, float* log_var) {
  for (int i = 1; i < levels(); ++i) {
    Level& l = levels_[static_cast<size_t>(i)];
    const int64_t L = l.size;
    float* m = l.dq.data();  // scratch: mu then the log-variance, [rows, L] each
    ops::gaussian_posterior_moments(be, static_cast<const float*>(l.q.data()), rows, l.size, m, m + rows * L);
    ops::copy_columns(be, in(m, L), out(mu + z_offset_[i], total_), rows, L);
    ops::copy_columns(be, in(m + rows * L, L), out(log_var + z_offset_[i], total_), rows, L);
  }
}

void TopDown::importance_sample(Backend& be, const float* h, int rows, int k, const float* z_top, uint64_t seed,
                                int64_t row0, int64_t sample0, float* z, float* lpq) {
  levels_k(be, h, rows, k, z_top,
           level_noise(seed, kStreamImportanceLevel0, static_cast<uint64_t>(sample0), row0 * k, 1.0f, nullptr), z, lpq);
}

void TopDown::levels_k(Backend& be, const float* h, int rows, int k, const float* z_top, const ops::PosteriorNoise& base,
                       float* z, float* lpq) {
  const int n = rows * k;
  check_rows(n);
  ops::copy_columns(be, in(z_top, sizes_[0]), out(z, total_), n, sizes_[0]);
  for (int i = 1; i < levels(); ++i) {
    Level& l = levels_[static_cast<size_t>(i)];
    const float* o = top_down_pass(be, i, z_top, n);
    posterior_head_k(be, l, h, rows, k, o);
    ops::PosteriorNoise noise = base;
    noise.stream += static_cast<uint32_t>(i);
    // -log q at the sample, then + log p.
    ops::gaussian_posterior_sample(be, static_cast<const float*>(l.q.data()), n, 1, l.size, noise, -1.0f, l.z.data(),
                                   l.kl.data());
    ops::gaussian_log_density(be, static_cast<const float*>(l.p.data()), static_cast<const float*>(l.z.data()), n, 1,
                              l.size, 1.0f, l.kl.data());
    ops::add_columns(be, in(l.kl.data(), 1), out(lpq, 1), n, 1);
    place(be, i, n, z);
  }
}

void TopDown::sample(Backend& be, const float* h, int rows, int keep, const float* z_top,
                     const std::vector<float>& temperature, uint64_t seed, int64_t row0, float* z) {
  check_rows(rows);
  if (temperature.empty() || (keep > 1 && !h)) throw Error("TopDown::sample: no temperature, or kept levels without h (a bug in vae)");
  ops::copy_columns(be, in(z_top, sizes_[0]), out(z, total_), rows, sizes_[0]);
  for (int i = 1; i < levels(); ++i) {
    Level& l = levels_[static_cast<size_t>(i)];
    const float* o = top_down_pass(be, i, z_top, rows);
    const bool kept = i < keep;
    if (kept) posterior_head(be, l, h + l.head_column, head_width_, o, rows);
    const float t = kept ? 0.0f : static_cast<size_t>(i) < temperature.size() ? temperature[static_cast<size_t>(i)]
                                                                               : temperature.back();
    const ops::PosteriorNoise noise = level_noise(seed, kStreamPriorLevel0 + static_cast<uint32_t>(i), 0, row0, t, nullptr);
    ops::gaussian_posterior_sample(be, static_cast<const float*>(kept ? l.q.data() : l.p.data()), rows, 1, l.size, noise,
                                   1.0f, l.z.data(), static_cast<float*>(nullptr));
    place(be, i, rows, z);
  }
}

}  // namespace vae
