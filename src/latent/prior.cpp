#include "latent/prior.hpp"

#include "latent/flow.hpp"

#include <cmath>
#include <functional>
#include <map>
#include <string>

#include "elementwise.cuh"
#include "label_gaussian_prior.cuh"
#include "mog_prior.cuh"
#include "philox.cuh"
#include "rows.cuh"
#include "standard_normal_prior.cuh"
#include "vae/error.hpp"

namespace vae {
namespace {

class StandardNormalPrior final : public Prior {
 public:
  using Prior::Prior;
  PriorType type() const override { return PriorType::StandardNormal; }
  bool is_standard_normal() const override { return true; }
  void add_log_prob(Backend& be, const float* z, int rows, float sign, float* out) override {
    ops::standard_normal_log_prob(be, z, rows, latent(), sign, out);
  }
  void backward(Backend& be, const float* z, int rows, const ops::PriorGradWeights<float>& w, float* dz) override {
    ops::standard_normal_grad_z(be, z, rows, latent(), w.z, dz);
  }
  // The draws `vae sample` has always made: N(0, T^2 I) from kStreamPrior.
  void sample(Backend& be, float* z, int n, float temperature, uint64_t seed) override {
    ops::normal_fill(be, z, n, latent(), temperature, seed, kStreamPrior, 0);
  }
};

class MixturePrior final : public Prior {
 public:
  MixturePrior(int latent, int components) : Prior(latent), k_(components) {}
  PriorType type() const override { return PriorType::MixtureOfGaussians; }

  int64_t layout(int64_t offset) override {
    logits_ = align_params(offset);
    means_ = align_params(logits_ + k_);
    raw_logvar_ = align_params(means_ + int64_t(k_) * latent());
    return raw_logvar_ + int64_t(k_) * latent();
  }
  void bind(float* params, float* grads) override {
    params_ = params;
    grads_ = grads;
  }
  void param_slices(std::vector<ParamSlice>& out) const override {
    out.push_back({"prior.logits", logits_, {k_}});
    out.push_back({"prior.means", means_, {k_, latent()}});
    out.push_back({"prior.logvar", raw_logvar_, {k_, latent()}});
  }
  // Equal weights, unit variances, and means drawn from N(0, I) (Philox, this tensor's stream row),
  // so the components start apart from each other and inside the region the posteriors start in.
  void initialize(std::vector<float>& params, uint64_t seed, uint32_t& tensor_index) const override {
    std::fill(params.begin() + logits_, params.begin() + logits_ + k_, 0.0f);
    const uint32_t index = tensor_index++;
    const int64_t n = int64_t(k_) * latent();
    for (int64_t c0 = 0; c0 < n; c0 += 4) {
      float eps[4];
      philox_normals(philox_block(seed, kStreamInit, index, 1, static_cast<uint64_t>(c0 >> 2)), eps);
      for (int lane = 0; lane < 4 && c0 + lane < n; ++lane) params[static_cast<size_t>(means_ + c0 + lane)] = eps[lane];
    }
    std::fill(params.begin() + raw_logvar_, params.begin() + raw_logvar_ + n, 0.0f);
  }

  void prepare(int rows, Device device) override {
    ensure_table(device);
    if (rows <= capacity_) return;
    resp_ = Tensor({rows, k_}, device);
    capacity_ = rows;
    ++generation_;
  }
  uint64_t generation() const override { return generation_; }

  void add_log_prob(Backend& be, const float* z, int rows, float sign, float* out) override {
    check_capacity(rows);
    ensure_table(be.device());
    ops::mog_log_prob(be, view(), z, rows, sign, resp_.data(), out, table_.data());
  }
  void backward(Backend& be, const float* z, int rows, const ops::PriorGradWeights<float>& w, float* dz) override {
    check_capacity(rows);
    ensure_table(be.device());
    ops::mog_backward(be, view(), z, resp_.data(), rows, w, dz, grads_ + logits_, grads_ + means_, grads_ + raw_logvar_,
                      table_.data());
  }
  void sample(Backend& be, float* z, int n, float temperature, uint64_t seed) override {
    ensure_table(be.device());
    ops::mog_sample(be, view(), n, temperature, seed, z, table_.data());
  }

 private:
  ops::MogParams<float> view() const {
    return {params_ + logits_, params_ + means_, params_ + raw_logvar_, k_, latent()};
  }
  // The derived tables (mog_prior.cuh), a fixed size: allocated once, before any recorded step.
  void ensure_table(Device device) {
    if (!table_.defined()) table_ = Tensor({ops::mog_table_size(k_, latent())}, device);
  }
  void check_capacity(int rows) const {
    if (rows > capacity_)
      throw Error("mixture prior: " + std::to_string(rows) + " rows but prepared for " + std::to_string(capacity_) +
                  " (a bug in vae: prepare must run first)");
  }

  int k_;
  int64_t logits_ = 0, means_ = 0, raw_logvar_ = 0;
  float *params_ = nullptr, *grads_ = nullptr;
  Tensor resp_, table_;
  int capacity_ = 0;
  uint64_t generation_ = 0;
};


// The VampPrior: an equal-weight mixture of the encoder's Gaussians at K pseudo-inputs, evaluated by
// the mixture's op (mog_prior.cuh) on the encoder's output rows, seen as components through the
// posterior (Posterior::components), with fixed zero logits. Its one parameter tensor is the raw pseudo-inputs [K, C, H, W]; the images
// the encoder sees are clamp(raw, 0, 1) (Tomczak & Welling's hardtanh).
class VampPrior final : public Prior, public PseudoInputs {
 public:
  VampPrior(const Posterior& posterior, int components, int channels, int height, int width)
      : Prior(posterior.latent()), posterior_(posterior), k_(components), c_(channels), h_(height), w_(width) {}
  PriorType type() const override { return PriorType::Vamp; }
  PseudoInputs* pseudo_inputs() override { return this; }
  int count() const override { return k_; }
  int64_t pixels() const { return int64_t(c_) * h_ * w_; }

  int64_t layout(int64_t offset) override {
    raw_ = align_params(offset);
    return raw_ + int64_t(k_) * pixels();
  }
  void bind(float* params, float* grads) override {
    params_ = params;
    grads_ = grads;
  }
  void param_slices(std::vector<ParamSlice>& out) const override {
    out.push_back({"prior.pseudo_inputs", raw_, {k_, c_, h_, w_}});
  }
  // N(0.05, 0.01^2) per pixel, the VampPrior paper's start for binary images: dark, nearly alike
  // images that training pulls apart (Philox, this tensor's stream row).
  void initialize(std::vector<float>& params, uint64_t seed, uint32_t& tensor_index) const override {
    const uint32_t index = tensor_index++;
    const int64_t n = int64_t(k_) * pixels();
    for (int64_t c0 = 0; c0 < n; c0 += 4) {
      float eps[4];
      philox_normals(philox_block(seed, kStreamInit, index, 1, static_cast<uint64_t>(c0 >> 2)), eps);
      for (int lane = 0; lane < 4 && c0 + lane < n; ++lane)
        params[static_cast<size_t>(raw_ + c0 + lane)] = 0.05f + 0.01f * eps[lane];
    }
  }

  void prepare(int rows, Device device) override {
    if (!table_.defined()) {
      table_ = Tensor({ops::mog_table_size(k_, latent())}, device);
      logits_ = Tensor::zeros({k_}, device);
    }
    if (rows <= capacity_) return;
    resp_ = Tensor({rows, k_}, device);
    capacity_ = rows;
    ++generation_;
  }
  uint64_t generation() const override { return generation_; }

  void write(Backend& be, float* x) const override { ops::clamp01(be, params_ + raw_, x, int64_t(k_) * pixels()); }
  void bind_encoding(const float* h, float* dh) override {
    h_u_ = h;
    dh_u_ = dh;
  }
  void backward(Backend& be, const float* dx) override {
    ops::unit_clamp_backward(be, params_ + raw_, dx, int64_t(k_) * pixels(), grads_ + raw_);
  }

  void add_log_prob(Backend& be, const float* z, int rows, float sign, float* out) override {
    check_ready(rows, "add_log_prob");
    ops::mog_log_prob(be, view(), z, rows, sign, resp_.data(), out, table_.data());
  }
  void backward(Backend& be, const float* z, int rows, const ops::PriorGradWeights<float>& w, float* dz) override {
    check_ready(rows, "backward");
    if (!dh_u_) throw Error("VampPrior: backward without a gradient buffer for the pseudo-inputs' encoding (a bug in vae)");
    const auto grad = posterior_.components(dh_u_);
    ops::mog_backward(be, view(), z, resp_.data(), rows, w, dz, static_cast<float*>(nullptr), grad.means, grad.raw_log_var,
                      table_.data());
  }
  // A pseudo-input uniformly, then its Gaussian at the temperature (mog_sample with equal weights).
  void sample(Backend& be, float* z, int n, float temperature, uint64_t seed) override {
    check_ready(1, "sample");
    ops::mog_sample(be, view(), n, temperature, seed, z, table_.data());
  }

 private:
  ops::MogParams<float> view() const {
    const auto c = posterior_.components(h_u_);
    ops::MogParams<float> p{logits_.data(), c.means, c.raw_log_var, k_, latent()};
    p.stride = c.stride;
    return p;
  }
  void check_ready(int rows, const char* what) const {
    if (!h_u_ || !table_.defined() || rows > capacity_)
      throw Error(std::string("VampPrior: ") + what + " before the encoder ran on the pseudo-inputs or before prepare (a bug "
                  "in vae)");
  }

  const Posterior& posterior_;
  int k_, c_, h_, w_;
  int64_t raw_ = 0;
  float *params_ = nullptr, *grads_ = nullptr;
  const float* h_u_ = nullptr;
  float* dh_u_ = nullptr;
  Tensor resp_, table_, logits_;
  int capacity_ = 0;
  uint64_t generation_ = 0;
};


// The flow prior: z = g^-1(eps), eps ~ N(0, I), with g the flow in its normalising direction:
// log p(z) = log N(g(z); 0, I) + log |det dg/dz|. Sampling draws eps (at the temperature) and runs
// the stack in reverse.
class FlowPrior final : public Prior {
 public:
  FlowPrior(int latent, int steps, int hidden) : Prior(latent), flow_("prior.flow", latent, steps, hidden) {}
  PriorType type() const override { return PriorType::Flow; }
  Tensor last_logdet(int rows) const override { return logdet_.view(0, {rows}); }
  int64_t layout(int64_t offset) override { return flow_.layout(offset); }
  void bind(float* params, float* grads) override { flow_.bind(params, grads); }
  void param_slices(std::vector<ParamSlice>& out) const override { flow_.param_slices(out); }
  void initialize(std::vector<float>& params, uint64_t seed, uint32_t& tensor_index) const override {
    flow_.initialize(params, seed, tensor_index);
  }
  void prepare(int rows, Device device) override {
    flow_.prepare(rows, device);
    if (rows <= capacity_) return;
    logdet_ = Tensor({rows}, device);
    de_ = Tensor({rows, latent()}, device);
    de2_ = Tensor({rows, latent()}, device);
    capacity_ = rows;
    ++generation_;
  }
  uint64_t generation() const override { return generation_ + flow_.generation(); }
  void initialize_from(Backend& be, const float* z, int rows) override { flow_.initialize_from(be, z, rows); }

  void add_log_prob(Backend& be, const float* z, int rows, float sign, float* out) override {
    check_capacity(rows);
    ops::fill(be, logdet_.data(), rows, 0.0f);
    eps_ = flow_.forward(be, z, rows, logdet_.data());
    ops::standard_normal_log_prob(be, eps_, rows, latent(), sign, out);
    ops::add_scaled(be, static_cast<const float*>(logdet_.data()), rows, sign, out);
  }
  // The loss holds w_r (-log N(eps_r) - logdet_r): d/deps = w_r eps_r, logdet's weight -w_r. With
  // different weights for z and for the parameters (the doubly-reparameterised bound) the flow's
  // backward runs twice: once for the parameters, once for z.
  void backward(Backend& be, const float* /*z*/, int rows, const ops::PriorGradWeights<float>& w, float* dz) override {
    check_capacity(rows);
    const int64_t n = int64_t(rows) * latent();
    ops::fill(be, de_.data(), n, 0.0f);
    ops::standard_normal_grad_z(be, eps_, rows, latent(), w.params, de_.data());
    if (w.z.same_as(w.params)) {
      ops::add_scaled(be, flow_.backward(be, de_.data(), rows, w.params.negated(), true), n, 1.0f, dz);
      return;
    }
    flow_.backward(be, de_.data(), rows, w.params.negated(), true);
    ops::fill(be, de2_.data(), n, 0.0f);
    ops::standard_normal_grad_z(be, eps_, rows, latent(), w.z, de2_.data());
    ops::add_scaled(be, flow_.backward(be, de2_.data(), rows, w.z.negated(), false), n, 1.0f, dz);
  }
  void sample(Backend& be, float* z, int n, float temperature, uint64_t seed) override {
    prepare(n, be.device());
    ops::normal_fill(be, de_.data(), n, latent(), temperature, seed, kStreamPrior, 0);
    flow_.inverse(be, de_.data(), n, z);
  }

 private:
  void check_capacity(int rows) const {
    if (rows > capacity_)
      throw Error("flow prior: " + std::to_string(rows) + " rows but prepared for " + std::to_string(capacity_) +
                  " (a bug in vae: prepare must run first)");
  }
  Flow flow_;
  Tensor logdet_, de_, de2_;
  const float* eps_ = nullptr;
  int capacity_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace

// p(z | y) = N(m_y, diag(e^lv_y)), a learned Gaussian per class (kernels/label_gaussian_prior.cuh).
class LabelGaussianPrior final : public Prior {
 public:
  LabelGaussianPrior(int latent, int classes) : Prior(latent), classes_(classes) {}
  PriorType type() const override { return PriorType::LabelGaussian; }
  bool conditional() const override { return true; }
  void bind_labels(const float* y, int repeat) override {
    labels_ = y;
    repeat_ = repeat;
  }
  int64_t layout(int64_t offset) override {
    means_ = align_params(offset);
    raw_logvar_ = align_params(means_ + int64_t(classes_) * latent());
    return raw_logvar_ + int64_t(classes_) * latent();
  }
  void bind(float* params, float* grads) override {
    params_ = params;
    grads_ = grads;
  }
  void param_slices(std::vector<ParamSlice>& out) const override {
    out.push_back({"prior.means", means_, {classes_, latent()}});
    out.push_back({"prior.logvar", raw_logvar_, {classes_, latent()}});
  }
  // Every class starts at N(0, I), the unconditional prior: training moves each to its class's
  // posteriors, and nothing is assumed about where they lie.
  void initialize(std::vector<float>& params, uint64_t /*seed*/, uint32_t& tensor_index) const override {
    ++tensor_index;
    const int64_t n = int64_t(classes_) * latent();
    std::fill(params.begin() + means_, params.begin() + means_ + n, 0.0f);
    std::fill(params.begin() + raw_logvar_, params.begin() + raw_logvar_ + n, 0.0f);
  }
  void add_log_prob(Backend& be, const float* z, int rows, float sign, float* out) override {
    ops::label_gaussian_log_prob(be, view(), z, rows, sign, out);
  }
  void backward(Backend& be, const float* z, int rows, const ops::PriorGradWeights<float>& w, float* dz) override {
    ops::label_gaussian_backward(be, view(), z, rows, w, dz, grads_ + means_, grads_ + raw_logvar_);
  }
  void sample(Backend& be, float* z, int n, float temperature, uint64_t seed) override {
    ops::label_gaussian_sample(be, view(), n, temperature, seed, z);
  }

 private:
  ops::LabelGaussianParams<float> view() const {
    if (!labels_) throw Error("the label_gaussian prior ran without the batch's labels (a bug in vae: bind_labels first)");
    return {params_ + means_, params_ + raw_logvar_, labels_, classes_, latent(), repeat_};
  }
  int classes_;
  int64_t means_ = 0, raw_logvar_ = 0;
  float *params_ = nullptr, *grads_ = nullptr;
  const float* labels_ = nullptr;
  int repeat_ = 1;
};

std::unique_ptr<Prior> make_prior(const ModelConfig& c, const Posterior& posterior) {
  using Factory = std::function<std::unique_ptr<Prior>(const ModelConfig&, const Posterior&)>;
  static const std::map<std::string, Factory> registry = {
      {"standard_normal",
       [](const ModelConfig& m, const Posterior&) { return std::make_unique<StandardNormalPrior>(m.latent); }},
      {"mog",
       [](const ModelConfig& m, const Posterior&) { return std::make_unique<MixturePrior>(m.latent, m.prior.count()); }},
      {"vamp",
       [](const ModelConfig& m, const Posterior& q) {
         return std::make_unique<VampPrior>(q, m.prior.count(), m.image_channels, m.image_height, m.image_width);
       }},
      {"flow",
       [](const ModelConfig& m, const Posterior&) {
         return std::make_unique<FlowPrior>(m.latent, m.prior.flow_steps, m.prior.flow_hidden);
       }},
      {"label_gaussian",
       [](const ModelConfig& m, const Posterior&) { return std::make_unique<LabelGaussianPrior>(m.latent, m.classes); }},
  };
  const std::string name = to_string(c.prior.type);
  const auto it = registry.find(name);
  if (it == registry.end()) throw Error("prior.type " + name + " has no implementation in this build");
  return it->second(c, posterior);
}

}  // namespace vae
