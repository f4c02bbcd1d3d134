// Element-wise activations, forward and backward.
//   forward:  y[i] = act(x[i])             reads n floats, writes n floats  (8n bytes)
//   backward: dx[i] = dy[i] * act'(x[i])   reads 2n floats, writes n floats (12n bytes)
// act is one of vae_math.cuh's (ReLU, LeakyReLU, Tanh, SiLU); the CPU twin is cpu_ops.hpp.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launchers.hpp"
#include "launch.cuh"
#include "vae_math.cuh"

namespace vae::cuda {
namespace {

__global__ void activation_forward_kernel(math::Act act, float slope, const float* __restrict__ x, float* __restrict__ y,
                                          int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = math::activation(act, x[i], slope);
}

__global__ void activation_backward_kernel(math::Act act, float slope, const float* __restrict__ x,
                                           const float* __restrict__ dy, float* __restrict__ dx, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = dy[i] * math::activation_grad(act, x[i], slope);
}

}  // namespace

void launch_activation_forward(math::Act act, float slope, const float* x, float* y, int64_t n, cudaStream_t s) {
  require(n >= 0 && (n == 0 || (x && y)), "activation_forward", "null pointer or negative size");
  if (n == 0) return;
  activation_forward_kernel<<<grid_for(n), kThreads, 0, s>>>(act, slope, x, y, n);
  VAE_CUDA_CHECK_LAUNCH();
}

void launch_activation_backward(math::Act act, float slope, const float* x, const float* dy, float* dx, int64_t n,
                                cudaStream_t s) {
  require(n >= 0 && (n == 0 || (x && dy && dx)), "activation_backward", "null pointer or negative size");
  if (n == 0) return;
  activation_backward_kernel<<<grid_for(n), kThreads, 0, s>>>(act, slope, x, dy, dx, n);
  VAE_CUDA_CHECK_LAUNCH();
}

}  // namespace vae::cuda
