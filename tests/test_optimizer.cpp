// Adam and AdamW against steps computed by hand (textbook formulas in double, written out below),
// clipping, schedules and the epoch permutation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "backend/backend.hpp"
#include "elementwise.cuh"
#include "train/schedule.hpp"
#include "vae/data.hpp"

namespace vae {
namespace {

// One CPU Adam step with a's hyperparameters, through the step record as every step takes them.
void adam_step(Backend& be, float* p, const float* g, float* m, float* v, int64_t n, const AdamArgs& a, float* norm,
               const StepGuard& guard) {
  StepScalars record;
  record.adam = adam_coefficients(a);
  be.adam_step(p, g, m, v, n, a.clip_norm, &record, norm, guard);
}

// p0 = 1 and gradients 0.5, -0.25, 0.125 with lr 0.1, betas (0.9, 0.999), eps 1e-8. Expected
// parameters after each step, from m_t = b1 m + (1-b1) g, v_t = b2 v + (1-b2) g^2,
// p -= lr * (m_t/(1-b1^t)) / (sqrt(v_t/(1-b2^t)) + eps); L2 decay adds wd*p to g; AdamW first
// does p -= lr*wd*p.
struct AdamCase {
  float weight_decay;
  bool decoupled;
  double want[3];
};
const AdamCase kAdamCases[] = {
    {0.0f, false, {0.900000002, 0.8733662987078463, 0.8393233849166541}},
    {0.1f, false, {0.9000000016666666, 0.8544413674617625, 0.8005694720858495}},
    {0.1f, true, {0.890000002, 0.8544662986878463, 0.8118787219097756}},
};

TEST(Adam, MatchesHandComputedSteps) {
  auto be = make_cpu_backend();
  for (const auto& c : kAdamCases) {
    // Three copies of the same parameter in a buffer of odd length exercise the flat loop.
    std::vector<float> p(3, 1.0f), m(3, 0.0f), v(3, 0.0f);
    const float grads[3] = {0.5f, -0.25f, 0.125f};
    for (int t = 0; t < 3; ++t) {
      std::vector<float> g(3, grads[t]);
      AdamArgs a;
      a.lr = 0.1f;
      a.weight_decay = c.weight_decay;
      a.decoupled = c.decoupled;
      a.step = t + 1;
      float norm = 0;
      adam_step(*be, p.data(), g.data(), m.data(), v.data(), 3, a, &norm, {});
      EXPECT_NEAR(norm, std::sqrt(3.0) * std::abs(grads[t]), 1e-6);
      for (float x : p) EXPECT_NEAR(x, c.want[t], 2e-7) << "step " << t + 1 << " wd " << c.weight_decay << " decoupled " << c.decoupled;
    }
  }
}

// The divergence guard: a step whose loss or gradient is not finite changes nothing but the count,
// and its loss stays out of the epoch's sums; a finite step updates exactly as without the guard.
TEST(Adam, GuardSkipsNonFiniteSteps) {
  auto be = make_cpu_backend();
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  struct Case {
    float loss, g1;
    bool skip;
  };
  for (const Case c : {Case{1.0f, 0.5f, false}, Case{nan, 0.5f, true}, Case{inf, 0.5f, true}, Case{1.0f, nan, true},
                       Case{1.0f, -inf, true}, Case{-inf, 0.5f, true}}) {
    std::vector<float> p{1, 2}, g{0.25f, c.g1}, m{0.1f, 0.2f}, v{0.01f, 0.02f};
    std::vector<float> p_ref = p, m_ref = m, v_ref = v;
    float skipped = 0, norm = 0, loss = c.loss;
    AdamArgs a;
    a.step = 3;
    adam_step(*be, p.data(), g.data(), m.data(), v.data(), 2, a, &norm, StepGuard{&loss, &skipped});
    if (c.skip) {
      EXPECT_EQ(skipped, 1.0f);
      EXPECT_EQ(p, p_ref);
      EXPECT_EQ(m, m_ref);
      EXPECT_EQ(v, v_ref);
    } else {
      EXPECT_EQ(skipped, 0.0f);
      adam_step(*be, p_ref.data(), g.data(), m_ref.data(), v_ref.data(), 2, a, &norm, {});
      EXPECT_EQ(p, p_ref);
      EXPECT_EQ(m, m_ref);
    }
    std::vector<float> sums{10, 20, 30}, step_loss{c.loss, 1, 2};
    ops::accumulate_scaled(*be, step_loss.data(), 3, 2.0f, sums.data());
    EXPECT_EQ(sums, std::isfinite(c.loss) ? (std::vector<float>{10 + 2 * c.loss, 22, 34}) : (std::vector<float>{10, 20, 30}));
  }
}

TEST(Adam, GlobalNormClipping) {
  auto be = make_cpu_backend();
  // Gradient (3, 4): norm 5, clipped to norm 1 -> (0.6, 0.8). With Adam's first step the update is
  // lr * sign(g) whatever the scale, so compare the moments instead.
  std::vector<float> p{0, 0}, g{3, 4}, m{0, 0}, v{0, 0};
  AdamArgs a;
  a.clip_norm = 1.0f;
  float norm = 0;
  adam_step(*be, p.data(), g.data(), m.data(), v.data(), 2, a, &norm, {});
  EXPECT_NEAR(norm, 5.0f, 1e-6);
  const double s = 1.0 / (5.0 + 1e-6);
  // Bounds are float rounding of the coefficients (1 - 0.999f is 1.3e-5 away from 0.001).
  EXPECT_NEAR(m[0], 0.1 * 3 * s, 1e-7);
  EXPECT_NEAR(m[1], 0.1 * 4 * s, 1e-7);
  EXPECT_NEAR(v[1], 0.001 * 16 * s * s, 2e-5 * 0.001 * 16 * s * s);
  // Below the threshold nothing is scaled.
  std::vector<float> m2{0, 0}, v2{0, 0};
  a.clip_norm = 10.0f;
  adam_step(*be, p.data(), g.data(), m2.data(), v2.data(), 2, a, &norm, {});
  EXPECT_FLOAT_EQ(m2[1], 0.4f);
}

TEST(Schedule, CosineAndWarmup) {
  TrainConfig c;
  c.lr = 1.0f;
  c.min_lr = 0.1f;
  c.schedule = LrSchedule::Cosine;
  // lr and min_lr are floats in the config: 1e-7 is their rounding, not slack.
  EXPECT_NEAR(learning_rate(c, 0, 101), 1.0, 1e-7);
  EXPECT_NEAR(learning_rate(c, 50, 101), 0.55, 1e-7);
  EXPECT_NEAR(learning_rate(c, 100, 101), 0.1, 1e-7);
  c.schedule = LrSchedule::Constant;
  EXPECT_EQ(learning_rate(c, 77, 101), 1.0);
  c.objective.beta = 2.0f;
  c.objective.warmup_epochs = 2;
  EXPECT_NEAR(kl_weight(c, 0, 10), 0.1, 1e-12);
  EXPECT_NEAR(kl_weight(c, 9, 10), 1.0, 1e-12);
  EXPECT_NEAR(kl_weight(c, 19, 10), 2.0, 1e-12);
  EXPECT_NEAR(kl_weight(c, 500, 10), 2.0, 1e-12);
  // vae_vampprior's schedule: epoch e (1-based) holds beta * e / warmup_epochs throughout.
  c.objective.warmup = WarmupSchedule::LinearEpochs;
  c.objective.warmup_epochs = 4;
  EXPECT_NEAR(kl_weight(c, 0, 10), 0.5, 1e-12);
  EXPECT_NEAR(kl_weight(c, 9, 10), 0.5, 1e-12);
  EXPECT_NEAR(kl_weight(c, 10, 10), 1.0, 1e-12);
  EXPECT_NEAR(kl_weight(c, 39, 10), 2.0, 1e-12);
  EXPECT_NEAR(kl_weight(c, 400, 10), 2.0, 1e-12);
  c.objective.warmup = WarmupSchedule::Linear;
  c.objective.warmup_epochs = 0;
  EXPECT_EQ(kl_weight(c, 0, 10), 2.0);
}

TEST(Schedule, EpochPermutationIsSeededPermutation) {
  const auto a = epoch_permutation(1001, 5, 1);
  std::vector<int32_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int32_t> iota(1001);
  std::iota(iota.begin(), iota.end(), 0);
  EXPECT_EQ(sorted, iota);
  EXPECT_EQ(a, epoch_permutation(1001, 5, 1));
  EXPECT_NE(a, epoch_permutation(1001, 5, 2));
  EXPECT_NE(a, epoch_permutation(1001, 6, 1));
  EXPECT_NE(a, iota);
}

}  // namespace
}  // namespace vae
