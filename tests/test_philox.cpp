#include <gtest/gtest.h>

#include <cmath>

#include "philox.cuh"

namespace vae {
namespace {

// Random123's published known-answer vectors for Philox4x32-10 (its tests/kat_vectors).
TEST(Philox, KnownAnswerVectors) {
  struct Case {
    Philox4 ctr;
    uint32_t k0, k1;
    Philox4 want;
  };
  const Case cases[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu,
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u,
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const auto& c : cases) {
    const Philox4 got = philox4x32_10(c.ctr, c.k0, c.k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got.v[i], c.want.v[i]) << "word " << i;
  }
}

TEST(Philox, SeedSplitsIntoBothKeyWords) {
  // The 64-bit seed must reach both key words: seeds differing only in the high half differ.
  const Philox4 a = philox_block(1, kStreamLatent, 0, 0, 0);
  const Philox4 b = philox_block(1 | (uint64_t(1) << 32), kStreamLatent, 0, 0, 0);
  EXPECT_NE(a.v[0], b.v[0]);
}

TEST(Philox, UniformAndNormalMoments) {
  const int n = 200000;
  double su = 0, su2 = 0, sn = 0, sn2 = 0, sn4 = 0;
  float umin = 1, umax = 0;
  for (int i = 0; i < n / 4; ++i) {
    const Philox4 r = philox_block(42, kStreamPrior, i, 7, 0);
    for (int lane = 0; lane < 4; ++lane) {
      const float u = philox_uniform(r.v[lane]);
      umin = std::min(umin, u);
      umax = std::max(umax, u);
      su += u;
      su2 += double(u) * u;
      const double z = philox_normal(r, lane);
      ASSERT_TRUE(std::isfinite(z));
      sn += z;
      sn2 += z * z;
      sn4 += z * z * z * z;
    }
  }
  EXPECT_GE(umin, 0.0f);
  EXPECT_LT(umax, 1.0f);
  // Bounds are about 5 standard errors of each estimate at n = 200000.
  EXPECT_NEAR(su / n, 0.5, 0.004);
  EXPECT_NEAR(su2 / n - (su / n) * (su / n), 1.0 / 12.0, 0.002);
  EXPECT_NEAR(sn / n, 0.0, 0.012);
  EXPECT_NEAR(sn2 / n, 1.0, 0.016);
  EXPECT_NEAR(sn4 / n, 3.0, 0.08);  // kurtosis of a normal
}

}  // namespace
}  // namespace vae
