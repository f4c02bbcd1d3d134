// Philox4x32-10 counter-based random numbers (Salmon et al., SC'11), shared by host and device.
//
// A draw is a pure function of (key, counter): no state, any order, any thread. The engine keys
// Philox by the user's seed and counts by (column group, row, step, stream), so the CPU and CUDA
// backends produce the same epsilon for the same element, and backward recomputes epsilon instead
// of storing it. Verified against Random123's published known-answer vectors (tests/test_philox.cpp).
#pragma once

#include <cstdint>

#include "hd.cuh"

namespace vae {

struct Philox4 {
  uint32_t v[4];
};

// Independent streams share a seed without sharing numbers: the stream id is counter word 3.
enum RngStream : uint32_t {
  kStreamInit = 1,           // parameter initialisation (row = tensor index)
  kStreamShuffle = 2,        // epoch permutation (row = epoch)
  kStreamBinarize = 3,       // dynamic binarisation of training pixels (row = image index, step = step)
  kStreamLatent = 4,         // reparameterisation noise (row = batch row, step = step)
  kStreamPrior = 5,          // sampling z from the prior
  kStreamImportance = 6,     // importance samples (row = test index, step = sample index)
  kStreamTestBinarize = 7,   // the fixed binarisation of the test set (row = image index, step = 0)
  kStreamPriorComponent = 8, // a mixture prior's component choice when sampling (row = sample)
  kStreamPixels = 9,         // pixels drawn from the likelihood (row = sample, column = value or position)
  // A hierarchy's levels below the top (level i = 1, 2, ... counted down from the top, at most
  // kMaxLevels - 1): the same roles as kStreamLatent, kStreamImportance and kStreamPrior, one
  // stream per level, so no level shares a draw with another or with the top.
  kStreamLatentLevel0 = 16,      // + i
  kStreamImportanceLevel0 = 48,  // + i
  kStreamPriorLevel0 = 80,       // + i
};
constexpr int kMaxLevels = 16;

VAE_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

VAE_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kMul0, ctr.v[0], hi0, lo0);
    philox_mulhilo(kMul1, ctr.v[2], hi1, lo1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ key0, lo1, hi0 ^ ctr.v[3] ^ key1, lo0}};
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return ctr;
}

// The engine's counter layout: word 0 = column / 4, word 1 = row, word 2 = step, word 3 = stream.
VAE_HD Philox4 philox_block(uint64_t seed, uint32_t stream, uint64_t row, uint64_t step, uint64_t col4) {
  Philox4 ctr{{static_cast<uint32_t>(col4), static_cast<uint32_t>(row), static_cast<uint32_t>(step),
               stream}};
  return philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Uniform in (0, 1): 24 random bits and half a step, so logarithms of u and 1 - u are finite.
VAE_HD float philox_open_uniform(uint32_t bits) { return (static_cast<float>(bits >> 8) + 0.5f) * (1.0f / 16777216.0f); }
// Word `lane` (0..3) of a block without a run-time index into it (which would put it in local memory).
VAE_HD uint32_t philox_word(const Philox4& r, int lane) {
  return lane == 0 ? r.v[0] : lane == 1 ? r.v[1] : lane == 2 ? r.v[2] : r.v[3];
}

// Uniform in [0, 1) with 24 random bits (exactly representable in float).
VAE_HD float philox_uniform(uint32_t bits) { return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f); }

// Box-Muller on words (a, b): out0 = r cos(t), out1 = r sin(t), r = sqrt(-2 log u1), t = 2 pi u2.
// u1 is in (0, 1] so the logarithm is finite.
VAE_HD void philox_box_muller(uint32_t a, uint32_t b, float& out0, float& out1) {
  const float u1 = static_cast<float>((a >> 8) + 1u) * (1.0f / 16777216.0f);
  const float u2 = philox_uniform(b);
  const float radius = hd::sqrt(-2.0f * hd::log(u1));
  const float angle = 6.283185307179586f * u2;
  out0 = radius * hd::cos(angle);
  out1 = radius * hd::sin(angle);
}

// The four standard normals of a block: lanes 0-1 from words 0-1, lanes 2-3 from words 2-3.
// Constant indices only, so a kernel keeps the block in registers (a run-time index into r.v
// would put it in local memory). ptxas still reports a 32-byte stack frame for kernels that call
// this: it is sinf/cosf's large-argument reduction buffer (28 bytes), never used for angles in
// [0, 2 pi). The fast intrinsics would avoid it but move the GPU's noise away from the CPU's.
VAE_HD void philox_normals(const Philox4& r, float out[4]) {
  philox_box_muller(r.v[0], r.v[1], out[0], out[1]);
  philox_box_muller(r.v[2], r.v[3], out[2], out[3]);
}

// The normal for one lane (0..3) of a block: the same value philox_normals gives.
VAE_HD float philox_normal(const Philox4& r, int lane) {
  float out[4];
  philox_normals(r, out);
  return out[lane & 3];
}

// Calls f(col, eps) for columns [0, cols) of one row: the normal for element (row, col) is lane
// col % 4 of the block at counter (col / 4, row, step, stream), one block per 4 columns. With draw
// false every eps is 0 and nothing is drawn (the posterior mean). Lanes are constant indices after
// unrolling, so a kernel keeps the block in registers.
template <class F>
VAE_HD void philox_row_normals(uint64_t seed, uint32_t stream, uint64_t row, uint64_t step, int cols, bool draw, F&& f) {
  for (int c0 = 0; c0 < cols; c0 += 4) {
    float eps[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (draw) philox_normals(philox_block(seed, stream, row, step, static_cast<uint64_t>(c0) >> 2), eps);
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int lane = 0; lane < 4; ++lane) {
      if (c0 + lane >= cols) break;
      f(c0 + lane, eps[lane]);
    }
  }
}

}  // namespace vae
