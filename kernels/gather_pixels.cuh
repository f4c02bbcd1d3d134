// Gather a batch from the device-resident uint8 data set and binarise it on the fly.
//   x[r, c] = images[index[r], c] / 255, or (u < that) with u = Philox uniform at counter
//             (c/4, index[r], step, stream): a function of the image, not of its place in the batch,
//             so a repeated index gets the same binary image.
// In a training step the batch's place in the permutation (row0) and the step come from the
// StepScalars record in the backend's memory, read when the op runs (so a CUDA graph can replay it).
// Bytes: reads d bytes per row (+4 for the index), writes 4d. One Philox block per group of 4 pixels.
#pragma once

#include "for_each.cuh"
#include "philox.cuh"

namespace vae::ops {

// A row op with nothing to sum (for_each.cuh's run_rows): each row's groups of 4 pixels in order on
// the CPU, a block per row on CUDA. (As one item per group it cost 29% more CPU instructions than
// the hand-written row loop it replaced; as a row op, 24% more: bench/results/2026-12-06-op-shapes-cpu.md.)
struct GatherPixels {
  using Scalar = float;
  const uint8_t* images;
  const int32_t* index;
  int d;
  bool binarize;
  uint64_t seed, step;
  uint32_t stream;
  const StepScalars* per_step;  // or null
  float* x;
  int64_t items;  // groups of 4 pixels per row
  VAE_HD void operator()(int64_t r, int64_t group, float& /*acc*/) const {
    const int c0 = static_cast<int>(group) * 4;
    const int64_t img = index[permutation_offset_of(per_step) + r];
    const uint8_t* src = images + img * d;
    float* dst = x + r * d;
    const Philox4 bits = binarize ? philox_block(seed, stream, static_cast<uint64_t>(img),
                                                 philox_step_of(per_step, step), uint64_t(c0) >> 2)
                                  : Philox4{};
    for (int lane = 0; lane < 4 && c0 + lane < d; ++lane) {
      const float p = src[c0 + lane] / 255.0f;  // as torchvision's ToTensor: a division, not * (1/255)
      dst[c0 + lane] = binarize ? (philox_uniform(bits.v[lane]) < p ? 1.0f : 0.0f) : p;
    }
  }
  VAE_HD void finish(int64_t, float) const {}
};

// x[r, :] = images[index[r], :] / 255, or Bernoulli draws of it when binarize. With per_step, the
// rows are index[per_step->row0 ...] and the step is per_step->philox_step.
template <class Be>
void gather_pixels(Be& be, const uint8_t* images, const int32_t* index, int rows, int d, bool binarize, uint64_t seed,
                   uint32_t stream, uint64_t step, const StepScalars* per_step, float* x) {
  check(rows >= 1 && d >= 1 && images && index && x, "gather_pixels", "empty shape or null pointer");
  run_rows(be, GatherPixels{images, index, d, binarize, seed, step, stream, per_step, x, (d + 3) / 4}, rows);
}

}  // namespace vae::ops
