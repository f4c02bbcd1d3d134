// The likelihoods (likelihood.hpp): Bernoulli on logits, Gaussian with a fixed or learned per-pixel
// sigma, and the discretized logistic of 8-bit values.
#include "model/likelihood.hpp"

#include <cmath>
#include <functional>
#include <map>

#include "bernoulli_nll.cuh"
#include "condition.cuh"
#include "discretized_logistic_nll.cuh"
#include "dmol_nll.cuh"
#include "pixel_sample.cuh"
#include "elementwise.cuh"
#include "gaussian_nll.cuh"
#include "vae/error.hpp"

namespace vae {
namespace {

// Bernoulli(x | sigmoid(logits)) on dynamically binarised pixels; an image is sigmoid(logits).
class BernoulliLikelihood final : public LikelihoodModel {
 public:
  explicit BernoulliLikelihood(int d) : d_(d) {}
  bool binarized_data() const override { return true; }
  void nll(Backend& be, const float* out, const float* x, float* nll_rows, float* dout, int rows, float grad_scale,
           const float* /*params*/, float* /*grads*/) const override {
    ops::bernoulli_nll(be, out, x, nll_rows, dout, rows, d_, grad_scale);
  }
  void to_image(Backend& be, const float* out, float* image, int rows) const override {
    ops::sigmoid(be, out, image, int64_t(rows) * d_);
  }

 private:
  int d_;
};

// N(x | mean, sigma^2) per pixel on grey levels, sigma fixed (likelihood.sigma) or learned per pixel
// (likelihood.learned_sigma: "likelihood.log_sigma" [d], starting at log sigma); an image is the
// mean clamped to [0, 1].
class GaussianLikelihood final : public LikelihoodModel {
 public:
  GaussianLikelihood(int d, float sigma, bool learned) : d_(d), log_sigma_(std::log(sigma)), learned_(learned) {}
  bool binarized_data() const override { return false; }
  bool discrete() const override { return false; }
  bool shares_parameters_across_samples() const override { return learned_; }
  int64_t layout(int64_t offset) override {
    if (!learned_) return offset;
    offset_ = align_params(offset);
    return offset_ + d_;
  }
  void param_slices(std::vector<ParamSlice>& out) const override {
    if (learned_) out.push_back({"likelihood.log_sigma", offset_, {d_}});
  }
  void initialize(std::vector<float>& host) const override {
    // The raw value is log sigma, well inside the soft clamp.
    if (learned_)
      for (int i = 0; i < d_; ++i) host[static_cast<size_t>(offset_ + i)] = log_sigma_;
  }
  void nll(Backend& be, const float* out, const float* x, float* nll_rows, float* dout, int rows, float grad_scale,
           const float* params, float* grads) const override {
    ops::gaussian_nll(be, out, x, learned_ ? params + offset_ : nullptr, log_sigma_, nll_rows, dout,
                      learned_ && dout ? grads + offset_ : nullptr, rows, d_, grad_scale);
  }
  void to_image(Backend& be, const float* out, float* image, int rows) const override {
    ops::clamp01(be, out, image, int64_t(rows) * d_);
  }

 private:
  int d_;
  float log_sigma_;
  bool learned_;
  int64_t offset_ = -1;
};

// The discretized logistic of 8-bit grey levels x = k / 255 (kernels/discretized_logistic_nll.cuh):
// the decoder gives [means | raw log-scales] per row; an image is the means clamped to [0, 1].
class DiscretizedLogisticLikelihood final : public LikelihoodModel {
 public:
  explicit DiscretizedLogisticLikelihood(int d) : d_(d) {}
  bool binarized_data() const override { return false; }
  void nll(Backend& be, const float* out, const float* x, float* nll_rows, float* dout, int rows, float grad_scale,
           const float* /*params*/, float* /*grads*/) const override {
    ops::discretized_logistic_nll(be, out, x, nll_rows, dout, rows, d_, grad_scale);
  }
  void to_image(Backend& be, const float* out, float* image, int rows) const override {
    ops::take_columns(be, out, rows, 2 * int64_t(d_), d_, image);
    ops::clamp01(be, image, image, int64_t(rows) * d_);
  }
  void sample_image(Backend& be, const float* out, float* image, int rows, uint64_t seed, int64_t row0) const override {
    ops::logistic_pixel_sample(be, out, image, rows, d_, seed, row0);
  }

 private:
  int d_;
};

// A mixture of discretized logistics per pixel (kernels/dmol_nll.cuh), grey or RGB; an image is the
// most probable component's coupled means.
class MixtureDiscretizedLogisticLikelihood final : public LikelihoodModel {
 public:
  MixtureDiscretizedLogisticLikelihood(int components, int channels, int64_t hw) : k_(components), c_(channels), hw_(hw) {}
  bool binarized_data() const override { return false; }
  void nll(Backend& be, const float* out, const float* x, float* nll_rows, float* dout, int rows, float grad_scale,
           const float* /*params*/, float* /*grads*/) const override {
    ops::dmol_nll(be, out, x, nll_rows, dout, rows, k_, c_, hw_, grad_scale);
  }
  void to_image(Backend& be, const float* out, float* image, int rows) const override {
    ops::dmol_image(be, out, image, rows, k_, c_, hw_);
  }
  void sample_image(Backend& be, const float* out, float* image, int rows, uint64_t seed, int64_t row0) const override {
    ops::dmol_pixel_sample(be, out, image, rows, k_, c_, hw_, seed, row0);
  }

 private:
  int k_, c_;
  int64_t hw_;
};

}  // namespace

std::unique_ptr<LikelihoodModel> make_likelihood(const ModelConfig& c) {
  using Factory = std::function<std::unique_ptr<LikelihoodModel>(const ModelConfig&)>;
  static const std::map<std::string, Factory> registry = {
      {"bernoulli", [](const ModelConfig& m) { return std::make_unique<BernoulliLikelihood>(m.input_dim()); }},
      {"gaussian",
       [](const ModelConfig& m) {
         return std::make_unique<GaussianLikelihood>(m.input_dim(), m.gaussian_sigma, m.learned_sigma);
       }},
      {"dlogistic", [](const ModelConfig& m) { return std::make_unique<DiscretizedLogisticLikelihood>(m.input_dim()); }},
      {"dmol",
       [](const ModelConfig& m) {
         return std::make_unique<MixtureDiscretizedLogisticLikelihood>(m.mixture_components(), m.image_channels,
                                                                       int64_t(m.image_height) * m.image_width);
       }},
  };
  const std::string name = to_string(c.likelihood);
  const auto it = registry.find(name);
  if (it == registry.end()) throw Error("likelihood.type " + name + " has no implementation in this build");
  return it->second(c);
}

}  // namespace vae
