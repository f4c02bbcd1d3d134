#include "model/objective.hpp"

#include <functional>
#include <map>
#include <string>

#include "backend/device_array.hpp"
#include "elbo_objective.cuh"
#include "iwae_objective.cuh"
#include "rows.cuh"
#include "vae/error.hpp"

namespace vae {
namespace {

// The ELBO, mean over rows of nll + beta * KL, with the KL held up by free bits (per dimension, or
// per group of dimensions with the analytic KL per dimension) or steered to a capacity C
// (elbo_objective.cuh). Beta's warm-up and C's schedule are the step record's.
class Elbo final : public Objective {
 public:
  Elbo(const ObjectiveConfig& o, const ModelConfig& model, LatentBlock& latent)
      : free_bits_(o.free_bits), capacity_(o.capacity), group_(o.free_bits_group), latent_(model.latent),
        by_dimension_(o.free_bits > 0 && o.free_bits_group < model.latent) {
    latent.set_kl_by_dimension(by_dimension_);
  }
  float likelihood_grad_scale(int rows) const override { return 1.0f / static_cast<float>(rows); }
  void prepare(int /*rows*/, Device device) override {
    if (!regularised() || effective_.size() > 0) return;
    effective_ = DeviceArray<StepScalars>::allocate(1, device);
    if (by_dimension_) {
      kl_dim_ = Tensor({latent_}, device);
      dim_weight_ = Tensor({latent_}, device);
    }
    ++generation_;
  }
  uint64_t generation() const override { return generation_; }

  void sample(Backend& be, LatentBlock& latent, const LatentArgs& a, const float* h, float* z, float* kl) override {
    // No KL per dimension unless free bits by group need it: only evaluation reports it, and on
    // the GPU it is a kernel of its own.
    latent.forward(be, a, h, z, kl, by_dimension_ ? kl_dim_.data() : nullptr);
  }
  void reduce(Backend& be, const LatentArgs& a, const float* nll, const float* kl, float* loss) override {
    if (!regularised()) {
      be.loss_reduce(nll, kl, a.rows, a.per_step, loss);
      return;
    }
    // The batch decides the KL term's weight; the backward reads it from the effective record
    // written on the device.
    ops::ElboRegularised<float> r{};
    r.kind = capacity_ > 0 ? ops::KlRegulariser::Capacity : ops::KlRegulariser::FreeBits;
    r.nll = nll;
    r.kl = kl;
    r.kl_dim = by_dimension_ ? kl_dim_.data() : nullptr;
    r.rows = a.rows;
    r.latent = latent_;
    r.group = group_;
    r.free_bits = free_bits_;
    r.step = a.per_step;
    r.effective = effective_.data();
    r.dim_weight = by_dimension_ ? dim_weight_.data() : nullptr;
    r.loss = loss;
    ops::elbo_regularised(be, r);
  }
  void latent_backward(Backend& be, LatentBlock& latent, const LatentArgs& a, const float* h, const float* z, float* dz,
                       float* dh) override {
    LatentArgs back = a;
    if (regularised()) back.per_step = effective_.data();
    latent.backward(be, back, h, z, dz, by_dimension_ ? dim_weight_.data() : nullptr, dh);
  }

 private:
  bool regularised() const { return free_bits_ > 0 || capacity_ > 0; }
  float free_bits_, capacity_;
  int group_, latent_;
  bool by_dimension_;
  DeviceArray<StepScalars> effective_;  // the step record with the batch's KL weight
  Tensor kl_dim_, dim_weight_;          // free bits by group: the KL per dimension and its weights
  uint64_t generation_ = 0;
};

// The importance-weighted bound (Burda et al. 2016) over k samples per row: every gradient weighted
// by the samples' normalised importance weights (iwae_objective.cuh). With dreg, the encoder's
// gradient is the doubly-reparameterised one (Tucker et al. 2018).
class ImportanceWeightedBound : public Objective {
 public:
  ImportanceWeightedBound(const ObjectiveConfig& o, const LikelihoodModel& likelihood, bool dreg)
      : k_(o.k), dreg_(dreg) {
    if (likelihood.shares_parameters_across_samples())
      throw Error("objective.type " + to_string(o.type) + " with a learned Gaussian sigma (likelihood.learned_sigma) is "
                  "not supported: the sigma's gradient is not weighted per sample. Use a fixed sigma or the elbo");
  }
  int samples_per_row() const override { return k_; }
  float likelihood_grad_scale(int /*rows*/) const override { return 1.0f; }
  void prepare(int rows, Device device) override {
    if (rows <= capacity_) return;
    const int n = rows * k_;
    bound_ = Tensor({rows}, device);
    decoder_weight_ = Tensor({n}, device);
    encoder_weight_ = Tensor({n}, device);
    z_scale_ = Tensor({n}, device);
    capacity_ = rows;
    ++generation_;
  }
  uint64_t generation() const override { return generation_; }

  void sample(Backend& be, LatentBlock& latent, const LatentArgs& a, const float* h, float* z, float* lpq) override {
    latent.sample_k(be, a, h, k_, z, lpq);
  }
  void reduce(Backend& be, const LatentArgs& a, const float* nll, const float* lpq, float* loss) override {
    ops::iwae_objective(be, lpq, nll, a.rows, k_, dreg_, bound_.data(), decoder_weight_.data(), encoder_weight_.data(),
                        dreg_ ? z_scale_.data() : static_cast<float*>(nullptr), loss);
  }
  void weight_decoder_gradient(Backend& be, float* dout, int rows, int d) override {
    ops::scale_rows(be, dout, static_cast<const float*>(decoder_weight_.data()), rows * k_, d);
  }
  void latent_backward(Backend& be, LatentBlock& latent, const LatentArgs& a, const float* h, const float* z, float* dz,
                       float* dh) override {
    if (dreg_) ops::scale_rows(be, dz, static_cast<const float*>(z_scale_.data()), a.rows * k_, a.latent);
    const ops::GradWeight<float> enc{0.0f, nullptr, encoder_weight_.data()}, dec{0.0f, nullptr, decoder_weight_.data()};
    latent.backward_k(be, a, h, z, k_, dz, {enc, dec}, enc, dreg_, dh);
  }

 private:
  int k_;
  bool dreg_;
  Tensor bound_, decoder_weight_, encoder_weight_, z_scale_;
  int capacity_ = 0;
  uint64_t generation_ = 0;
};

// IWAE's bound with DReG's encoder gradient: log q's parameters held fixed, which a posterior flow's
// inverse would need.
class DoublyReparameterisedBound final : public ImportanceWeightedBound {
 public:
  DoublyReparameterisedBound(const ObjectiveConfig& o, const ModelConfig& model, const LikelihoodModel& likelihood)
      : ImportanceWeightedBound(o, likelihood, true) {
    if (model.posterior_flow_steps > 0)
      throw Error("objective.type iwae_dreg needs the Gaussian posterior without flow steps (its estimator holds log q's "
                  "parameters fixed, which a flow's inverse would need): remove posterior.flow_steps (--posterior-flow) "
                  "or use iwae");
  }
};

}  // namespace

std::unique_ptr<Objective> make_objective(const ObjectiveConfig& o, const ModelConfig& model, LatentBlock& latent,
                                          const LikelihoodModel& likelihood) {
  o.validate();
  o.check_model(model);
  latent.set_kl_by_dimension(false);
  using Factory = std::function<std::unique_ptr<Objective>(const ObjectiveConfig&, const ModelConfig&, LatentBlock&,
                                                           const LikelihoodModel&)>;
  static const std::map<std::string, Factory> registry = {
      {"elbo", [](const ObjectiveConfig& c, const ModelConfig& m, LatentBlock& l,
                  const LikelihoodModel&) { return std::make_unique<Elbo>(c, m, l); }},
      {"iwae", [](const ObjectiveConfig& c, const ModelConfig&, LatentBlock&, const LikelihoodModel& p) {
         return std::make_unique<ImportanceWeightedBound>(c, p, false);
       }},
      {"iwae_dreg", [](const ObjectiveConfig& c, const ModelConfig& m, LatentBlock&, const LikelihoodModel& p) {
         return std::make_unique<DoublyReparameterisedBound>(c, m, p);
       }},
  };
  const std::string name = to_string(o.type);
  const auto it = registry.find(name);
  if (it == registry.end()) throw Error("objective.type " + name + " has no implementation in this build");
  return it->second(o, model, latent, likelihood);
}

}  // namespace vae
