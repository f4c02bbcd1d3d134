// Training and evaluation.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "vae/config.hpp"
#include "vae/data.hpp"
#include "vae/model.hpp"

namespace vae {

struct StepProgress {
  int epoch = 0;            // 1-based
  int64_t step = 0;         // within the epoch, 1-based
  int64_t steps_per_epoch = 0;
  double loss = 0;          // running mean over the epoch
  double samples_per_s = 0;
  double eta_s = 0;         // time left in the whole run
};

struct EvalResult {
  int64_t count = 0;
  double neg_elbo = 0;     // mean over the test set, nats
  double recon = 0;        // mean reconstruction NLL
  double kl = 0;           // mean KL(q(z|x) || p(z))
  int active_units = 0;    // dimensions with Var_x(E_q[z_u]) > 0.01 (Burda et al.)
  std::vector<double> kl_per_dim;
  std::vector<double> mean_variance;  // Var_x(E_q[z_u]) per dimension
  int k = 0;               // importance samples; 0 = not estimated
  double iwae_nll = 0;     // -log p(x) estimated with k importance samples
};

struct EpochMetrics {
  int epoch = 0;
  double train_loss = 0, train_recon = 0, train_kl = 0;
  double beta = 0, lr = 0, grad_norm = 0;
  EvalResult test;
  double seconds = 0, samples_per_s = 0;
  std::string to_json() const;
};

struct EvalOptions {
  int k = 0;               // importance samples for -log p(x); 0 = ELBO only
  int batch = 250;
  int64_t limit = 0;       // first N images (0 = all)
  bool binarize = true;    // for Bernoulli models: the fixed-seed binarisation of the test set
};

// Trains model in place. on_step is called with the running loss every 25 steps or so, once those
// values have reached the host (on CUDA they arrive without stalling the GPU) and at each epoch's
// end; on_epoch after each epoch's evaluation.
class Trainer {
 public:
  Trainer(Model& model, TrainConfig config);
  std::vector<EpochMetrics> fit(const Dataset& data,
                                const std::function<void(const StepProgress&)>& on_step = {},
                                const std::function<void(const EpochMetrics&)>& on_epoch = {});
  // One optimizer step on the given images (rows of input_dim floats in [0, 1], host memory);
  // returns the loss. For tests and benchmarks.
  double step(const std::vector<float>& images, int rows);

 private:
  void ensure_optimizer_state();
  Model& model_;
  TrainConfig config_;
  int64_t global_step_ = 0;  // optimizer steps taken; also the Philox step counter
  Tensor adam_m_, adam_v_;   // flat first and second moments
  Tensor grad_norm_;         // [1]: the last step's gradient norm, on the device
};

EvalResult evaluate(Model& model, const ImageSet& test, const EvalOptions& options = {});

// Samples n images from the prior at the given temperature: [n, input_dim] in [0, 1].
Tensor sample_images(Model& model, int n, float temperature, uint64_t seed);
// The first n test images [n, input_dim] and their reconstructions from the posterior mean.
std::pair<Tensor, Tensor> reconstruct_images(Model& model, const ImageSet& test, int n);

// Writes images [n, channels*height*width] (planar, [C, H, W] each) in [0, 1] as a PNG grid with
// `columns` per row (atomic write); 1 channel is grey, 3 RGB, 2 and 4 add alpha.
void write_png_grid(const std::string& path, const std::vector<float>& images, int n, int channels, int height,
                    int width, int columns);

}  // namespace vae
