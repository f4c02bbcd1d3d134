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
};

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

// Uniform in [0, 1) with 24 random bits (exactly representable in float).
VAE_HD float philox_uniform(uint32_t bits) { return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f); }

// Standard normal for element `lane` (0..3) of a block, by Box-Muller on the lane pair.
// u1 is in (0, 1] so the logarithm is finite.
VAE_HD float philox_normal(const Philox4& r, int lane) {
  const int pair = lane & 2;
  const float u1 = static_cast<float>((r.v[pair] >> 8) + 1u) * (1.0f / 16777216.0f);
  const float u2 = philox_uniform(r.v[pair + 1]);
  const float radius = hd::sqrt(-2.0f * hd::log(u1));
  const float angle = 6.283185307179586f * u2;
  return (lane & 1) ? radius * hd::sin(angle) : radius * hd::cos(angle);
}

}  // namespace vae
