// The VAE's internals, shared by the trainer, the evaluator and the checkpoint code.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "backend/backend.hpp"
#include "backend/device_array.hpp"
#include "backend/step_record.hpp"
#include "graph/layers.hpp"
#include "latent/latent_block.hpp"
#include "model/likelihood.hpp"
#include "model/objective.hpp"
#include "vae/config.hpp"
#include "vae/data.hpp"
#include "vae/model.hpp"
#include "vae/tensor.hpp"

namespace vae {

class ModelImpl {
 public:
  ModelImpl(const ModelConfig& config, Device device);

  // Its parts, which the trainer, the evaluator and the generators run or read.
  ModelConfig config;
  Device device;
  std::unique_ptr<Backend> backend;
  Sequential encoder{"encoder"};  // image [C, H, W] -> the posterior's head (see build_networks)
  Sequential decoder{"decoder"};  // [latent] -> image (logits or Gaussian means)
  LatentBlock latent_block;       // posterior and prior
  std::unique_ptr<LikelihoodModel> likelihood_model;  // p(x | decoder output), with its own parameters
  RunOrigin origin;  // the run that trained it (Model::origin)
  // One call at a time (model/model_use.hpp): the lock every entry point holds, and the thread
  // training the model (none: std::thread::id()).
  mutable std::recursive_timed_mutex use_mutex;
  std::atomic<std::thread::id> trained_by{};

  // The parameters and their gradient: flat, padded to kParamAlignment per tensor, named by slices().
  Tensor params() const { return params_; }
  Tensor grads() const { return grads_; }
  const std::vector<ParamSlice>& slices() const { return slices_; }

  // What the last forward left, as views of the workspace (valid until the next prepare grows it):
  // loss [3] = [objective, mean reconstruction, mean KL] (forward_backward's; a job's ranks sum it in
  // place); and per sample, z [rows*k, L], the reconstruction term nll [rows*k] and the latent term
  // [rows*k] (the KL, or log p - log q); kl_dim [L] (forward_eval's, when the latent block reports it).
  Tensor loss() const { return loss_; }
  Tensor z() const { return z_; }
  Tensor nll() const { return nll_; }
  Tensor latent_term() const { return kl_sample_; }
  Tensor kl_dim() const { return kl_dim_; }
  // The record of a step taken on its own (Trainer::step; step_record.hpp).
  StepRecord& single_step() { return single_step_; }

  // Sets the objective (validated, and against this model: ObjectiveConfig::check_model).
  void set_objective(const ObjectiveConfig& o);
  const ObjectiveConfig& objective_config() const { return objective_config_; }
  int samples_per_row() const { return objective_->samples_per_row(); }
  // Encoder forward for x [rows, input_dim], with the prior's pseudo-inputs after the batch when it
  // has them (their encoding bound to the prior, with dh's rows after the batch for its gradient
  // when training). Returns the batch's encoder output [rows, head width].
  const float* encode_batch(const float* x, int rows, bool training);
  // The encoder backward matching encode_batch(x, rows, true), with the pseudo-inputs' gradient.
  void encoder_backward(const float* x, int rows);
  // A conditional model's labels y (device memory, float class indices, one per data row) appended to
  // the encoder's input; x itself otherwise. Sizes from prepare (or prepare_condition).
  const float* encoder_input(const float* x, const float* y, int rows);
  // The decoder over z [n, latent], each run of `repeat` rows sharing the label y[row / repeat] of a
  // conditional model; its output.
  const float* decode_forward(const float* z, const float* y, int n, int repeat);
  // The matching backward: dz [n, latent] (the label's columns dropped) and the decoder's parameter gradients.
  void decode_backward(const float* z, const float* dout, float* dz, int n);
  // Makes the condition's buffers hold encoder_rows and decoder_rows rows (nothing unless conditional).
  void prepare_condition(int encoder_rows, int decoder_rows);
  // Labels as the device's float class indices (condition.cuh), a tensor [labels.size()].
  Tensor labels_on_device(const std::vector<int32_t>& labels) const;
  // Throws unless a conditional model gets labels (and an unconditional one none), all in [0, classes).
  void check_labels(const std::vector<int32_t>* labels, int64_t rows, const char* what) const;
  // Runs the encoder on the pseudo-inputs alone and binds the result to the prior (sampling).
  void encode_pseudo_inputs();
  // The flows' data-dependent initialisation from a batch x [rows, input_dim] (device memory),
  // before a run's first step; nothing without flows.
  void initialize_from_data(const float* x, int rows, uint64_t seed, const float* y = nullptr);

  int input_dim() const { return config.input_dim(); }
  // Throws unless set's images have the size the model was built for (which names the set).
  void check_image_size(const ImageSet& set, const char* which) const;
  int latent() const { return config.latent; }
  // Makes the workspace hold batches of rows data rows (grows, never shrinks).
  void prepare(int rows);
  // Changes whenever a workspace buffer is reallocated (here or in the encoder or decoder): a
  // recorded CUDA graph that addresses the old buffers must then be recorded again.
  uint64_t workspace_generation() const {
    return generation_ + encoder.generation() + decoder.generation() + latent_block.generation() +
           objective_->generation();
  }

  // Forward and backward over x [rows, input_dim] (device memory): fills grads (overwritten) and
  // loss (not kl_dim: forward_eval reports that). Loss = mean over rows of (NLL + beta * KL). The
  // step's values (the Philox step, beta, the KL term's weight in the gradient, the capacity) are
  // the record's at `step` (backend memory, step_record.hpp), read when the work runs: the form a
  // captured CUDA graph replays, and the only form.
  // y: a conditional model's labels (device memory, float class indices, rows of them).
  // row0: the batch's first row within the global batch, the noise's row counter (LatentArgs): a
  // rank of a data-parallel job draws the noise the single-process step draws for those rows.
  void forward_backward(const float* x, int rows, uint64_t seed, const StepScalars* step, const float* y = nullptr,
                        int64_t row0 = 0);
  // Forward only: per-row nll and latent term, kl_dim (when latent_block reports it), and the
  // encoder output (returned).
  const float* forward_eval(const float* x, int rows, uint64_t seed, int64_t row0, float eps_scale,
                            const float* y = nullptr);
  // NLL per row of decoder output `out` against x; dout (scaled by grad_scale) when non-null.
  void likelihood(const float* out, const float* x, float* nll_rows, float* dout, int rows, float grad_scale);
  // The images [n, input_dim] in [0, 1] (the sigmoid of the logits, or the clamped Gaussian mean)
  // of codes z [n, latent] (device memory; y: a conditional model's labels, as decode_forward takes
  // them), written straight to images (device memory): no copy of the decoder's output between.
  // draw: the pixels drawn from the likelihood (its seed, and the first row's place in the whole
  // draw) instead of its mean picture.
  struct PixelDraw {
    uint64_t seed = 0;
    int64_t row0 = 0;
  };
  void decode_images(const float* z, const float* y, int n, float* images, const PixelDraw* draw = nullptr);

 private:
  std::vector<ParamSlice> slices_;
  Tensor params_, grads_;
  ObjectiveConfig objective_config_;    // set_objective's (the plain ELBO by default)
  std::unique_ptr<Objective> objective_;  // what forward_backward minimises

  // Per-batch workspace, sized by prepare(). With k samples per row (the objective's; the iwae
  // objectives' k) z, dz, kl_sample (the latent term: the KL, or log p - log q), nll and dlogits
  // hold rows * k rows, and x_rep the images repeated k times; with pseudo-inputs (the VampPrior)
  // dh and the encoder's input x_all hold rows + K.
  int capacity_ = 0;
  Tensor z_, dz_, dh_, kl_sample_, kl_dim_, nll_, dlogits_, loss_;
  Tensor x_all_, dx_all_;  // [x; pseudo-inputs] and its gradient
  Tensor x_rep_;
  StepRecord single_step_{device};
  // A conditional model's inputs with the condition appended (condition.cuh): the encoder's
  // [rows, input_dim + encoder_condition_width] and the decoder's [n, latent + classes] with its gradient.
  int condition_rows_ = 0;
  Tensor x_cond_, z_cond_, dz_cond_;
  uint64_t generation_ = 0;

};

}  // namespace vae
