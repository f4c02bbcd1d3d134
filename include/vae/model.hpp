// The VAE: MLP Gaussian encoder, reparameterised latent sample, MLP decoder, likelihood.
// Parameters, gradients and optimizer moments live in flat buffers; named_parameters() returns
// views whose names follow the module path (encoder.0.weight, decoder.4.bias, likelihood.log_sigma).
#pragma once

#include <memory>
#include <string>
#include <cstdint>
#include <utility>
#include <vector>

#include "vae/config.hpp"
#include "vae/data.hpp"
#include "vae/tensor.hpp"

namespace vae {

struct ModelImpl;  // internal; see src/model/model_impl.hpp

// How the CUDA backend runs the linear layers; the CPU has one numerics and ignores these.
struct Numerics {
  bool tf32 = true;             // TF32 tensor-core GEMMs; false = strict FP32
  bool fused_epilogues = true;  // bias, ReLU and their gradients inside the cuBLASLt GEMM where it can
};

// Where a model was trained, as its checkpoints carry it (metadata "vae_run", JSON): the run and the
// data it read. A TrainingRun sets it; a model made any other way has none (run_id empty). The
// checkpoint commands (vae eval, encode, ...) read the origin's data and split unless told --data.
struct RunOrigin {
  std::string run_id;          // 32 hex digits, fresh for every new run
  std::string data;            // the data source, as an absolute path
  std::string labels;          // its labels .npy (absolute), or empty
  double test_fraction = 0.1;  // the held-out share of a source without a test split
  std::string data_hash;       // dataset_hash of the data as the run loaded it
  bool empty() const { return run_id.empty(); }
  DataOptions data_options() const;
  std::string to_json() const;
  // Throws vae::Error naming `what` for text that is not such an object.
  static RunOrigin from_json(const std::string& text, const std::string& what);
};

// Threads: every call on a model (encode, decode, the functions of generate.hpp and train.hpp that
// take it, save_checkpoint, a Trainer's construction, step and fit) holds the model's lock, so calls
// from several threads run one at a time and each gives the bits it gives alone, with the process's
// thread count (set_num_threads). A call from another thread while the model trains throws
// vae::Error at once instead of waiting for the training; the training's callbacks may call it.
// named_parameters() returns views that no lock covers.
class Model {
 public:
  explicit Model(const ModelConfig& config, Device device = Device::CPU);
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  const ModelConfig& config() const;
  Device device() const;
  int64_t parameter_count() const;  // trainable scalars (excluding alignment padding)
  void initialize(uint64_t seed);
  // Applies from the next operation on; Trainer sets it from TrainConfig::tf32/fused_epilogues.
  void set_numerics(const Numerics& numerics);

  // The run that trained it (empty when none did); checkpoints save and restore it.
  const RunOrigin& origin() const;
  void set_origin(RunOrigin origin);

  // Views into the flat parameter buffer, in module order.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;

  // Posterior parameters [n, 2*latent] = [mu | logvar] for images x [n, input_dim] in [0, 1].
  Tensor encode(const Tensor& x);
  // Decoder mean in [0, 1] (Bernoulli probability or clamped Gaussian mean) for z [n, latent].
  Tensor decode(const Tensor& z);
  // A conditional model's forms (ModelConfig::conditional): one label in [0, classes) per row. The
  // forms without labels throw for a conditional model; these throw for labels given to another.
  Tensor encode(const Tensor& x, const std::vector<int32_t>& labels);
  Tensor decode(const Tensor& z, const std::vector<int32_t>& labels);

  ModelImpl& impl() { return *impl_; }
  const ModelImpl& impl() const { return *impl_; }

 private:
  std::unique_ptr<ModelImpl> impl_;
};

// safetensors checkpoint: one F32 tensor per parameter, the model configuration as JSON in the
// metadata (key "vae_config"), the model's origin when it has one ("vae_run") and, when step >= 0, the optimizer step it was taken at ("vae_step",
// which --resume matches against the training state). Written to a temporary file and renamed.
// Refuses (vae::Error) to write a parameter that is not finite.
void save_checkpoint(const Model& model, const std::string& path, int64_t step = -1);
// The step recorded by save_checkpoint, or -1 when the checkpoint has none.
int64_t checkpoint_step(const std::string& path);
// Throws vae::Error for a missing, truncated or malformed file, or shapes that do not match the config.
Model load_checkpoint(const std::string& path, Device device = Device::CPU);

}  // namespace vae
