// Training and evaluation.
#pragma once

#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "vae/config.hpp"
#include "vae/data.hpp"
#include "vae/distributed.hpp"
#include "vae/error.hpp"
#include "vae/model.hpp"
#include "vae/safetensors.hpp"

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
  double kl = 0;           // mean KL(q(z|x) || p(z)): analytic for N(0, I), else log q - log p at one sample
  int active_units = 0;    // dimensions with Var_x(E_q[z_u]) > 0.01 (Burda et al.)
  // Analytic KL per dimension; empty for a prior that does not factorise over dimensions (mog).
  std::vector<double> kl_per_dim;
  std::vector<double> mean_variance;  // Var_x(E_q[z_u]) per dimension
  int k = 0;               // importance samples; 0 = not estimated
  double iwae_nll = 0;     // -log p(x) estimated with k importance samples
  // With k > 0: the standard error of iwae_nll over the images (their log p(x)'s sample standard
  // deviation / sqrt(count)), and the importance weights' effective sample size (sum w)^2 / sum w^2
  // per image, its mean and its smallest over the images (k at best, 1 when one sample carries all).
  double iwae_stderr = 0, ess_mean = 0, ess_min = 0;
  // The protocol (vae eval --json's "protocol"): the evaluated images' content hash
  // (image_set_hash), whether Bernoulli images were binarised (once, by a fixed seed per image index:
  // the same bits in every evaluation), the model configuration's hash, and, when the caller knows
  // them (vae eval), the whole data set's content hash and where the test split came from.
  std::string test_images_hash, model_config_hash, data_hash, test_split;
  std::string checkpoint;        // vae eval: the file evaluated, and the training step it holds
  int64_t checkpoint_step = -1;
  bool binarized = false;
  double seconds = 0;      // the evaluation's wall time
  // Bits per dimension (d = C*H*W values an image): -log2 P(x) / d of the 8-bit (or, Bernoulli,
  // binarized) values, from the ELBO's bound and, with k > 0, the importance-weighted one. A
  // discrete likelihood gives P(x) itself; a Gaussian's density over x = k / 255 is put on the same
  // scale as density times bin width, -log P(x) ~ -log p(x) + d ln 255 (close for sigma >> 1/255),
  // which bpd_from_density says.
  int64_t dimensions = 0;
  double bpd_elbo = 0, bpd = 0;
  bool bpd_from_density = false;
  std::string likelihood;  // the likelihood's type name (the protocol: what -log p(x) is of)
  // A hierarchy (ModelConfig::levels): each level's size, mean KL term (the top's against its
  // prior, each lower level's against its conditional prior at the sampled level above) and active
  // units (Var_x of its posterior mean, the lower levels' at the sampled levels above), top first.
  // A lower level's posterior mean follows the level above even where the level adds nothing (its
  // posterior equal to its conditional prior), so kl_active_units_per_level counts the units whose
  // mean KL term is above 0.01 nats instead: what the level adds to the code. The top's entry is -1
  // (JSON null) where its KL per dimension does not exist (a prior other than N(0, I)).
  // Empty for one level.
  std::vector<int> level_sizes;
  std::vector<double> kl_per_level;
  std::vector<int> active_units_per_level;
  std::vector<int> kl_active_units_per_level;
  // The KL term split in two (Hoffman & Johnson 2016): E_x KL(q(z|x) || p(z)) = I(x; z) + KL(q(z) || p(z)),
  // q(z) the aggregate posterior (1/N) sum_n q(z|x_n) over the N test images. Estimated at one
  // sample z_i ~ q(z|x_i) for each of the first mi_samples images:
  //   I ~ mean_i [log q(z_i|x_i) - log q(z_i)],  KL(q(z) || p) ~ mean_i [log q(z_i) - log p(z_i)],
  // log q(z_i) = logsumexp_n log q(z_i|x_n) - log N over all N test posteriors (so I <= log N).
  // With a posterior flow, log q(z|x_n) = log q0(f^-1(z)|x_n) - logdet at the same z0 = f^-1(z)
  // for every n (the flow does not depend on x), so I is estimated on z0 and the log-determinant
  // enters the aggregate's density.
  int mi_samples = 0;          // 0 = not estimated
  double mutual_info = 0;      // nats
  double aggregate_kl = 0;     // nats
  // Flows: the mean log |det| of the posterior flow over the test set (z0 -> z) and of the flow
  // prior's normalising map g at the posterior samples (z -> eps), over the mi_samples images.
  double posterior_flow_logdet = 0, prior_flow_logdet = 0;
  bool has_posterior_flow = false, has_prior_flow = false;  // which of the two the model has
  // One JSON object (vae eval --json, the Python package's evaluate): count, neg_elbo, recon, kl,
  // active_units, kl_per_dim, k, likelihood, dimensions, bpd_elbo, bpd_from_density, and iwae_nll and
  // bpd, mutual_info, aggregate_kl, mi_samples, the flows' log-determinants where they were estimated,
  // and a hierarchy's levels, kl_per_level and active_units_per_level.
  std::string to_json() const;
};

struct EpochMetrics {
  int epoch = 0;
  double train_loss = 0, train_recon = 0, train_kl = 0;
  double beta = 0, lr = 0, grad_norm = 0;
  double capacity = 0;        // the capacity objective's C at the epoch's last step (0 when off)
  int64_t skipped_steps = 0;  // steps whose loss or gradient norm was not finite: no update was made
  EvalResult test;
  EvalResult validation;  // count 0 when the run holds out no validation set
  double seconds = 0, samples_per_s = 0;
  std::string to_json() const;
};

struct EvalOptions {
  int k = 0;               // importance samples for -log p(x); 0 = ELBO only
  int batch = 250;
  int64_t limit = 0;       // first N images (0 = all)
  int mi_samples = 1000;   // images whose sample estimates the mutual information (0 = skip)
  bool binarize = true;    // for Bernoulli models: the fixed-seed binarisation of the test set
  // Called after each batch with the images done and the total (vae eval draws its progress line).
  std::function<void(int64_t done, int64_t total)> on_progress;
  // A job's ranks split the test set's batches (each rank a contiguous run of them) and the mutual
  // information's samples, and sum their parts: every rank gets the whole result. Every rank must
  // call evaluate with the same test set and options. The default group is this process alone.
  ProcessGroup group;
};

// Where a run stands: with the parameters and the Adam moments, everything --resume needs to
// continue with the same bits as a run that was never stopped.
struct TrainProgress {
  int64_t global_step = 0;       // optimizer steps taken; also the Philox step counter
  int epochs_done = 0;           // completed epochs
  int64_t steps_into_epoch = 0;  // steps of epoch epochs_done + 1 already taken (a stop mid-epoch)
  std::vector<double> epoch_sums = std::vector<double>(4, 0.0);  // those steps' [loss, recon, kl] row sums, skipped steps
  // The best bound at an epoch's end, and its epoch: on the validation set when the run holds one
  // out (the -ELBO, or an importance-weighted objective's own k-sample bound), else the test -ELBO.
  // best.safetensors is that epoch's model.
  double best_neg_elbo = std::numeric_limits<double>::infinity();
  int best_epoch = 0;
  int processes = 1;             // the data-parallel job's size when the state was written
};

// A run stopped because its loss blew up far above its own running level, or because it kept
// skipping steps with non-finite numbers. The message names the epoch, the step and what to try.
class TrainingDiverged : public Error {
 public:
  using Error::Error;
};

// Trains model in place. on_step is called with the running loss every 25 steps or so, once those
// values have reached the host (on CUDA they arrive without stalling the GPU) and at each epoch's
// end; on_epoch after each epoch's evaluation. should_stop is asked after every step: when it says
// yes, fit finishes that step, waits for the device and returns, with stopped() true and progress()
// saying where the run stands (save_state then writes it). Every step is guarded: a step whose loss
// or gradient norm is not finite makes no update (counted in EpochMetrics::skipped_steps); a run
// that diverges throws TrainingDiverged, leaving the model as it was after its last good step window.
//
// Data parallel: given a group of several processes (ProcessGroup::world() under mpirun), every rank
// constructs a Trainer on the same model configuration, data and TrainConfig and calls fit; the
// global batch stays config.batch. Each step splits its batch into contiguous shards, rank r taking
// rows [R r / N, R (r+1) / N) of the R rows a single process would take (the same images, the same
// binarisation and the same reparameterisation noise), weights its shard's mean gradient and loss
// by its share of the R rows, and sums both over the ranks (MPI on the CPU, NCCL inside the
// recorded step on CUDA) before the one guarded Adam step every rank applies. Rank 0's parameters
// are broadcast first, and every epoch ends with a check that the ranks' parameters still agree.
// Every rank gets the same metrics; writing files is the caller's, on rank 0 alone. The free-bits
// and capacity objectives decide the KL weight from the whole batch and are refused across ranks.
class Trainer {
 public:
  Trainer(Model& model, TrainConfig config, ProcessGroup group = {});
  std::vector<EpochMetrics> fit(const Dataset& data,
                                const std::function<void(const StepProgress&)>& on_step = {},
                                const std::function<void(const EpochMetrics&)>& on_epoch = {},
                                const std::function<bool()>& should_stop = {});
  // One optimizer step on the given images (rows of input_dim floats in [0, 1], host memory);
  // returns the loss. For tests and benchmarks. A conditional model takes one label per row.
  double step(const std::vector<float>& images, int rows, const std::vector<int32_t>& labels = {});

  bool stopped() const { return stopped_; }
  // Early stopping (TrainConfig::early_stopping) has ended the run: early_stopping epochs have
  // passed since the best epoch and since the KL warm-up's last. A function of the progress, so a
  // resumed run knows it too.
  bool stopped_early() const;
  const TrainProgress& progress() const { return progress_; }
  // The optimizer state and progress as safetensors: tensors optimizer.adam_m and optimizer.adam_v
  // (the flat moment buffers), metadata vae_train_state (progress, the run's configuration as JSON).
  // load_state checks that the file belongs to this model and configuration (parameter count,
  // model configuration, seed, batch) and that it is from the step the model checkpoint records.
  void save_state(const std::string& path) const;
  void load_state(const std::string& path, int64_t checkpoint_step);
  // The same, in memory (vae::TrainingRun adds the model and the metrics to it); `where` names the
  // source in messages.
  SafeTensorsFile state_contents() const;
  void load_state(const SafeTensorsFile& file, const std::string& where, int64_t checkpoint_step);

 private:
  void ensure_optimizer_state();
  Model& model_;
  TrainConfig config_;
  ProcessGroup group_;
  TrainProgress progress_;
  bool stopped_ = false;
  Tensor adam_m_, adam_v_;   // flat first and second moments
  Tensor grad_norm_;         // [1]: the last step's gradient norm, on the device
};

EvalResult evaluate(Model& model, const ImageSet& test, const EvalOptions& options = {});

// Samples n images from the prior at the given temperature: [n, input_dim] in [0, 1].
Tensor sample_images(Model& model, int n, float temperature, uint64_t seed);
// The first n test images [n, input_dim] and their reconstructions from the posterior mean.
std::pair<Tensor, Tensor> reconstruct_images(Model& model, const ImageSet& test, int n);
// What a hierarchy's levels encode: the first n test images decoded from codes that keep their top
// `keep` levels at the posterior means and draw the levels below from their conditional priors at
// temperature (seed: the draw). keep = the number of levels is the plain reconstruction. Throws for
// a model with one level.
Tensor reconstruct_keeping_levels(Model& model, const ImageSet& test, int n, int keep, float temperature, uint64_t seed);


}  // namespace vae
