// The loss and its parts from per-sample terms, kept on the device (no host synchronisation).
//   loss_reduce:      out = [mean(nll + beta*kl), mean(nll), mean(kl)]     reads 8 bytes per row, writes 12
// beta is read from the step's StepScalars record when one is given (a replayed graph's step).
// One block, double accumulation, fixed-order tree: deterministic. CPU twin: CpuBackend::loss_reduce.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launchers.hpp"
#include "block_reduce.cuh"
#include "launch.cuh"

namespace vae::cuda {
namespace {

__global__ void loss_reduce_kernel(const float* __restrict__ nll, const float* __restrict__ kl, int rows, float beta,
                                   const StepScalars* __restrict__ per_step, float* __restrict__ out) {
  double sn = 0, sk = 0;
  for (int r = threadIdx.x; r < rows; r += blockDim.x) {
    sn += nll[r];
    sk += kl[r];
  }
  sn = block_sum(sn);
  sk = block_sum(sk);
  if (threadIdx.x == 0) {
    if (per_step) beta = per_step->beta;
    out[0] = static_cast<float>((sn + double(beta) * sk) / rows);
    out[1] = static_cast<float>(sn / rows);
    out[2] = static_cast<float>(sk / rows);
  }
}

}  // namespace

void launch_loss_reduce(const float* nll, const float* kl, int rows, float beta, const StepScalars* per_step, float* out,
                        cudaStream_t s) {
  require(rows >= 1 && nll && kl && out, "loss_reduce", "empty shape or null pointer");
  loss_reduce_kernel<<<1, kThreads, 0, s>>>(nll, kl, rows, beta, per_step, out);
  VAE_CUDA_CHECK_LAUNCH();
}


}  // namespace vae::cuda
