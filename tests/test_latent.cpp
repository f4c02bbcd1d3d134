// The latent block's parts beyond their op-table rows: the mixture prior's density against a direct
// computation and its sampler against its own weights, the general path (posterior + prior, the
// Monte-Carlo KL) against the fused (N(0, I), analytic KL) path it must agree with in expectation and,
// for importance sampling, to rounding; the mixture model's checkpoint, configuration errors, and
// the model's whole gradient with a learned prior.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "gaussian_posterior.cuh"
#include "latent/latent_block.hpp"
#include "mog_prior.cuh"
#include "op_table.hpp"
#include "model/model_impl.hpp"
#include "model_gradient_check.hpp"
#include "standard_normal_prior.cuh"
#include "philox.cuh"
#include "test_util.hpp"
#include "vae/vae.hpp"

namespace vae {
namespace {

using test::random_vector;

// log sum_k pi_k prod_u N(z_u; m_ku, s_ku^2), written out from the definition in long double.
long double direct_mog_log_density(const std::vector<double>& logits, const std::vector<double>& means,
                                   const std::vector<double>& raw, const double* z, int K, int L) {
  long double norm = 0;
  for (int k = 0; k < K; ++k) norm += std::exp(static_cast<long double>(logits[k]));
  long double density = 0;
  for (int k = 0; k < K; ++k) {
    long double p = std::exp(static_cast<long double>(logits[k])) / norm;
    for (int u = 0; u < L; ++u) {
      const long double var = std::exp(static_cast<long double>(
          math::soft_clamp(raw[k * L + u], double(math::kLogvarMin), double(math::kLogvarMax))));
      const long double d = z[u] - means[k * L + u];
      p *= std::exp(-d * d / (2 * var)) / std::sqrt(2 * 3.14159265358979323846L * var);
    }
    density += p;
  }
  return std::log(density);
}

TEST(MixturePrior, LogDensityAndResponsibilitiesMatchTheDefinition) {
  const int rows = 6, L = 3, K = 4;
  const auto logits = random_vector<double>(K, 1, -1, 1), means = random_vector<double>(K * L, 2, -1, 1),
             raw = random_vector<double>(K * L, 3, -1.5, 1), z = random_vector<double>(rows * L, 4, -2, 2);
  std::vector<double> table(ops::mog_table_size(K, L)), resp(rows * K), out(rows, 0.5);  // out accumulates: 0.5 + log p
  optable::Ref<double> ref;
  ops::mog_log_prob(ref, ops::MogParams<double>{logits.data(), means.data(), raw.data(), K, L}, z.data(), rows, 1.0,
                    resp.data(), out.data(), table.data());
  // The same mixture with its means and log-variances in rows of a wider array (the VampPrior's
  // encoder outputs [K, 2L + 1]): the derived tables take them out of the stride.
  const int64_t stride = 2 * L + 1;
  std::vector<double> wide(K * stride, 99.0);
  for (int k = 0; k < K; ++k)
    for (int u = 0; u < L; ++u) wide[k * stride + u] = means[k * L + u], wide[k * stride + L + u] = raw[k * L + u];
  ops::MogParams<double> strided{logits.data(), wide.data(), wide.data() + L, K, L};
  strided.stride = stride;
  std::vector<double> table_s(ops::mog_table_size(K, L)), resp_s(rows * K), out_s(rows, 0.5);
  ops::mog_log_prob(ref, strided, z.data(), rows, 1.0, resp_s.data(), out_s.data(), table_s.data());
  for (int r = 0; r < rows; ++r) {
    EXPECT_NEAR(out[r] - 0.5, double(direct_mog_log_density(logits, means, raw, z.data() + r * L, K, L)), 1e-12);
    EXPECT_EQ(out_s[r], out[r]);
    EXPECT_NEAR(std::accumulate(resp.begin() + r * K, resp.begin() + (r + 1) * K, 0.0), 1.0, 1e-12);
    // Each responsibility against its definition, pi_k N(z; m_k) / p(z).
    for (int k = 0; k < K; ++k) {
      const std::vector<double> one_logit{0.0}, mk(means.begin() + k * L, means.begin() + (k + 1) * L),
          rk(raw.begin() + k * L, raw.begin() + (k + 1) * L);
      long double norm = 0;
      for (double l : logits) norm += std::exp(static_cast<long double>(l));
      const double log_pi = logits[k] - double(std::log(norm));
      const double log_nk = double(direct_mog_log_density(one_logit, mk, rk, z.data() + r * L, 1, L));
      EXPECT_NEAR(resp[r * K + k], std::exp(log_pi + log_nk - (out[r] - 0.5)), 1e-12) << r << " " << k;
    }
  }
  // The CPU backend in float (its SIMD loops) against the double reference, at a VampPrior's size.
  {
    const int R = 9, LL = 40, KK = 500;
    const auto lg = random_vector<double>(KK, 5, -1, 1), mu = random_vector<double>(KK * LL, 6, -2, 2),
               rv = random_vector<double>(KK * LL, 7, -3, 1), zz = random_vector<double>(R * LL, 8, -2.5, 2.5);
    std::vector<double> td(ops::mog_table_size(KK, LL)), respd(R * KK), outd(R, 0.0);
    ops::mog_log_prob(ref, ops::MogParams<double>{lg.data(), mu.data(), rv.data(), KK, LL}, zz.data(), R, 1.0, respd.data(),
                      outd.data(), td.data());
    const std::vector<float> lgf(lg.begin(), lg.end()), muf(mu.begin(), mu.end()), rvf(rv.begin(), rv.end()),
        zf(zz.begin(), zz.end());
    std::vector<float> tf(ops::mog_table_size(KK, LL)), respf(R * KK), outf(R, 0.0f);
    auto cpu = make_cpu_backend();
    ops::mog_log_prob(*cpu, ops::MogParams<float>{lgf.data(), muf.data(), rvf.data(), KK, LL}, zf.data(), R, 1.0f,
                      respf.data(), outf.data(), tf.data());
    for (int r = 0; r < R; ++r) {
      EXPECT_NEAR(outf[r], outd[r], 2e-6 * std::fabs(outd[r]) + 1e-5) << r;
      for (int k = 0; k < KK; ++k) EXPECT_NEAR(respf[r * KK + k], respd[r * KK + k], 1e-5) << r << " " << k;
    }
  }
  // A one-component mixture with zero mean and unit variance is N(0, I).
  const std::vector<double> l1{0.3}, m1(L, 0.0), v1(L, 0.0);
  std::vector<double> r1(rows), mix(rows, 0.0), standard(rows, 0.0), table1(ops::mog_table_size(1, L));
  ops::mog_log_prob(ref, ops::MogParams<double>{l1.data(), m1.data(), v1.data(), 1, L}, z.data(), rows, 1.0, r1.data(),
                    mix.data(), table1.data());
  ops::cpu_for_each(ops::StandardNormalLogProb<double>{z.data(), standard.data(), L, 1.0}, rows);
  for (int r = 0; r < rows; ++r) EXPECT_NEAR(mix[r], standard[r], 1e-6) << "soft_clamp(0) is 0 to within e^-20";
}

// The evaluator's table of posterior Gaussians (the mutual information's pairs): each row's
// log q0(z | x) against the density written out from the head row (mean, soft-clamped raw
// log-variance), at random heads including raw log-variances far outside the clamp.
TEST(Posterior, GaussianTermsGiveEachRowsLogDensity) {
  ModelConfig config;
  config.latent = 5;
  const Posterior q(config);
  const int rows = 7, L = config.latent;
  std::vector<float> h(static_cast<size_t>(rows) * q.head_width()), z(L);
  uint32_t state = 12345;
  auto uniform = [&] { return (state = state * 1664525u + 1013904223u) / 4294967296.0f; };
  for (float& v : h) v = 8.0f * uniform() - 4.0f;
  h[L] = -80.0f;          // row 0, unit 0: raw log-variance below the clamp's floor
  h[L + 1] = 45.0f;       // and above its ceiling
  for (float& v : z) v = 4.0f * uniform() - 2.0f;
  const Posterior::GaussianTerms terms = q.gaussian_terms(h.data(), rows);
  for (int r = 0; r < rows; ++r) {
    double want = 0;
    for (int u = 0; u < L; ++u) {
      const double mu = h[static_cast<size_t>(r) * q.head_width() + u];
      const double lv = math::soft_clamp(double(h[static_cast<size_t>(r) * q.head_width() + L + u]),
                                         double(math::kLogvarMin), double(math::kLogvarMax));
      const double var = std::exp(lv);
      want += -0.5 * std::log(2 * M_PI * var) - (z[u] - mu) * (z[u] - mu) / (2 * var);
    }
    EXPECT_NEAR(terms.log_density(r, z.data()), want, 1e-9 * std::max(1.0, std::fabs(want))) << r;
  }
}

// Samples pick component k with frequency pi_k and spread around m_k by sigma_k * temperature.
TEST(MixturePrior, SamplerFollowsItsWeightsMeansAndVariances) {
  const int n = 40000, L = 2, K = 3;
  const std::vector<float> logits{0.0f, std::log(2.0f), std::log(5.0f)};  // weights 1/8, 2/8, 5/8
  const std::vector<float> means{-6, 0, 0, 6, 6, -6}, raw{0, 0, std::log(0.25f), 0, 0, std::log(4.0f)};
  std::vector<float> z(size_t(n) * L);
  auto cpu = make_cpu_backend();
  const float temperature = 0.5f;
  std::vector<float> table(ops::mog_table_size(K, L));
  ops::mog_sample(*cpu, ops::MogParams<float>{logits.data(), means.data(), raw.data(), K, L}, n, temperature, 7, z.data(),
                  table.data());
  // The components are 6 apart with sigma <= 1: each sample's nearest mean names its component.
  std::vector<double> count(K, 0), sum0(K, 0), sq1(K, 0);
  for (int i = 0; i < n; ++i) {
    int best = 0;
    double best_d = 1e30;
    for (int k = 0; k < K; ++k) {
      const double d = std::hypot(z[i * L] - means[k * L], z[i * L + 1] - means[k * L + 1]);
      if (d < best_d) best_d = d, best = k;
    }
    count[best] += 1;
    sum0[best] += z[i * L] - means[best * L];
    sq1[best] += std::pow(z[i * L + 1] - means[best * L + 1], 2);
  }
  const double weights[] = {1.0 / 8, 2.0 / 8, 5.0 / 8}, var1[] = {1, 1, 4};
  for (int k = 0; k < K; ++k) {
    const double se = std::sqrt(weights[k] * (1 - weights[k]) / n);
    EXPECT_NEAR(count[k] / n, weights[k], 4 * se) << "component " << k;
    EXPECT_NEAR(sum0[k] / count[k], 0.0, 0.05) << "component " << k;
    const double want = var1[k] * temperature * temperature;
    EXPECT_NEAR(sq1[k] / count[k], want, 0.05 * want + 4 * want * std::sqrt(2.0 / count[k])) << "component " << k;
  }
}

// One posterior h repeated over many rows: the general path's Monte-Carlo KL (log q - log p with
// the standard normal prior) and its gradient average to the fused path's analytic KL and gradient;
// z is the same bits on both paths (the same Philox noise), and so is importance sampling's
// log p - log q to rounding.
TEST(LatentBlock, GeneralPathAgreesWithTheFusedPath) {
  const int L = 5, rows = 20000;
  ModelConfig cfg;
  cfg.latent = L;
  LatentBlock fused(cfg), general(cfg);
  general.set_fused(false);
  ASSERT_TRUE(fused.fused());
  ASSERT_FALSE(general.fused());
  auto be = make_cpu_backend();
  const auto one = random_vector<float>(2 * L, 9, -1, 1);
  std::vector<float> h(size_t(rows) * 2 * L);
  for (int r = 0; r < rows; ++r) std::copy(one.begin(), one.end(), h.begin() + size_t(r) * 2 * L);
  const LatentArgs args{rows, L, 31, 2, 0, 1.0f};
  std::vector<float> z_f(size_t(rows) * L), z_g(z_f.size()), kl_f(rows), kl_g(rows), dh_f(h.size()), dh_g(h.size());
  fused.forward(*be, args, h.data(), z_f.data(), kl_f.data(), nullptr);
  general.forward(*be, args, h.data(), z_g.data(), kl_g.data(), nullptr);
  EXPECT_EQ(z_f, z_g);
  double mean = 0, sq = 0;
  for (float k : kl_g) mean += k, sq += double(k) * k;
  mean /= rows;
  const double se = std::sqrt((sq / rows - mean * mean) / rows);
  EXPECT_NEAR(mean, kl_f[0], 4 * se) << "E[log q - log p] is the analytic KL";
  // The KL term's gradient alone (dz = 0 from the decoder), weight 1 per row: a training step's
  // backward, so its step and weight come from a record.
  std::vector<float> dz_f(z_f.size(), 0.0f), dz_g(z_f.size(), 0.0f);
  StepScalars record;
  record.philox_step = args.step;
  record.kl_grad_weight = 1.0f;
  LatentArgs step = args;
  step.per_step = &record;
  fused.backward(*be, step, h.data(), z_f.data(), dz_f.data(), nullptr, dh_f.data());
  general.backward(*be, step, h.data(), z_g.data(), dz_g.data(), nullptr, dh_g.data());
  for (int c = 0; c < 2 * L; ++c) {
    double m = 0, s2 = 0;
    for (int r = 0; r < rows; ++r) {
      const double v = dh_g[size_t(r) * 2 * L + c];
      m += v, s2 += v * v;
    }
    m /= rows;
    const double s = std::sqrt(std::max(0.0, s2 / rows - m * m) / rows);
    EXPECT_NEAR(m, dh_f[c], 4 * s + 1e-6) << "gradient column " << c;
  }
  // Importance sampling: the same z, and log p - log q to float rounding.
  const int k = 9, n = 4;
  std::vector<float> zi_f(size_t(n) * k * L), zi_g(zi_f.size()), w_f(size_t(n) * k), w_g(w_f.size());
  fused.importance_sample(*be, h.data(), n, k, 5, 3, 11, zi_f.data(), w_f.data());
  general.importance_sample(*be, h.data(), n, k, 5, 3, 11, zi_g.data(), w_g.data());
  EXPECT_EQ(zi_f, zi_g);
  test::expect_close(w_g, w_f, 1e-5, 1e-5, "log p(z) - log q(z|x)");
}

// The whole model with a learned mixture prior, in float, against float central differences of the
// loss: the prior's parameters get their gradients through the Monte-Carlo KL term.
TEST(MixturePrior, WholeModelGradientReachesThePriorParameters) {
  ModelConfig cfg;
  cfg.image_height = 3;
  cfg.image_width = 4;
  cfg.encoder.hidden = {6};
  cfg.encoder.activation = Activation::Tanh;
  cfg.latent = 3;
  cfg.prior.type = PriorType::MixtureOfGaussians;
  cfg.prior.components = 4;
  Model model(cfg);
  model.initialize(5);
  ModelImpl& m = model.impl();
  const int rows = 5;
  auto x = random_vector<float>(rows * cfg.input_dim(), 6, 0, 1);
  for (auto& v : x) v = v < 0.5f ? 0.0f : 1.0f;
  const std::vector<std::string> checked = test::expect_model_gradient_matches_differences(m, x, rows, 0.7f, 3, 2);
  const auto prior_checked = std::count_if(checked.begin(), checked.end(),
                                           [](const std::string& name) { return name.rfind("prior.", 0) == 0; });
  EXPECT_EQ(prior_checked, 9) << "three largest gradients of each of the prior's three tensors";
}

// A mixture model trains, its checkpoint carries the prior's tensors and configuration, and the
// loaded model evaluates to the same numbers.
TEST(MixturePrior, TrainsAndRoundTripsThroughItsCheckpoint) {
  SKIP_WITHOUT_FASHION_MNIST();
  const Dataset& data = test::fashion_mnist();
  ModelConfig cfg;
  cfg.encoder.hidden = {64};
  cfg.latent = 8;
  cfg.prior.type = PriorType::MixtureOfGaussians;
  cfg.prior.components = 5;
  Model model(cfg);
  model.initialize(1);
  const std::vector<float> before = model.impl().params().to_host();
  TrainConfig tc;
  tc.epochs = 2;
  tc.train_limit = 2000;
  tc.test_limit = 300;
  tc.threads = 2;
  Trainer trainer(model, tc);
  const auto history = trainer.fit(data);
  ASSERT_EQ(history.size(), 2u);
  EXPECT_LT(history[1].test.neg_elbo, history[0].test.neg_elbo);
  EXPECT_TRUE(history[1].test.kl_per_dim.empty()) << "no per-dimension KL for a mixture";
  // The prior learned: its means moved.
  bool moved = false;
  const std::vector<float> after = model.impl().params().to_host();
  for (const auto& s : model.impl().slices())
    if (s.name == "prior.means")
      for (int64_t i = 0; i < shape_numel(s.shape); ++i) moved = moved || after[s.offset + i] != before[s.offset + i];
  EXPECT_TRUE(moved);

  test::ScratchDir dir("mog_checkpoint");
  save_checkpoint(model, dir.file("m.safetensors"));
  Model loaded = load_checkpoint(dir.file("m.safetensors"));
  EXPECT_EQ(loaded.config().to_json(), model.config().to_json());
  EXPECT_EQ(loaded.impl().params().to_host(), after);
  const auto names = loaded.named_parameters();
  EXPECT_NE(std::find_if(names.begin(), names.end(), [](const auto& p) { return p.first == "prior.logvar"; }), names.end());
  EvalOptions eo;
  eo.limit = 200;
  eo.k = 10;
  const EvalResult a = evaluate(model, data.test, eo), b = evaluate(loaded, data.test, eo);
  EXPECT_EQ(a.neg_elbo, b.neg_elbo);
  EXPECT_EQ(a.iwae_nll, b.iwae_nll);
  EXPECT_LE(a.iwae_nll, a.neg_elbo + 0.5) << "the k-sample bound is at least as tight as the ELBO (up to noise)";
  // Samples come from the learned mixture and decode to images.
  const Tensor s = sample_images(loaded, 16, 1.0f, 3);
  EXPECT_EQ(s.numel(), 16 * 784);
}

TEST(MixturePrior, ConfigurationMistakesNameTheField) {
  auto fails_with = [](const std::string& json, const std::string& fragment) {
    try {
      ModelConfig::from_json(json);
      ADD_FAILURE() << json << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  fails_with(R"({"prior": {"type": "mog", "components": 0}})", "prior.components");
  fails_with(R"({"prior": {"type": "mog", "components": 5000}})", "prior.components");
  fails_with(R"({"prior": {"type": "standard_normal", "components": 3}})", "prior.components is for the mixture");
  fails_with(R"({"prior": {"type": "vampire"}})", "prior type 'vampire'");
  fails_with(R"({"prior": {"type": "mog", "weights": 3}})", "unknown key 'weights'");
  const ModelConfig ok = ModelConfig::from_json(R"({"prior": {"type": "mog", "components": 7}})");
  EXPECT_EQ(ok.prior.components, 7);
  EXPECT_EQ(ModelConfig::from_json(ok.to_json()).to_json(), ok.to_json());
  EXPECT_EQ(ok.parameter_count(), ModelConfig{}.parameter_count() + 7 + 2 * 7 * 32);
}

}  // namespace
}  // namespace vae
