// Launchers of the engine's CUDA kernels (kernels/*.cu). Each checks its arguments, launches on the
// given stream and checks the launch. All pointers are device pointers; shapes are row-major.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/backend.hpp"

namespace vae::cuda {

// b[out] added to every row of y[rows, out]; db[out] = column sums of dy[rows, out] (the unfused path).
void launch_bias_add(const float* b, float* y, int rows, int out, cudaStream_t s);
void launch_bias_grad(const float* dy, float* db, int rows, int out, cudaStream_t s);
// The unfused ReLU epilogues, in place on a GEMM output: y = max(0, y + b); g *= (a > 0), db = column sums of g.
void launch_relu_bias(const float* b, float* y, int rows, int out, cudaStream_t s);
void launch_relu_grad_bias_grad(const float* a, float* g, float* db, int rows, int out, cudaStream_t s);

void launch_loss_reduce(const float* nll, const float* kl, int rows, const StepScalars* step, float* out, cudaStream_t s);
// Adam's device scratch: partial sums of squares (kAdamFusedBlocks doubles, the larger grid) and the
// one-launch form's block counter (zero between launches).
constexpr int kAdamNormBlocks = 256;    // the norm pass of the two-launch (clipping) form
constexpr int kAdamFusedBlocks = 1024;  // the one-launch form
struct AdamScratch {
  double* partials = nullptr;
  unsigned* blocks_done = nullptr;
};
void launch_adam_step(float* p, const float* g, float* m, float* v, int64_t n, float clip_norm, const StepScalars* step,
                      const AdamScratch& scratch, float* grad_norm_out, const StepGuard& guard, cudaStream_t s);
// *current = table[*cursor]; ++*cursor (one thread; traps when the cursor is outside the table).
void launch_select_step(const StepScalars* table, int64_t count, int64_t* cursor, StepScalars* current, cudaStream_t s);

}  // namespace vae::cuda
