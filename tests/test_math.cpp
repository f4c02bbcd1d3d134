// The shared element-wise formulas: stability at extreme inputs, and the closed-form KL.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <limits>

#include "backend/backend.hpp"
#include "backend/cpu/cpu_ops.hpp"
#include "backend/cpu/flush_denormals.hpp"
#include "gather_pixels.cuh"
#include "vae_math.cuh"

namespace vae {
namespace {

TEST(Math, BernoulliNllIsExactAndFiniteAtExtremeLogits) {
  // softplus(100) = 100 + log1p(e^-100): exactly 100 in float and double.
  EXPECT_EQ(math::bernoulli_nll(100.0f, 1.0f), 0.0f);
  EXPECT_EQ(math::bernoulli_nll(100.0f, 0.0f), 100.0f);
  // softplus(-100) = e^-100 ~ 3.7e-44, below the smallest normal float: 0, as flush-to-zero gives.
  EXPECT_GE(math::bernoulli_nll(-100.0f, 0.0f), 0.0f);
  EXPECT_LT(math::bernoulli_nll(-100.0f, 0.0f), 1e-43f);
  EXPECT_EQ(math::bernoulli_nll(-100.0f, 1.0f), 100.0f);
  EXPECT_EQ(math::bernoulli_nll_grad(100.0f, 1.0f), 0.0f);
  EXPECT_EQ(math::bernoulli_nll_grad(100.0f, 0.0f), 1.0f);
  EXPECT_LT(math::bernoulli_nll_grad(-100.0f, 0.0f), 1e-43f);
  EXPECT_EQ(math::bernoulli_nll_grad(-100.0f, 1.0f), -1.0f);
  for (float l : {-1e30f, -1e4f, 1e4f, 1e30f})
    for (float x : {0.0f, 0.5f, 1.0f}) {
      EXPECT_TRUE(std::isfinite(math::bernoulli_nll(l, x))) << l << " " << x;
      EXPECT_TRUE(std::isfinite(math::bernoulli_nll_grad(l, x))) << l << " " << x;
    }
  // Against the textbook form where that is accurate.
  for (double l : {-5.0, -0.3, 0.0, 2.0, 7.0}) {
    const double p = 1.0 / (1.0 + std::exp(-l));
    EXPECT_NEAR(math::bernoulli_nll(l, 1.0), -std::log(p), 1e-12);
    EXPECT_NEAR(math::bernoulli_nll(l, 0.0), -std::log1p(-p), 1e-12);
  }
}

// The Bernoulli's log1p(e) for e in [0, 1] and e^x for x <= 0 in float, written without libm calls
// so the CPU vectorizes them: log1p_unit within 4 ulps of log1p over [0, 1] (every binade down to
// 2^-126), exp_nonpositive within 2 ulps of e^x down to the smallest normal float and 0 below it,
// NaN in NaN out; the fused Bernoulli value-and-gradient equals the two functions bit for bit.
// log1p through log with Goldberg's correction (softplus): within 4 ulps of log1p over [0, 1].
TEST(Math, Log1pFromLogIsWithinUlps) {
  for (int i = 0; i <= 200000; ++i) {
    const float e = i == 0 ? 0.0f : std::ldexp(1.0f + float(i % 1000) / 1000.0f, -(i / 1000) % 127);
    if (e > 1.0f) continue;
    const float got = math::log1p_nonnegative(e), want = std::log1p(e);
    EXPECT_LE(std::fabs(got - want), 4 * std::fabs(std::nextafter(want, 2.0f) - want) + 1e-45f) << e;
  }
}

TEST(Math, VectorizableLog1pAndExpAreWithinUlpsAndFusedBernoulliIsExact) {
  const auto ulp = [](float want) { return std::fabs(std::nextafter(want, 2.0f * want + 1.0f) - want); };
  for (int i = 0; i <= 200000; ++i) {
    const float e = i == 0 ? 0.0f : std::ldexp(1.0f + float(i % 1000) / 1000.0f, -(i / 1000) % 127);
    if (e > 1.0f) continue;
    const float got = math::log1p_unit(e);
    const float want = static_cast<float>(std::log1p(double(e)));
    EXPECT_LE(std::fabs(got - want), 4 * ulp(want) + 1e-45f) << e;
  }
  EXPECT_EQ(math::log1p_unit(1.0f), std::log1p(1.0f));
  int checked = 0;
  for (float x = 0.0f; x >= -87.3f; x -= 0.000937f, ++checked) {
    const float got = hd::exp_nonpositive(x);
    const float want = static_cast<float>(std::exp(double(x)));
    ASSERT_LE(std::fabs(got - want), 2 * ulp(want)) << x;
  }
  EXPECT_GT(checked, 90000);
  EXPECT_EQ(hd::exp_nonpositive(0.0f), 1.0f);
  EXPECT_EQ(hd::exp_nonpositive(-87.4f), 0.0f);
  EXPECT_EQ(hd::exp_nonpositive(-1e30f), 0.0f);
  EXPECT_EQ(hd::exp_nonpositive(-std::numeric_limits<float>::infinity()), 0.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(hd::exp_nonpositive(nan)));
  EXPECT_TRUE(std::isnan(math::bernoulli_nll(nan, 0.0f)));
  EXPECT_TRUE(std::isnan(math::bernoulli_nll_grad(nan, 0.0f)));
  float nan_grad = 0.0f;
  EXPECT_TRUE(std::isnan(math::bernoulli_nll_with_grad(nan, 1.0f, nan_grad)));
  EXPECT_TRUE(std::isnan(nan_grad));
  for (float l : {-100.0f, -20.0f, -1.5f, -1e-3f, 0.0f, 1e-3f, 0.7f, 15.0f, 100.0f})
    for (float x : {0.0f, 0.25f, 1.0f}) {
      float grad;
      const float nll = math::bernoulli_nll_with_grad(l, x, grad);
      EXPECT_EQ(nll, math::bernoulli_nll(l, x)) << l << " " << x;
      EXPECT_EQ(grad, math::bernoulli_nll_grad(l, x)) << l << " " << x;
    }
}

TEST(Math, SoftClampIsIdentityInsideAndBoundedOutside) {
  for (double x : {-20.0, -5.0, 0.0, 3.0, 10.0})
    EXPECT_NEAR(math::soft_clamp(x, double(math::kLogvarMin), double(math::kLogvarMax)), x, 1e-4) << x;
  for (float x : {-1e30f, -1e4f, 1e4f, 1e30f}) {
    const float y = math::soft_clamp(x, math::kLogvarMin, math::kLogvarMax);
    EXPECT_GE(y, math::kLogvarMin - 1e-3f);
    EXPECT_LE(y, math::kLogvarMax + 1e-3f);
    EXPECT_TRUE(std::isfinite(std::exp(y)));
  }
}

TEST(Math, SoftplusAndSigmoidStable) {
  EXPECT_EQ(math::softplus(-1000.0f), 0.0f);
  EXPECT_EQ(math::softplus(1000.0f), 1000.0f);
  EXPECT_EQ(math::sigmoid(-1000.0f), 0.0f);
  EXPECT_EQ(math::sigmoid(1000.0f), 1.0f);
  EXPECT_NEAR(math::softplus(0.0), std::log(2.0), 1e-15);
}

// The gate's branch-free sigmoid: within 4 float ulps of the exact value over the whole float range
// that matters (and exact at the ends), the same formula in double, and NaN in, NaN out.
TEST(Math, WideSigmoidMatchesTheExactOne) {
  float worst_ulps = 0;
  for (float x = -100.0f; x <= 100.0f; x += 0.00137f) {
    const double exact = 1.0 / (1.0 + std::exp(-double(x)));
    const float got = math::sigmoid_wide(x);
    const double ulp = std::nextafter(float(exact), 2.0f) - float(exact);
    if (exact > 1e-37) worst_ulps = std::max(worst_ulps, float(std::fabs(got - exact) / ulp));
  }
  EXPECT_LE(worst_ulps, 4.0f);
  EXPECT_EQ(math::sigmoid_wide(-1000.0f), 0.0f);
  EXPECT_EQ(math::sigmoid_wide(1000.0f), 1.0f);
  EXPECT_EQ(math::sigmoid_wide(0.0f), 0.5f);
  EXPECT_TRUE(std::isnan(math::sigmoid_wide(std::nanf(""))));
  for (double x : {-30.0, -2.5, 0.0, 0.3, 7.0}) EXPECT_NEAR(math::sigmoid_wide(x), 1.0 / (1.0 + std::exp(-x)), 1e-15);
}

// KL(q || p) in closed form against a Monte-Carlo estimate E_q[log q(z) - log p(z)] with z drawn by
// the engine's own reparameterised sampler (so this also checks the noise is standard normal).
TEST(Math, GaussianKlMatchesMonteCarlo) {
  const double mus[] = {0.0, 0.7, -1.5};
  const double logvars[] = {0.0, -1.2, 0.8};
  const int n = 400000;
  for (int c = 0; c < 3; ++c) {
    const double mu = mus[c], lv = logvars[c], sigma = std::exp(0.5 * lv);
    double sum = 0, sum2 = 0;
    for (int i = 0; i < n; ++i) {
      const double eps = philox_normal(philox_block(123, kStreamLatent, i, c, 0), 0);
      const double z = mu + sigma * eps;
      const double log_q = -0.5 * eps * eps - 0.5 * lv;
      const double log_p = -0.5 * z * z;
      sum += log_q - log_p;
      sum2 += (log_q - log_p) * (log_q - log_p);
    }
    const double mean = sum / n, se = std::sqrt((sum2 / n - mean * mean) / n);
    EXPECT_NEAR(mean, math::gaussian_kl(mu, lv), 5 * se + 1e-9) << "mu " << mu << " logvar " << lv;
  }
}

// Denormals flush to zero on the calling thread and every OpenMP worker inside the scope, and the
// previous mode comes back after it.
TEST(Numerics, FlushDenormalsScopeCoversEveryWorker) {
  volatile float tiny = 1e-38f;  // normal; tiny * 1e-3 is subnormal
  const bool before = FlushDenormalsScope::active_on_this_thread();
  {
    const FlushDenormalsScope scope;
    EXPECT_TRUE(FlushDenormalsScope::active_on_this_thread());
    const int n = omp_get_max_threads();
    std::vector<int> flushed(static_cast<size_t>(n), -1);
    std::vector<float> product(static_cast<size_t>(n), -1.0f);
#pragma omp parallel num_threads(n)
    {
      const int t = omp_get_thread_num();
      flushed[static_cast<size_t>(t)] = FlushDenormalsScope::active_on_this_thread();
      product[static_cast<size_t>(t)] = tiny * 1e-3f;
    }
    for (int t = 0; t < n; ++t) {
      EXPECT_EQ(flushed[static_cast<size_t>(t)], 1) << "OpenMP thread " << t;
      EXPECT_EQ(product[static_cast<size_t>(t)], 0.0f) << "OpenMP thread " << t;
    }
  }
  EXPECT_EQ(FlushDenormalsScope::active_on_this_thread(), before);
  if (!before) EXPECT_GT(tiny * 1e-3f, 0.0f);  // subnormals are back
}

TEST(Build, BlasIsTheOpenMpBuild) {
  // 2 = OpenMP. The pthreads build's second thread pool fights ours for the cores (see CMakeLists.txt).
  EXPECT_EQ(openblas_get_parallel(), 2) << "linked OpenBLAS is not the OpenMP build; apt-get install libopenblas-openmp-dev";
}

TEST(Math, ActivationsMatchDefinitions) {
  EXPECT_EQ(math::activation(math::Act::ReLU, -2.0, 0.0), 0.0);
  EXPECT_EQ(math::activation(math::Act::LeakyReLU, -2.0, 0.1), -0.2);
  EXPECT_NEAR(math::activation(math::Act::Tanh, 0.5, 0.0), std::tanh(0.5), 1e-15);
  EXPECT_NEAR(math::activation(math::Act::SiLU, 0.5, 0.0), 0.5 / (1 + std::exp(-0.5)), 1e-15);
  EXPECT_TRUE(std::isfinite(math::activation(math::Act::SiLU, -1000.0f, 0.0f)));
}

}  // namespace
}  // namespace vae

namespace vae {
namespace {

TEST(GatherPixels, GrayscaleExactAndBinarizationUnbiasedAndKeyedByImage) {
  auto be = make_cpu_backend();
  const int d = 7, images = 3;  // 7: not a multiple of the Philox block of 4
  std::vector<uint8_t> pixels(images * d);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 37 % 256);
  const std::vector<int32_t> idx{2, 0, 2};
  std::vector<float> x(idx.size() * d, -1.0f);
  ops::gather_pixels(*be, pixels.data(), idx.data(), 3, d, false, 0, kStreamBinarize, 0, nullptr, x.data());
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < d; ++c) EXPECT_EQ(x[r * d + c], pixels[idx[r] * d + c] / 255.0f);

  // The same image index gives the same binary image wherever it sits; the frequency of ones
  // over many steps matches the grey level (bound: 5 standard errors at 20000 draws).
  std::vector<double> ones(d, 0.0);
  const int steps = 20000;
  for (int s = 0; s < steps; ++s) {
    ops::gather_pixels(*be, pixels.data(), idx.data(), 3, d, true, 9, kStreamBinarize, s, nullptr, x.data());
    for (int c = 0; c < d; ++c) {
      ASSERT_EQ(x[c], x[2 * d + c]);
      ASSERT_TRUE(x[c] == 0.0f || x[c] == 1.0f);
      ones[c] += x[c];
    }
  }
  for (int c = 0; c < d; ++c) {
    const double p = pixels[2 * d + c] / 255.0;
    EXPECT_NEAR(ones[c] / steps, p, 5 * std::sqrt(p * (1 - p) / steps) + 1e-9) << "pixel " << c;
  }
}

}  // namespace
}  // namespace vae
