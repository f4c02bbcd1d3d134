// Small element-wise operations for sampling and display.
//   sigmoid:     y = 1 / (1 + e^-x)               (stable form, vae_math.cuh)       8n bytes
//   clamp01:     y = min(max(x, 0), 1)                                               8n bytes
//   normal_fill: z[r, c] = scale * Philox normal at (c/4, r, step, stream)           4n bytes
//   fill:        x = value                                                           4n bytes
// CPU twins: the CpuBackend methods of the same names.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launchers.hpp"
#include "launch.cuh"
#include "philox.cuh"
#include "vae_math.cuh"

namespace vae::cuda {
namespace {

#define VAE_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

// sigmoid and clamp01 run in place (x == y) when decoder outputs become images, so x and y are
// not __restrict__: the promise would be false, and it lets the compiler read x through the
// non-coherent cache.
__global__ void sigmoid_kernel(const float* x, float* y, int64_t n) {
  VAE_GRID_STRIDE(i, n) y[i] = math::sigmoid(x[i]);
}

__global__ void clamp01_kernel(const float* x, float* y, int64_t n) {
  VAE_GRID_STRIDE(i, n) y[i] = fminf(fmaxf(x[i], 0.0f), 1.0f);
}

__global__ void fill_kernel(float* __restrict__ x, int64_t n, float value) {
  VAE_GRID_STRIDE(i, n) x[i] = value;
}

__global__ void normal_fill_kernel(float* __restrict__ z, int rows, int cols, float scale, uint64_t seed,
                                   uint32_t stream, uint64_t step) {
  const int groups = (cols + 3) / 4;
  VAE_GRID_STRIDE(i, int64_t(rows) * groups) {
    const int r = static_cast<int>(i / groups), c0 = static_cast<int>(i % groups) * 4;
    float eps[4];
    philox_normals(philox_block(seed, stream, r, step, c0 >> 2), eps);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane)
      if (c0 + lane < cols) z[int64_t(r) * cols + c0 + lane] = scale * eps[lane];
  }
}

}  // namespace

void launch_sigmoid(const float* x, float* y, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  require(n > 0 && x && y, "sigmoid", "null pointer or negative size");
  sigmoid_kernel<<<grid_for(n), kThreads, 0, s>>>(x, y, n);
  VAE_CUDA_CHECK_LAUNCH();
}

void launch_clamp01(const float* x, float* y, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  require(n > 0 && x && y, "clamp01", "null pointer or negative size");
  clamp01_kernel<<<grid_for(n), kThreads, 0, s>>>(x, y, n);
  VAE_CUDA_CHECK_LAUNCH();
}

void launch_fill(float* x, int64_t n, float value, cudaStream_t s) {
  if (n == 0) return;
  require(n > 0 && x, "fill", "null pointer or negative size");
  fill_kernel<<<grid_for(n), kThreads, 0, s>>>(x, n, value);
  VAE_CUDA_CHECK_LAUNCH();
}

void launch_normal_fill(float* z, int rows, int cols, float scale, uint64_t seed, uint32_t stream, uint64_t step,
                        cudaStream_t s) {
  require(rows >= 1 && cols >= 1 && z, "normal_fill", "empty shape or null pointer");
  normal_fill_kernel<<<grid_for(int64_t(rows) * ((cols + 3) / 4)), kThreads, 0, s>>>(z, rows, cols, scale, seed, stream,
                                                                                      step);
  VAE_CUDA_CHECK_LAUNCH();
}

}  // namespace vae::cuda
