// Launchers of the engine's CUDA kernels (kernels/*.cu). Each checks its arguments, launches on the
// given stream and checks the launch. All pointers are device pointers; shapes are row-major.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/backend.hpp"

namespace vae::cuda {

void launch_activation_forward(math::Act act, float slope, const float* x, float* y, int64_t n, cudaStream_t s);
void launch_activation_backward(math::Act act, float slope, const float* x, const float* dy, float* dx, int64_t n,
                                cudaStream_t s);
// b[out] added to every row of y[rows, out]; db[out] = column sums of dy[rows, out] (the unfused path).
void launch_bias_add(const float* b, float* y, int rows, int out, cudaStream_t s);
void launch_bias_grad(const float* dy, float* db, int rows, int out, cudaStream_t s);
// The unfused ReLU epilogues, in place on a GEMM output: y = max(0, y + b); g *= (a > 0), db = column sums of g.
void launch_relu_bias(const float* b, float* y, int rows, int out, cudaStream_t s);
void launch_relu_grad_bias_grad(const float* a, float* g, float* db, int rows, int out, cudaStream_t s);

// Per-channel bias of NCHW [n, c, hw]: y += bias[c]; db[c] = sum over n and hw of dy (kernels/channel_bias.cu).
void launch_channel_bias_add(const float* bias, float* y, int n, int c, int hw, cudaStream_t s);
void launch_channel_bias_grad(const float* dy, float* db, int n, int c, int hw, cudaStream_t s);

void launch_latent_sample_kl_forward(const LatentArgs& a, const float* h, float* z, float* kl_sample, float* kl_dim,
                                     cudaStream_t s);
void launch_latent_sample_kl_backward(const LatentArgs& a, const float* h, const float* dz, float kl_weight, float* dh,
                                      cudaStream_t s);
void launch_bernoulli_nll(const float* logits, const float* x, float* nll, float* dlogits, int rows, int d,
                          float grad_scale, cudaStream_t s);
void launch_gaussian_nll(const float* mean, const float* x, const float* log_sigma_raw, float fixed_log_sigma,
                         float* nll, float* dmean, float* dlog_sigma, int rows, int d, float grad_scale, cudaStream_t s);
void launch_loss_reduce(const float* nll, const float* kl, int rows, float beta, const StepScalars* per_step, float* out,
                        cudaStream_t s);
void launch_accumulate_scaled(const float* src, int n, float scale, float* dst, cudaStream_t s);
// Adam's device scratch: partial sums of squares (kAdamFusedBlocks doubles, the larger grid) and the
// one-launch form's block counter (zero between launches).
constexpr int kAdamNormBlocks = 256;    // the norm pass of the two-launch (clipping) form
constexpr int kAdamFusedBlocks = 1024;  // the one-launch form
struct AdamScratch {
  double* partials = nullptr;
  unsigned* blocks_done = nullptr;
};
void launch_adam_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamArgs& a,
                      const StepScalars* per_step, const AdamScratch& scratch, float* grad_norm_out,
                      const StepGuard& guard, cudaStream_t s);
void launch_gather_pixels(const uint8_t* images, const int32_t* index, int rows, int d, bool binarize, uint64_t seed,
                          uint32_t stream, uint64_t step, const StepScalars* per_step, float* x, cudaStream_t s);
// *current = table[*cursor]; ++*cursor (one thread; traps when the cursor is outside the table).
void launch_select_step(const StepScalars* table, int64_t count, int64_t* cursor, StepScalars* current, cudaStream_t s);
void launch_latent_importance_sample(const float* h, float* z, float* log_pz_minus_qz, int rows, int k, int latent,
                                     uint64_t seed, int64_t row0, int64_t sample0, cudaStream_t s);
void launch_logsumexp_accumulate(const float* log_pz_minus_qz, const float* nll, int rows, int k, float* running_max,
                                 float* running_sum, cudaStream_t s);
void launch_sigmoid(const float* x, float* y, int64_t n, cudaStream_t s);
void launch_clamp01(const float* x, float* y, int64_t n, cudaStream_t s);
void launch_normal_fill(float* z, int rows, int cols, float scale, uint64_t seed, uint32_t stream, uint64_t step,
                        cudaStream_t s);
void launch_fill(float* x, int64_t n, float value, cudaStream_t s);

}  // namespace vae::cuda
