// Gaussian likelihood, value and gradients in one pass, with a fixed or a learned per-pixel sigma.
//   ls[i]        = soft_clamp(log_sigma_raw[i], -6.9, 4), or fixed_log_sigma
//   nll[r]       = sum_i 0.5 log(2 pi) + ls[i] + (x - m)^2 / (2 e^(2 ls[i]))          [rows]
//   dmean[r, i]  = grad_scale * (m - x) e^(-2 ls[i])                                 [rows, d]
//   dlog_sigma[i]= grad_scale * soft_clamp'(raw[i]) * sum_r (1 - (x - m)^2 e^(-2 ls[i]))   [d]
// Bytes: reads 8d (+4d for the learned sigma) and writes 4d + 4 per row; the sigma gradient reads
// the [rows, d] inputs again, one thread per pixel over the rows in order (deterministic).
// CPU twin: cpu::gaussian_nll.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launchers.hpp"
#include "block_reduce.cuh"
#include "launch.cuh"
#include "vae_math.cuh"

namespace vae::cuda {
namespace {

__device__ __forceinline__ float log_sigma_at(const float* raw, float fixed, int i) {
  return raw ? math::soft_clamp(raw[i], math::kLogSigmaMin, math::kLogSigmaMax) : fixed;
}

__global__ void gaussian_nll_kernel(const float* __restrict__ mean, const float* __restrict__ x,
                                    const float* __restrict__ raw, float fixed, float* __restrict__ nll,
                                    float* __restrict__ dmean, int d, float grad_scale) {
  const int64_t base = int64_t(blockIdx.x) * d;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    const float ls = log_sigma_at(raw, fixed, i), m = mean[base + i], t = x[base + i];
    sum += math::gaussian_nll(m, t, ls);
    if (dmean) dmean[base + i] = grad_scale * math::gaussian_nll_grad_mean(m, t, ls);
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) nll[blockIdx.x] = sum;
}

__global__ void gaussian_log_sigma_grad_kernel(const float* __restrict__ mean, const float* __restrict__ x,
                                               const float* __restrict__ raw, float* __restrict__ dlog_sigma,
                                               int rows, int d, float grad_scale) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= d) return;
  const float ls = log_sigma_at(raw, 0.0f, i);
  float g = 0.0f;
  for (int r = 0; r < rows; ++r) g += math::gaussian_nll_grad_log_sigma(mean[int64_t(r) * d + i], x[int64_t(r) * d + i], ls);
  dlog_sigma[i] = grad_scale * g * math::soft_clamp_grad(raw[i], math::kLogSigmaMin, math::kLogSigmaMax);
}

}  // namespace

void launch_gaussian_nll(const float* mean, const float* x, const float* log_sigma_raw, float fixed_log_sigma,
                         float* nll, float* dmean, float* dlog_sigma, int rows, int d, float grad_scale, cudaStream_t s) {
  require(rows >= 1 && d >= 1 && mean && x && nll, "gaussian_nll", "empty shape or null pointer");
  gaussian_nll_kernel<<<rows, kThreads, 0, s>>>(mean, x, log_sigma_raw, fixed_log_sigma, nll, dmean, d, grad_scale);
  VAE_CUDA_CHECK_LAUNCH();
  if (dlog_sigma && log_sigma_raw) {
    gaussian_log_sigma_grad_kernel<<<(d + kThreads - 1) / kThreads, kThreads, 0, s>>>(mean, x, log_sigma_raw, dlog_sigma,
                                                                                     rows, d, grad_scale);
    VAE_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace vae::cuda
