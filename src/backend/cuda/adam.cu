// Adam/AdamW with global-norm clipping over the flat parameter buffer (PyTorch's formulation,
// vae_math.cuh adam_update).
//   norm  = sqrt(sum_i g_i^2);  scale = clip and norm > clip ? clip / (norm + 1e-6) : 1
//   per element: g *= scale; (AdamW: p -= lr*wd*p | Adam+L2: g += wd*p)
//                m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= (lr/bc1) m / (sqrt(v)/sqrt(bc2) + eps)
// Shapes: p, g, m, v [n] (the flat buffers); grad_norm_out [1].
// Without clipping (the default) the update needs no norm first: ONE launch over a fixed grid of
// kAdamFusedBlocks updates every element and adds g^2 into per-block partial sums (double); the
// last block to finish (an integer counter, reset by that block for the next launch) adds the
// partials in index order and writes the norm. The counter is an acq_rel atomic, so the last block's
// reads of the partials are ordered after every other block's writes. Bytes: 16n read + 12n written.
// With clipping the scale must be known before any update: TWO launches. A fixed grid of
// kAdamNormBlocks writes the partial sums, then every block of the update kernel adds them in the
// same order, so all blocks see the same norm without a grid-wide barrier. Bytes: 20n read + 12n written.
// Both are deterministic: fixed partitions, fixed summation order, no floating-point atomics.
// The guard (training): the step must be skipped whole when the loss or the norm is not finite, so
// the norm must be known before any update: a guarded step always takes the two-launch form, and
// every block of the update kernel skips when *guard.loss or the norm is not finite (block 0 then
// adds 1 to *guard.skipped_steps). The one-launch form serves unguarded calls.
// The learning rate and bias corrections come from the step's StepScalars record in device memory
// (step_record.hpp), read when the kernel runs, so a captured graph needs no re-capture. CPU twin: CpuBackend::adam_step.
#include <cuda/atomic>

#include <cmath>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launchers.hpp"
#include "block_reduce.cuh"
#include "launch.cuh"
#include "vae_math.cuh"

namespace vae::cuda {
namespace {

__global__ void grad_square_partials_kernel(const float* __restrict__ g, int64_t n, double* __restrict__ partials) {
  double s = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    s += double(g[i]) * g[i];
  s = block_sum(s);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

__global__ void adam_update_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                   float* __restrict__ v, int64_t n, const StepScalars* __restrict__ step,
                                   float clip_norm, const double* __restrict__ partials,
                                   float* __restrict__ grad_norm_out, StepGuard guard) {
  __shared__ float scale;
  __shared__ bool skip;
  math::AdamCoefficients c = step->adam;
  if (threadIdx.x < 32) {
    // Warp 0 adds the partials in a fixed order (lane-strided, then a fixed shuffle tree).
    double s = 0;
    for (int b = threadIdx.x; b < kAdamNormBlocks; b += 32) s += partials[b];
    s = warp_sum(s);
    if (threadIdx.x == 0) {
      const double norm = sqrt(s);
      scale = (clip_norm > 0.0f && norm > clip_norm) ? static_cast<float>(clip_norm / (norm + 1e-6)) : 1.0f;
      skip = guard.active() && !(isfinite(norm) && isfinite(*guard.loss));
      if (blockIdx.x == 0 && grad_norm_out) *grad_norm_out = static_cast<float>(norm);
      if (blockIdx.x == 0 && skip) *guard.skipped_steps += 1.0f;
    }
  }
  __syncthreads();
  if (skip) return;
  c.grad_scale = scale;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float pi = p[i], mi = m[i], vi = v[i];
    math::adam_update(pi, g[i], mi, vi, c);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

// The one-launch form (no clipping). gridDim.x must be kAdamFusedBlocks; *blocks_done must be 0.
__global__ void adam_update_with_norm_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                             float* __restrict__ v, int64_t n, const StepScalars* __restrict__ step,
                                             double* __restrict__ partials, unsigned* __restrict__ blocks_done,
                                             float* __restrict__ grad_norm_out) {
  math::AdamCoefficients c = step->adam;
  c.grad_scale = 1.0f;
  double s = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    s += double(gi) * gi;
    float pi = p[i], mi = m[i], vi = v[i];
    math::adam_update(pi, gi, mi, vi, c);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
  s = block_sum(s);
  __shared__ bool last;
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = s;
    // acq_rel at device scope, both halves needed: the release publishes this block's partial with
    // its count; the acquire, in the block that takes the last count, orders every other block's
    // published partial before the reads below. (A fence before a relaxed atomicAdd gives only the
    // release half; the last block then read partials with nothing ordering those reads after the
    // count it saw.) __syncthreads carries the acquire from thread 0 to the rest of warp 0, as
    // cooperative groups' grid sync does.
    ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> done(*blocks_done);
    last = done.fetch_add(1u, ::cuda::memory_order_acq_rel) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last || threadIdx.x >= 32) return;
  // Warp 0 of the last block: the partials in index order (lane-strided, then a fixed shuffle tree).
  // __ldcg reads from L2, not from an L1 line this SM may hold from before.
  double total = 0;
  for (int b = threadIdx.x; b < kAdamFusedBlocks; b += 32) total += __ldcg(partials + b);
  total = warp_sum(total);
  if (threadIdx.x == 0) {
    if (grad_norm_out) *grad_norm_out = static_cast<float>(sqrt(total));
    // Ready for the next launch: kernels on one stream do not overlap, and the kernel boundary
    // orders this store before the next launch's fetch_add.
    ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device>(*blocks_done).store(0u, ::cuda::memory_order_relaxed);
  }
}

}  // namespace

void launch_adam_step(float* p, const float* g, float* m, float* v, int64_t n, float clip_norm, const StepScalars* step,
                      const AdamScratch& scratch, float* grad_norm_out, const StepGuard& guard, cudaStream_t s) {
  require(n >= 1 && p && g && m && v && step && scratch.partials && scratch.blocks_done, "adam_step",
          "empty buffer or null pointer");
  if (clip_norm <= 0.0f && !guard.active()) {
    adam_update_with_norm_kernel<<<kAdamFusedBlocks, kThreads, 0, s>>>(p, g, m, v, n, step, scratch.partials,
                                                                        scratch.blocks_done, grad_norm_out);
    VAE_CUDA_CHECK_LAUNCH();
    return;
  }
  grad_square_partials_kernel<<<kAdamNormBlocks, kThreads, 0, s>>>(g, n, scratch.partials);
  VAE_CUDA_CHECK_LAUNCH();
  adam_update_kernel<<<grid_for(n), kThreads, 0, s>>>(p, g, m, v, n, step, clip_norm, scratch.partials, grad_norm_out,
                                                       guard);
  VAE_CUDA_CHECK_LAUNCH();
}

}  // namespace vae::cuda
