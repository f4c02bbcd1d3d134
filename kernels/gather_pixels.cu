// Gather a batch from the device-resident uint8 data set and binarise it on the fly.
//   x[r, c] = images[index[r], c] / 255, or (u < that) with u = Philox uniform at counter
//             (c/4, index[r], step, stream): a function of the image, not of its place in the batch.
// In a training step the batch's place in the permutation (row0) and the step come from the
// StepScalars record in device memory, read when the kernel runs (so a CUDA graph can replay it).
// Bytes: reads d bytes per row (+4 for the index), writes 4d. One thread per group of 4 pixels
// (one Philox block each). CPU twin: CpuBackend::gather_pixels.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launchers.hpp"
#include "launch.cuh"
#include "philox.cuh"

namespace vae::cuda {
namespace {

__global__ void gather_pixels_kernel(const uint8_t* __restrict__ images, const int32_t* __restrict__ index, int rows,
                                     int d, bool binarize, uint64_t seed, uint32_t stream, uint64_t step,
                                     const StepScalars* __restrict__ per_step, float* __restrict__ x) {
  if (per_step) {
    index += per_step->row0;
    step = per_step->philox_step;
  }
  const int groups = (d + 3) / 4;
  const int64_t n = int64_t(rows) * groups;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int r = static_cast<int>(i / groups), c0 = static_cast<int>(i % groups) * 4;
    const int64_t img = index[r];
    const uint8_t* src = images + img * d;
    float* dst = x + int64_t(r) * d;
    const Philox4 bits = binarize ? philox_block(seed, stream, static_cast<uint64_t>(img), step, c0 >> 2) : Philox4{};
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      if (c0 + lane >= d) break;
      const float p = src[c0 + lane] / 255.0f;
      dst[c0 + lane] = binarize ? (philox_uniform(bits.v[lane]) < p ? 1.0f : 0.0f) : p;
    }
  }
}

}  // namespace

void launch_gather_pixels(const uint8_t* images, const int32_t* index, int rows, int d, bool binarize, uint64_t seed,
                          uint32_t stream, uint64_t step, const StepScalars* per_step, float* x, cudaStream_t s) {
  require(rows >= 1 && d >= 1 && images && index && x, "gather_pixels", "empty shape or null pointer");
  gather_pixels_kernel<<<grid_for(int64_t(rows) * ((d + 3) / 4)), kThreads, 0, s>>>(images, index, rows, d, binarize,
                                                                                    seed, stream, step, per_step, x);
  VAE_CUDA_CHECK_LAUNCH();
}

}  // namespace vae::cuda
