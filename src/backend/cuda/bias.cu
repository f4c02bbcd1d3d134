// Bias for the unfused linear path (when no cuBLASLt epilogue covers a shape).
//   bias_add:  y[r, o] += b[o]               reads rows*out + out floats, writes rows*out
//   bias_grad: db[o] = sum_r dy[r, o]        reads rows*out floats, writes out
// bias_grad runs one thread per column over the rows in order: deterministic, and coalesced
// because neighbouring threads read neighbouring columns.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launchers.hpp"
#include "launch.cuh"

namespace vae::cuda {
namespace {

__global__ void bias_add_kernel(const float* __restrict__ b, float* __restrict__ y, int rows, int out) {
  const int64_t n = int64_t(rows) * out;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += b[i % out];
}

__global__ void bias_grad_kernel(const float* __restrict__ dy, float* __restrict__ db, int rows, int out) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= out) return;
  float sum = 0.0f;
  for (int r = 0; r < rows; ++r) sum += dy[int64_t(r) * out + o];
  db[o] = sum;
}

}  // namespace

void launch_bias_add(const float* b, float* y, int rows, int out, cudaStream_t s) {
  require(rows >= 1 && out >= 1 && b && y, "bias_add", "empty shape or null pointer");
  bias_add_kernel<<<grid_for(int64_t(rows) * out), kThreads, 0, s>>>(b, y, rows, out);
  VAE_CUDA_CHECK_LAUNCH();
}

void launch_bias_grad(const float* dy, float* db, int rows, int out, cudaStream_t s) {
  require(rows >= 1 && out >= 1 && dy && db, "bias_grad", "empty shape or null pointer");
  bias_grad_kernel<<<(out + kThreads - 1) / kThreads, kThreads, 0, s>>>(dy, db, rows, out);
  VAE_CUDA_CHECK_LAUNCH();
}

}  // namespace vae::cuda
