// Per-channel bias of an NCHW tensor viewed as [n, c, hw] (the convolution layers' bias).
//   channel_bias_add:  y[b, ch, p] += bias[ch]        reads and writes n*c*hw floats, reads c
//   channel_bias_grad: db[ch] = sum_b sum_p dy[b, ch, p]   reads n*c*hw floats, writes c
// The gradient runs one block per channel: each thread sums a fixed stride of the channel's
// elements in order, then a fixed tree combines the threads, so the order of every sum is set by
// the shape alone (deterministic, no atomics). It is not the CPU's order, so parity has a bound.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launchers.hpp"
#include "launch.cuh"

namespace vae::cuda {
namespace {

__global__ void channel_bias_add_kernel(const float* __restrict__ bias, float* __restrict__ y, int n, int c, int hw) {
  const int64_t total = int64_t(n) * c * hw;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += bias[(i / hw) % c];
}

__global__ void channel_bias_grad_kernel(const float* __restrict__ dy, float* __restrict__ db, int n, int c, int hw) {
  __shared__ float partial[kThreads];
  const int ch = blockIdx.x;
  const int64_t per_channel = int64_t(n) * hw;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < per_channel; i += blockDim.x) {
    const int64_t b = i / hw, p = i % hw;
    sum += dy[(b * c + ch) * hw + p];
  }
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) db[ch] = partial[0];
}

}  // namespace

void launch_channel_bias_add(const float* bias, float* y, int n, int c, int hw, cudaStream_t s) {
  require(n >= 1 && c >= 1 && hw >= 1 && bias && y, "channel_bias_add", "empty shape or null pointer");
  channel_bias_add_kernel<<<grid_for(int64_t(n) * c * hw), kThreads, 0, s>>>(bias, y, n, c, hw);
  VAE_CUDA_CHECK_LAUNCH();
}

void launch_channel_bias_grad(const float* dy, float* db, int n, int c, int hw, cudaStream_t s) {
  require(n >= 1 && c >= 1 && hw >= 1 && dy && db, "channel_bias_grad", "empty shape or null pointer");
  require(c <= 65535, "channel_bias_grad", "more than 65535 channels");
  channel_bias_grad_kernel<<<c, kThreads, 0, s>>>(dy, db, n, c, hw);
  VAE_CUDA_CHECK_LAUNCH();
}

}  // namespace vae::cuda
