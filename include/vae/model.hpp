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
#include "vae/tensor.hpp"

namespace vae {

struct ModelImpl;  // internal; see src/model/model_impl.hpp

// How the CUDA backend runs the linear layers; the CPU has one numerics and ignores these.
struct Numerics {
  bool tf32 = true;             // TF32 tensor-core GEMMs; false = strict FP32
  bool fused_epilogues = true;  // bias, ReLU and their gradients inside the cuBLASLt GEMM where it can
};

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
// metadata (key "vae_config") and, when step >= 0, the optimizer step it was taken at ("vae_step",
// which --resume matches against the training state). Written to a temporary file and renamed.
// Refuses (vae::Error) to write a parameter that is not finite.
void save_checkpoint(const Model& model, const std::string& path, int64_t step = -1);
// The step recorded by save_checkpoint, or -1 when the checkpoint has none.
int64_t checkpoint_step(const std::string& path);
// Throws vae::Error for a missing, truncated or malformed file, or shapes that do not match the config.
Model load_checkpoint(const std::string& path, Device device = Device::CPU);

}  // namespace vae
