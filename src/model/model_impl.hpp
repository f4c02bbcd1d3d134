// The VAE's internals, shared by the trainer, the evaluator and the checkpoint code.
#pragma once

#include <memory>
#include <vector>

#include "backend/backend.hpp"
#include "graph/layers.hpp"
#include "latent/latent_block.hpp"
#include "vae/config.hpp"
#include "vae/data.hpp"
#include "vae/tensor.hpp"

namespace vae {

struct ModelImpl {
  ModelImpl(const ModelConfig& config, Device device);

  ModelConfig config;
  Device device;
  std::unique_ptr<Backend> backend;
  Sequential encoder{"encoder"};  // image [C, H, W] -> [2 * latent] (see build_networks)
  Sequential decoder{"decoder"};  // [latent] -> image (logits or Gaussian means)
  LatentBlock latent_block;       // posterior, prior and the ELBO's KL term between them
  std::vector<ParamSlice> slices;
  int64_t log_sigma_offset = -1;  // learned Gaussian log-sigma [input_dim], or -1
  Tensor params, grads;           // flat, padded to kParamAlignment per tensor

  // Per-batch workspace, sized by prepare().
  int capacity = 0;
  Tensor z, dz, dh, kl_sample, kl_dim, nll, dlogits, loss;  // loss = [total, recon, kl]

  int input_dim() const { return config.input_dim(); }
  // Throws unless set's images have the size the model was built for (which names the set).
  void check_image_size(const ImageSet& set, const char* which) const;
  int latent() const { return config.latent; }
  void prepare(int rows);
  // Changes whenever a workspace buffer is reallocated (here or in the encoder or decoder): a
  // recorded CUDA graph that addresses the old buffers must then be recorded again.
  uint64_t workspace_generation() const {
    return generation + encoder.generation() + decoder.generation() + latent_block.prior().generation();
  }
  uint64_t generation = 0;

  // Forward and backward over x [rows, input_dim] (device memory): fills grads (overwritten) and
  // loss (not kl_dim: forward_eval reports that). Loss = mean over rows of (NLL + beta * KL). With per_step (backend memory), beta and the
  // Philox step are read from it when the work runs and the by-value beta and step are ignored:
  // the form a captured CUDA graph replays.
  void forward_backward(const float* x, int rows, float beta, uint64_t seed, uint64_t step,
                        const StepScalars* per_step = nullptr);
  // Forward only: per-row nll and kl_sample, kl_dim (when latent_block reports it), and the encoder
  // output (returned).
  const float* forward_eval(const float* x, int rows, uint64_t seed, int64_t row0, float eps_scale);
  // NLL per row of decoder output `out` against x; dout (scaled by grad_scale) when non-null.
  void likelihood(const float* out, const float* x, float* nll_rows, float* dout, int rows, float grad_scale);
  // Decoder output mapped to [0, 1] (sigmoid of logits, or clamped Gaussian mean), in place.
  void to_image(float* out, int64_t n);
};

}  // namespace vae
