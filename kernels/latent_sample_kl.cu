// The latent block: reparameterised sample and analytic KL to N(0, I), forward and backward.
//
// Input h[rows, 2L] = [mu | raw]; logvar = soft_clamp(raw, -30, 20); sigma = exp(logvar / 2);
// eps[r, u] = Philox normal at counter (u/4, row0 + r, step, kStreamLatent): never stored.
//   forward:  z = mu + eps_scale * sigma * eps                        [rows, L]
//             kl_sample[r] = sum_u 0.5 (e^lv + mu^2 - 1 - lv)        [rows]
//             kl_dim[u]    = sum_r (the same term)                   [L]
//   backward: dmu  = dz + w * mu                     (w = beta / batch, the KL weight)
//             draw = (dz * eps_scale * eps * sigma / 2 + w * (e^lv - 1) / 2) * soft_clamp'(raw)
// Bytes: forward reads h twice (2 * 8L per row: once per row kernel, once per column kernel) and
// writes 4L + 4 per row; backward reads h and dz (12L per row) and writes dh (8L per row).
// With a StepScalars record (a training step), step and w are read from it when the kernel runs.
// Threads own groups of 4 columns, so each Philox block is computed once. Reductions are
// fixed-order block trees: deterministic. CPU twin: cpu::latent_sample_kl_{forward,backward}.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launchers.hpp"
#include "block_reduce.cuh"
#include "launch.cuh"
#include "philox.cuh"
#include "vae_math.cuh"

namespace vae::cuda {
namespace {

constexpr int kRowThreads = 64;

__device__ __forceinline__ float logvar_of(float raw) { return math::soft_clamp(raw, math::kLogvarMin, math::kLogvarMax); }

// One block per row; thread t handles column groups t, t + blockDim, ...
__global__ void latent_forward_rows_kernel(const float* __restrict__ h, float* __restrict__ z,
                                           float* __restrict__ kl_sample, int latent, uint64_t seed, uint64_t step,
                                           int64_t row0, float eps_scale, const StepScalars* __restrict__ per_step) {
  if (per_step) step = per_step->philox_step;
  const int r = blockIdx.x;
  const float* mu = h + int64_t(r) * 2 * latent;
  const float* raw = mu + latent;
  float* zr = z + int64_t(r) * latent;
  float kl = 0.0f;
  for (int c0 = threadIdx.x * 4; c0 < latent; c0 += blockDim.x * 4) {
    float eps[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (eps_scale != 0.0f) philox_normals(philox_block(seed, kStreamLatent, row0 + r, step, c0 >> 2), eps);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int u = c0 + lane;
      if (u >= latent) break;
      const float lv = logvar_of(raw[u]);
      zr[u] = mu[u] + eps_scale * hd::exp(0.5f * lv) * eps[lane];
      kl += math::gaussian_kl(mu[u], lv);
    }
  }
  kl = block_sum(kl);
  if (threadIdx.x == 0 && kl_sample) kl_sample[r] = kl;
}

// One block per latent dimension; threads stride over rows.
__global__ void latent_kl_per_dim_kernel(const float* __restrict__ h, float* __restrict__ kl_dim, int rows, int latent) {
  const int u = blockIdx.x;
  float sum = 0.0f;
  for (int r = threadIdx.x; r < rows; r += blockDim.x) {
    const float* mu = h + int64_t(r) * 2 * latent;
    sum += math::gaussian_kl(mu[u], logvar_of(mu[latent + u]));
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) kl_dim[u] = sum;
}

// One thread per (row, group of 4 columns).
__global__ void latent_backward_kernel(const float* __restrict__ h, const float* __restrict__ dz,
                                       float* __restrict__ dh, int rows, int latent, uint64_t seed, uint64_t step,
                                       int64_t row0, float eps_scale, float kl_weight,
                                       const StepScalars* __restrict__ per_step) {
  if (per_step) {
    step = per_step->philox_step;
    kl_weight = per_step->kl_grad_weight;
  }
  const int groups = (latent + 3) / 4;
  const int64_t n = int64_t(rows) * groups;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int r = static_cast<int>(i / groups), c0 = static_cast<int>(i % groups) * 4;
    const float* mu = h + int64_t(r) * 2 * latent;
    const float* raw = mu + latent;
    const float* g = dz + int64_t(r) * latent;
    float* dmu = dh + int64_t(r) * 2 * latent;
    float* draw = dmu + latent;
    float eps4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (eps_scale != 0.0f) philox_normals(philox_block(seed, kStreamLatent, row0 + r, step, c0 >> 2), eps4);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int u = c0 + lane;
      if (u >= latent) break;
      const float lv = logvar_of(raw[u]);
      const float eps = eps4[lane];
      const float sigma = hd::exp(0.5f * lv);
      dmu[u] = g[u] + kl_weight * mu[u];
      const float dlv = g[u] * eps_scale * eps * 0.5f * sigma + kl_weight * math::gaussian_kl_grad_logvar(lv);
      draw[u] = dlv * math::soft_clamp_grad(raw[u], math::kLogvarMin, math::kLogvarMax);
    }
  }
}

}  // namespace

void launch_latent_sample_kl_forward(const LatentArgs& a, const float* h, float* z, float* kl_sample, float* kl_dim,
                                     cudaStream_t s) {
  require(a.rows >= 1 && a.latent >= 1 && h && z, "latent_sample_kl_forward", "empty shape or null pointer");
  latent_forward_rows_kernel<<<a.rows, kRowThreads, 0, s>>>(h, z, kl_sample, a.latent, a.seed, a.step, a.row0,
                                                             a.eps_scale, a.per_step);
  VAE_CUDA_CHECK_LAUNCH();
  if (kl_dim) {
    latent_kl_per_dim_kernel<<<a.latent, kThreads, 0, s>>>(h, kl_dim, a.rows, a.latent);
    VAE_CUDA_CHECK_LAUNCH();
  }
}

void launch_latent_sample_kl_backward(const LatentArgs& a, const float* h, const float* dz, float kl_weight, float* dh,
                                      cudaStream_t s) {
  require(a.rows >= 1 && a.latent >= 1 && h && dz && dh, "latent_sample_kl_backward", "empty shape or null pointer");
  const int64_t n = int64_t(a.rows) * ((a.latent + 3) / 4);
  latent_backward_kernel<<<grid_for(n), kThreads, 0, s>>>(h, dz, dh, a.rows, a.latent, a.seed, a.step, a.row0,
                                                           a.eps_scale, kl_weight, a.per_step);
  VAE_CUDA_CHECK_LAUNCH();
}

}  // namespace vae::cuda
