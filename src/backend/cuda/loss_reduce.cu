// The loss and its parts from per-sample terms, kept on the device (no host synchronisation).
//   loss_reduce:      out = [mean(nll + beta*kl), mean(nll), mean(kl)]     reads 8 bytes per row, writes 12
// beta is read from the step's StepScalars record when the kernel runs (step_record.hpp).
// One block, double accumulation, fixed-order tree: deterministic. CPU twin: CpuBackend::loss_reduce.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launchers.hpp"
#include "block_reduce.cuh"
#include "launch.cuh"

namespace vae::cuda {
namespace {

__global__ void loss_reduce_kernel(const float* __restrict__ nll, const float* __restrict__ kl, int rows,
                                   const StepScalars* __restrict__ step, float* __restrict__ out) {
  double sn = 0, sk = 0;
  for (int r = threadIdx.x; r < rows; r += blockDim.x) {
    sn += nll[r];
    sk += kl[r];
  }
  sn = block_sum(sn);
  sk = block_sum(sk);
  if (threadIdx.x == 0) {
    const float beta = step->beta;
    out[0] = static_cast<float>((sn + double(beta) * sk) / rows);
    out[1] = static_cast<float>(sn / rows);
    out[2] = static_cast<float>(sk / rows);
  }
}

}  // namespace

void launch_loss_reduce(const float* nll, const float* kl, int rows, const StepScalars* step, float* out, cudaStream_t s) {
  require(rows >= 1 && nll && kl && step && out, "loss_reduce", "empty shape or null pointer");
  loss_reduce_kernel<<<1, kThreads, 0, s>>>(nll, kl, rows, step, out);
  VAE_CUDA_CHECK_LAUNCH();
}


}  // namespace vae::cuda
