// Bernoulli likelihood with logits, value and gradient in one pass over the logits.
//   nll[r]        = sum_i softplus(l[r,i]) - x[r,i] * l[r,i]        [rows]
//   dlogits[r, i] = grad_scale * (sigmoid(l[r,i]) - x[r,i])          [rows, d]  (skipped when null)
// Exact and finite at any logit (vae_math.cuh). Bytes: reads 8d, writes 4d + 4 per row.
// One block per row, a fixed-order block sum: deterministic. CPU twin: cpu::bernoulli_nll.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launchers.hpp"
#include "block_reduce.cuh"
#include "launch.cuh"
#include "vae_math.cuh"

namespace vae::cuda {
namespace {

__global__ void bernoulli_nll_kernel(const float* __restrict__ logits, const float* __restrict__ x,
                                     float* __restrict__ nll, float* __restrict__ dlogits, int d, float grad_scale) {
  const int64_t base = int64_t(blockIdx.x) * d;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    const float l = logits[base + i], t = x[base + i];
    if (dlogits) {
      float grad;
      sum += math::bernoulli_nll_with_grad(l, t, grad);
      dlogits[base + i] = grad_scale * grad;
    } else {
      sum += math::bernoulli_nll(l, t);
    }
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) nll[blockIdx.x] = sum;
}

}  // namespace

void launch_bernoulli_nll(const float* logits, const float* x, float* nll, float* dlogits, int rows, int d,
                          float grad_scale, cudaStream_t s) {
  require(rows >= 1 && d >= 1 && logits && x && nll, "bernoulli_nll", "empty shape or null pointer");
  bernoulli_nll_kernel<<<rows, kThreads, 0, s>>>(logits, x, nll, dlogits, d, grad_scale);
  VAE_CUDA_CHECK_LAUNCH();
}

}  // namespace vae::cuda
