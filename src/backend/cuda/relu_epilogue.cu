// The unfused twins of cuBLASLt's RELU_BIAS and DRELU_BGRAD epilogues, for the shapes and settings
// where the GEMM cannot run them itself (--no-fused-epilogues, no mask, or no algorithm for the shape).
//   relu_bias:            y[r, o] = max(0, y[r, o] + b[o])        in place on the GEMM output
//                         reads rows*out + out floats, writes rows*out
//   relu_grad_bias_grad:  g[r, o] *= (a[r, o] > 0);  db[o] = sum_r g[r, o]   in place on the GEMM output
//                         reads 2*rows*out floats, writes rows*out + out
// a is the ReLU's output, which is > 0 exactly where its input is. relu_grad_bias_grad runs one
// thread per column over the rows in order: deterministic, and coalesced because neighbouring
// threads touch neighbouring columns. CPU twins: cpu::linear_relu_forward, cpu::linear_relu_input_backward.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launchers.hpp"
#include "launch.cuh"
#include "vae_math.cuh"

namespace vae::cuda {
namespace {

// y is read and written by the same thread at the same index, so it is not __restrict__-aliased.
__global__ void relu_bias_kernel(const float* __restrict__ b, float* y, int rows, int out) {
  const int64_t n = int64_t(rows) * out;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = math::activation(math::Act::ReLU, y[i] + b[i % out], 0.0f);
}

__global__ void relu_grad_bias_grad_kernel(const float* __restrict__ a, float* g, float* __restrict__ db, int rows,
                                           int out) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= out) return;
  float sum = 0.0f;
  for (int r = 0; r < rows; ++r) {
    const int64_t i = int64_t(r) * out + o;
    const float v = g[i] * math::activation_grad(math::Act::ReLU, a[i], 0.0f);
    g[i] = v;
    sum += v;
  }
  db[o] = sum;
}

}  // namespace

void launch_relu_bias(const float* b, float* y, int rows, int out, cudaStream_t s) {
  require(rows >= 1 && out >= 1 && b && y, "relu_bias", "empty shape or null pointer");
  relu_bias_kernel<<<grid_for(int64_t(rows) * out), kThreads, 0, s>>>(b, y, rows, out);
  VAE_CUDA_CHECK_LAUNCH();
}

void launch_relu_grad_bias_grad(const float* a, float* g, float* db, int rows, int out, cudaStream_t s) {
  require(rows >= 1 && out >= 1 && a && g && db, "relu_grad_bias_grad", "empty shape or null pointer");
  relu_grad_bias_grad_kernel<<<(out + kThreads - 1) / kThreads, kThreads, 0, s>>>(a, g, db, rows, out);
  VAE_CUDA_CHECK_LAUNCH();
}

}  // namespace vae::cuda
