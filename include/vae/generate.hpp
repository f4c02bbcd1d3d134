// Generation and the latent tools: sampling strategies (the prior at a temperature, or a mixture
// of Gaussians fitted after training to the training set's posterior means), latent codes of a
// data set, decoding codes, interpolation, traversals, the 2-D view of the latent space, and the
// classifier-based generation-quality measure.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vae/data.hpp"
#include "vae/model.hpp"
#include "vae/tensor.hpp"

namespace vae {

// A diagonal mixture of Gaussians over the latent space fitted by EM to posterior means: the
// aggregate posterior's ex-post density estimate (Ghosh et al. 2020, "From variational to
// deterministic autoencoders"). Sampling it instead of the prior avoids the prior's "holes", the
// regions no training image's posterior covers.
struct AggregatePosterior {
  int components = 0, latent = 0;
  std::vector<double> weights;    // [K]
  std::vector<double> means;      // [K, L]
  std::vector<double> variances;  // [K, L]
  double mean_log_likelihood = 0; // per point, nats, at the end of the fit
  int iterations = 0;
};

// EM from a deterministic start (K points chosen by Philox under seed, the data's variance, equal
// weights) until the mean log-likelihood improves by less than 1e-4 nats or after max_iterations;
// variances floored at 1e-6. codes [n, L] on the host; the sums run in point order (same bits for
// any thread count).
AggregatePosterior fit_aggregate_posterior(const std::vector<float>& codes, int64_t n, int latent, int components,
                                           uint64_t seed, int max_iterations = 200);

enum class SampleSource { Prior, Aggregate };

struct SampleOptions {
  int n = 64;
  float temperature = 1.0f;  // scales the spread: the prior's (see Prior::sample) or each mixture component's
  // A hierarchy: the temperature of each level from the top (the top's replaces temperature; the
  // last entry serves the levels past the list). Empty: temperature for every level.
  std::vector<float> level_temperatures;
  uint64_t seed = 0;
  SampleSource source = SampleSource::Prior;
  const AggregatePosterior* aggregate = nullptr;  // for SampleSource::Aggregate
  std::vector<int32_t> labels;  // a conditional model: one label per sample (or one for all)
  int batch = 1024;             // rows decoded at once
  // The 8-bit likelihoods (dlogistic, dmol): the pixels drawn from the decoded distribution (seed,
  // counted by sample) rather than its mean (the mixture's: its most probable component's means).
  bool draw_pixels = false;
};

// z [n, latent] on the model's device.
Tensor sample_latents(Model& model, const SampleOptions& options);
// Decoded samples [n, input_dim] in [0, 1] (host memory).
std::vector<float> sample_images(Model& model, const SampleOptions& options);
// Codes z [n, latent] (host) decoded in batches: [n, input_dim] in [0, 1] (host).
std::vector<float> decode_latents(Model& model, const std::vector<float>& z, int64_t n,
                                  const std::vector<int32_t>& labels = {}, int batch = 1024);

// The posterior of each image (grey levels, not binarised): mu and the log-variance as the model
// uses it (soft-clamped), [n, latent] each, with the set's labels when it has them. With a
// posterior flow those are its base Gaussian's, and codes holds f(mu), the mean pushed through the
// flow: the point in the decoder's space that stands for the image (empty without a flow, where it
// is mu itself; code() gives whichever it is).
struct LatentCodes {
  int64_t count = 0;
  int latent = 0;
  std::vector<float> mu, logvar, codes;
  std::vector<int32_t> labels;
  const std::vector<float>& code() const { return codes.empty() ? mu : codes; }
};
// The first `limit` images (0 = all), in batches.
LatentCodes encode_images(Model& model, const ImageSet& images, int64_t limit = 0, int batch = 500);

// The device forms, for callers whose data already lives on a device (the Python package's DLPack
// path): tensors in on any device, tensors out on the model's device; the same batches, and so the
// same bits, as the host forms above. Images are grey levels [n, input_dim] in [0, 1]; an input on
// the model's device is read where it lies.
struct LatentTensors {
  Tensor mu, logvar;  // [n, latent] each
  Tensor codes;       // f(mu) [n, latent] with a posterior flow; undefined without one
  const Tensor& code() const { return codes.defined() ? codes : mu; }
};
LatentTensors encode_tensor(Model& model, const Tensor& images, const std::vector<int32_t>& labels = {}, int batch = 500);
// Images [n, input_dim] in [0, 1] for codes z [n, latent].
// pixel_seed: the 8-bit likelihoods' pixels drawn (SampleOptions::draw_pixels) with this seed.
Tensor decode_tensor(Model& model, const Tensor& z, const std::vector<int32_t>& labels = {}, int batch = 1024,
                     const uint64_t* pixel_seed = nullptr);
// sample_images' images [n, input_dim], left on the model's device.
Tensor sample_tensor(Model& model, const SampleOptions& options);

// `steps` codes from a to b (both included): linear, or spherical (slerp along the great circle
// through a and b, scaled from |a| to |b|; linear where the two are within 1e-6 rad).
std::vector<float> interpolate_latents(const std::vector<float>& a, const std::vector<float>& b, int steps,
                                       bool spherical);
// The two leading principal components of codes [n, L] (L >= 2; LAPACK dsyev on the covariance):
// [n, 2] projections of the centred codes, and the share of the variance each explains.
std::vector<float> principal_components_2d(const std::vector<float>& codes, int64_t n, int latent,
                                           double explained[2]);

// The classifier the quality measure uses: an MLP on the images (the engine's layers, trained with
// softmax cross-entropy), whose penultimate layer gives the features of the Fréchet distance.
struct ClassifierConfig {
  int channels = 1, height = 28, width = 28, classes = 10;
  std::vector<int> hidden{256, 128};  // the last width is the feature size
  std::string to_json() const;
  static ClassifierConfig from_json(const std::string& text);
};

class Classifier {
 public:
  explicit Classifier(const ClassifierConfig& config, Device device = Device::CPU);
  ~Classifier();
  Classifier(Classifier&&) noexcept;
  Classifier& operator=(Classifier&&) noexcept;
  const ClassifierConfig& config() const;
  // Adam at lr, batch 128, on grey-level images, seed for initialisation and shuffling; returns the
  // test-set accuracy after each epoch (on_epoch prints it).
  std::vector<double> train(const Dataset& data, int epochs, float lr, uint64_t seed);
  // Per image of x [n, C*H*W] in [0, 1] (host): the predicted class, and the penultimate features
  // [n, hidden.back()] when features is non-null.
  std::vector<int32_t> predict(const std::vector<float>& x, int64_t n, std::vector<float>* features = nullptr);
  double accuracy(const ImageSet& set);
  void save(const std::string& path) const;
  static Classifier load(const std::string& path, Device device = Device::CPU);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The Fréchet distance between Gaussians fitted to two sets of features [n, D] (host, double
// arithmetic): |m1 - m2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2) (Heusel et al. 2017's FID formula,
// here on our classifier's features: a domain-specific analogue of FID, not FID).
double frechet_distance(const std::vector<float>& a, int64_t na, const std::vector<float>& b, int64_t nb, int dim);

// A scatter plot of points [n, 2] coloured by label (10 colours, repeating), with axis names, a
// title and a legend of class names (labels index them; empty: "class <label>"), as a PNG.
void write_scatter_png(const std::string& path, const std::vector<float>& points, int64_t n,
                       const std::vector<int32_t>& labels, const std::vector<std::string>& class_names,
                       const std::string& title, const std::string& x_name, const std::string& y_name);


}  // namespace vae
