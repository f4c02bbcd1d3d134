// The latent toolkit's objectives, regularisers and the VampPrior at the level of the whole model:
// the importance-weighted bound with one sample against the ELBO with its Monte-Carlo KL (to
// rounding), its gradient and those of free bits, capacity and the VampPrior against central
// differences of the loss, the doubly-reparameterised estimator against IWAE's (same decoder
// gradient; the same encoder gradient in expectation, with less variance), the warm-up and
// capacity schedules, the mutual-information diagnostic, and configuration mistakes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "model/model_impl.hpp"
#include "model_gradient_check.hpp"
#include "test_util.hpp"
#include "train/schedule.hpp"
#include "vae/vae.hpp"

namespace vae {
namespace {

using test::random_vector;

ModelConfig tiny(PriorType prior = PriorType::StandardNormal) {
  ModelConfig cfg;
  cfg.image_height = 3;
  cfg.image_width = 4;
  cfg.encoder.hidden = {6};
  cfg.encoder.activation = Activation::Tanh;
  cfg.latent = 4;
  cfg.prior.type = prior;
  if (prior != PriorType::StandardNormal) cfg.prior.components = 3;
  return cfg;
}

std::vector<float> binary_images(int rows, int d, uint64_t seed) {
  auto x = random_vector<float>(static_cast<size_t>(rows) * d, seed, 0, 1);
  for (auto& v : x) v = v < 0.5f ? 0.0f : 1.0f;
  return x;
}

ObjectiveConfig iwae(int k, bool dreg = false) {
  ObjectiveConfig o;
  o.type = dreg ? ObjectiveType::IwaeDreg : ObjectiveType::Iwae;
  o.k = k;
  return o;
}

double max_relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])) / (1e-6 + std::abs(double(b[i]))));
  return worst;
}

// IWAE with k = 1 is the ELBO with the Monte-Carlo KL log q - log p: the same noise (the bound's
// sample j is drawn at step * k + j), the same loss and the same gradient, to rounding.
TEST(Objectives, IwaeWithOneSampleIsTheElboWithItsMonteCarloKl) {
  for (PriorType prior : {PriorType::StandardNormal, PriorType::MixtureOfGaussians, PriorType::Vamp}) {
    SCOPED_TRACE(to_string(prior));
    Model elbo(tiny(prior)), bound(tiny(prior));
    elbo.initialize(3);
    bound.initialize(3);
    elbo.impl().latent_block.set_fused(false);
    bound.impl().set_objective(iwae(1));
    const int rows = 6;
    const auto x = binary_images(rows, elbo.impl().input_dim(), 8);
    test::forward_backward_at(elbo.impl(), x.data(), rows, 1.0f, 5, 7);
    test::forward_backward_at(bound.impl(), x.data(), rows, 1.0f, 5, 7);
    const auto le = elbo.impl().loss().to_host(), lb = bound.impl().loss().to_host();
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(lb[i], le[i], 1e-5 * std::abs(le[i])) << "loss part " << i;
    EXPECT_LT(max_relative_difference(bound.impl().grads().to_host(), elbo.impl().grads().to_host()), 1e-4);
  }
}

// The bound with k = 4 for each prior, the whole model in float against differences of the loss.
TEST(Objectives, IwaeGradientMatchesDifferencesOfTheBound) {
  for (PriorType prior : {PriorType::StandardNormal, PriorType::MixtureOfGaussians, PriorType::Vamp}) {
    SCOPED_TRACE(to_string(prior));
    Model model(tiny(prior));
    model.initialize(5);
    model.impl().set_objective(iwae(4));
    const int rows = 5;
    const auto x = binary_images(rows, model.impl().input_dim(), 6);
    const auto checked = test::expect_model_gradient_matches_differences(model.impl(), x, rows, 1.0f, 3, 2);
    EXPECT_GE(checked.size(), 12u);
  }
}

// DReG changes only how the encoder's gradient is estimated: the loss, the decoder's and the
// prior's gradients are IWAE's exactly, the encoder's differs per draw but agrees over many draws
// (unbiased) with a smaller spread (Tucker et al.'s point).
TEST(Objectives, DregKeepsTheBoundAndDecoderGradientAndLowersTheEncodersVariance) {
  ModelConfig cfg = tiny(PriorType::MixtureOfGaussians);
  Model a(cfg), b(cfg);
  a.initialize(11);
  b.initialize(11);
  a.impl().set_objective(iwae(8));
  b.impl().set_objective(iwae(8, true));
  const int rows = 4;
  const auto x = binary_images(rows, a.impl().input_dim(), 12);
  std::vector<size_t> encoder, others;
  for (const auto& s : a.impl().slices())
    for (int64_t i = 0; i < shape_numel(s.shape); ++i)
      (s.name.rfind("encoder.", 0) == 0 ? encoder : others).push_back(static_cast<size_t>(s.offset + i));
  const int draws = 400;
  std::vector<double> mean_a(encoder.size()), mean_b(encoder.size()), sq_a(encoder.size()), sq_b(encoder.size());
  for (int t = 0; t < draws; ++t) {
    test::forward_backward_at(a.impl(), x.data(), rows, 1.0f, 9, static_cast<uint64_t>(t));
    test::forward_backward_at(b.impl(), x.data(), rows, 1.0f, 9, static_cast<uint64_t>(t));
    const auto ga = a.impl().grads().to_host(), gb = b.impl().grads().to_host();
    if (t == 0) {
      EXPECT_EQ(a.impl().loss().to_host(), b.impl().loss().to_host());
      for (size_t i : others) EXPECT_EQ(ga[i], gb[i]) << "decoder or prior entry " << i;
    }
    for (size_t e = 0; e < encoder.size(); ++e) {
      mean_a[e] += ga[encoder[e]], sq_a[e] += double(ga[encoder[e]]) * ga[encoder[e]];
      mean_b[e] += gb[encoder[e]], sq_b[e] += double(gb[encoder[e]]) * gb[encoder[e]];
    }
  }
  double var_a = 0, var_b = 0;
  int compared = 0;
  for (size_t e = 0; e < encoder.size(); ++e) {
    const double ma = mean_a[e] / draws, mb = mean_b[e] / draws;
    const double va = std::max(0.0, sq_a[e] / draws - ma * ma), vb = std::max(0.0, sq_b[e] / draws - mb * mb);
    var_a += va, var_b += vb;
    const double se = std::sqrt((va + vb) / draws);
    if (se > 0) {
      EXPECT_LE(std::abs(ma - mb), 5 * se + 1e-7) << "encoder entry " << e;
      ++compared;
    }
  }
  EXPECT_GT(compared, 20);
  EXPECT_LT(var_b, 0.8 * var_a) << "DReG's encoder gradient should vary less than IWAE's";
}

// The same for every prior kind: the flow prior's backward runs twice under DReG (the parameters
// at the IWAE weights, z at the squared ones), the VampPrior's pseudo-inputs take the IWAE weights.
TEST(Objectives, DregChangesOnlyTheEncodersGradientForEveryPrior) {
  for (PriorType prior : {PriorType::StandardNormal, PriorType::Flow, PriorType::Vamp}) {
    SCOPED_TRACE(to_string(prior));
    ModelConfig cfg = tiny(prior);
    if (prior == PriorType::Flow) cfg.prior.flow_steps = 2, cfg.prior.flow_hidden = 3, cfg.prior.components = 0;
    Model a(cfg), b(cfg);
    a.initialize(13);
    b.initialize(13);
    a.impl().set_objective(iwae(4));
    b.impl().set_objective(iwae(4, true));
    const int rows = 3;
    const auto x = binary_images(rows, a.impl().input_dim(), 2);
    test::forward_backward_at(a.impl(), x.data(), rows, 1.0f, 4, 1);
    test::forward_backward_at(b.impl(), x.data(), rows, 1.0f, 4, 1);
    EXPECT_EQ(a.impl().loss().to_host(), b.impl().loss().to_host());
    const auto ga = a.impl().grads().to_host(), gb = b.impl().grads().to_host();
    double encoder_difference = 0;
    for (const auto& s : a.impl().slices())
      for (int64_t i = s.offset; i < s.offset + shape_numel(s.shape); ++i) {
        if (s.name.rfind("encoder.", 0) == 0) encoder_difference += std::abs(double(ga[i]) - double(gb[i]));
        else EXPECT_NEAR(ga[i], gb[i], 1e-6 * (1 + std::abs(ga[i]))) << s.name;
      }
    EXPECT_GT(encoder_difference, 1e-6);
  }
}

// Free bits by group: the loss holds sum_g max(lambda G, KL_g) of the batch-mean KL per group;
// a group under its floor gets no KL gradient, one above it the ELBO's.
TEST(Objectives, FreeBitsFloorEachGroupAndStopItsGradientBelowTheFloor) {
  ModelConfig cfg = tiny();
  const int rows = 6;
  const auto x = binary_images(rows, cfg.input_dim(), 4);
  Model plain(cfg), floored(cfg);
  plain.initialize(2);
  floored.initialize(2);
  test::forward_backward_at(plain.impl(), x.data(), rows, 0.8f, 1, 3);
  // The batch's KL per dimension at these parameters (the fused path's kl_dim).
  plain.impl().forward_eval(x.data(), rows, 1, 0, 0.0f);
  const auto kl_dim = plain.impl().kl_dim().to_host();
  const double g0 = (kl_dim[0] + kl_dim[1]) / rows, g1 = (kl_dim[2] + kl_dim[3]) / rows;
  ASSERT_GT(std::abs(g0 - g1), 1e-3) << "the groups' KL must differ for a floor between them";
  ObjectiveConfig o;
  o.free_bits_group = 2;
  o.free_bits = static_cast<float>((g0 + g1) / 4);  // per dimension: between the two groups' means
  floored.impl().set_objective(o);
  test::forward_backward_at(floored.impl(), x.data(), rows, 0.8f, 1, 3);
  const auto loss = floored.impl().loss().to_host(), plain_loss = plain.impl().loss().to_host();
  const double floor = 2 * o.free_bits;
  EXPECT_NEAR(loss[0], plain_loss[1] + 0.8 * (std::max(floor, g0) + std::max(floor, g1)), 1e-4);
  EXPECT_NEAR(loss[2], plain_loss[2], 1e-5) << "the reported KL is the KL itself";
  const auto checked = test::expect_model_gradient_matches_differences(floored.impl(), x, rows, 0.8f, 1, 3);
  EXPECT_GE(checked.size(), 12u);

  // A floor above every group: the KL has no gradient, the loss is reconstruction plus a constant.
  Model high(cfg), recon_only(cfg);
  high.initialize(2);
  recon_only.initialize(2);
  o.free_bits = 50;
  high.impl().set_objective(o);
  test::forward_backward_at(high.impl(), x.data(), rows, 0.8f, 1, 3);
  test::forward_backward_at(recon_only.impl(), x.data(), rows, 0.0f, 1, 3);
  EXPECT_LT(max_relative_difference(high.impl().grads().to_host(), recon_only.impl().grads().to_host()), 1e-4);
}

// Free bits on the total KL work with any prior (the Monte-Carlo KL), and capacity holds
// beta |KL - C| whichever side of C the KL is.
TEST(Objectives, FreeBitsOnTheTotalAndCapacityMatchDifferencesOfTheLoss) {
  ModelConfig cfg = tiny(PriorType::MixtureOfGaussians);
  const int rows = 5;
  const auto x = binary_images(rows, cfg.input_dim(), 14);
  for (int variant = 0; variant < 3; ++variant) {
    SCOPED_TRACE(variant);
    Model model(cfg);
    model.initialize(21);
    ObjectiveConfig o;
    if (variant == 0) o.free_bits = 0.01f, o.free_bits_group = cfg.latent;  // active
    if (variant == 1) o.capacity = 0.01f;                                     // KL above C
    if (variant == 2) o.capacity = 500.0f;                                    // KL below C
    model.impl().set_objective(o);
    test::forward_backward_at(model.impl(), x.data(), rows, 0.9f, 2, 5);
    const auto loss = model.impl().loss().to_host();
    if (variant > 0)
      EXPECT_NEAR(loss[0], loss[1] + 0.9 * std::abs(loss[2] - o.capacity), 1e-3 * std::abs(loss[0]));
    const auto checked = test::expect_model_gradient_matches_differences(model.impl(), x, rows, 0.9f, 2, 5);
    EXPECT_GE(checked.size(), 12u);
  }
}

// The VampPrior's density is (1/K) sum_k q(z | u_k), u_k = clamp(raw_k, 0, 1): computed here from
// the model's own encoder on the pseudo-inputs, against the prior.
TEST(VampPrior, LogDensityIsTheMixtureOfThePseudoInputsPosteriors) {
  ModelConfig cfg = tiny(PriorType::Vamp);
  Model model(cfg);
  model.initialize(4);
  ModelImpl& m = model.impl();
  const int K = cfg.prior.count(), L = cfg.latent, d = cfg.input_dim();
  std::vector<float> raw;
  for (auto [name, t] : model.named_parameters())
    if (name == "prior.pseudo_inputs") raw = t.to_host();
  ASSERT_EQ(raw.size(), size_t(K) * d);
  raw[0] = -0.5f;  // one pixel outside [0, 1]: the encoder sees it clamped
  raw[1] = 1.5f;
  for (auto [name, t] : model.named_parameters())
    if (name == "prior.pseudo_inputs") t.copy_from_host(raw.data(), int64_t(raw.size()));
  std::vector<float> u(raw);
  for (auto& v : u) v = std::clamp(v, 0.0f, 1.0f);
  const std::vector<float> h = model.encode(Tensor::from_host(u, {K, d})).to_host();
  const int n = 7;
  const auto z = random_vector<float>(size_t(n) * L, 3, -2, 2);
  m.encode_pseudo_inputs();
  m.latent_block.prior().prepare(n, Device::CPU);
  Tensor zt = Tensor::from_host(z, {n, L}), out = Tensor::zeros({n});
  m.latent_block.prior().add_log_prob(*m.backend, zt.data(), n, 1.0f, out.data());
  const auto got = out.to_host();
  for (int r = 0; r < n; ++r) {
    long double density = 0;
    for (int k = 0; k < K; ++k) {
      long double p = 1.0L / K;
      for (int j = 0; j < L; ++j) {
        const long double lv = math::soft_clamp(double(h[k * 2 * L + L + j]), double(math::kLogvarMin), double(math::kLogvarMax));
        const long double diff = z[r * L + j] - h[k * 2 * L + j];
        p *= std::exp(-diff * diff / (2 * std::exp(lv))) / std::sqrt(2 * 3.14159265358979323846L * std::exp(lv));
      }
      density += p;
    }
    EXPECT_NEAR(got[r], double(std::log(density)), 1e-4) << "row " << r;
  }
}

// The ELBO with a VampPrior: the gradient reaches the pseudo-inputs and the encoder through them.
TEST(VampPrior, WholeModelGradientReachesThePseudoInputs) {
  ModelConfig cfg = tiny(PriorType::Vamp);
  Model model(cfg);
  model.initialize(6);
  const int rows = 5;
  const auto x = binary_images(rows, cfg.input_dim(), 7);
  const auto checked = test::expect_model_gradient_matches_differences(model.impl(), x, rows, 0.7f, 3, 2);
  EXPECT_EQ(std::count(checked.begin(), checked.end(), "prior.pseudo_inputs"), 3);
  // The pseudo-inputs' gradient is not zero (it flows through the encoder's input gradient).
  const auto g = model.impl().grads().to_host();
  double norm = 0;
  for (const auto& s : model.impl().slices())
    if (s.name == "prior.pseudo_inputs")
      for (int64_t i = 0; i < shape_numel(s.shape); ++i) norm += std::abs(g[s.offset + i]);
  EXPECT_GT(norm, 1e-6);
}

TEST(Schedules, CyclicalWarmupRisesEachCycleAndCapacityRamps) {
  TrainConfig c;
  c.epochs = 10;
  c.objective.beta = 2.0f;
  c.objective.warmup_epochs = 2;
  c.objective.warmup = WarmupSchedule::Cyclical;
  c.objective.warmup_ratio = 0.5f;
  const int64_t spe = 10;  // a cycle is 20 steps: rising over 10, holding over 10
  EXPECT_DOUBLE_EQ(kl_weight(c, 0, spe), 0.2);
  EXPECT_DOUBLE_EQ(kl_weight(c, 4, spe), 1.0);
  EXPECT_DOUBLE_EQ(kl_weight(c, 9, spe), 2.0);
  EXPECT_DOUBLE_EQ(kl_weight(c, 15, spe), 2.0);
  EXPECT_DOUBLE_EQ(kl_weight(c, 20, spe), 0.2) << "the next cycle starts again";
  c.objective.warmup = WarmupSchedule::Linear;
  EXPECT_DOUBLE_EQ(kl_weight(c, 9, spe), 1.0);
  EXPECT_DOUBLE_EQ(kl_weight(c, 25, spe), 2.0);
  TrainConfig cap;
  cap.objective.capacity = 25;
  cap.objective.capacity_epochs = 5;
  EXPECT_DOUBLE_EQ(capacity_at(cap, 9, 10), 5.0);
  EXPECT_DOUBLE_EQ(capacity_at(cap, 1000, 10), 25.0);
}

// The diagnostic's two parts: a model whose encoder ignores its input has every posterior alike, so
// q(z) = q(z|x): no mutual information, all of the KL in KL(q(z) || p). A model that uses its
// input has I in (0, log N].
TEST(Diagnostics, MutualInformationIsZeroForACollapsedEncoderAndAtMostLogN) {
  ModelConfig cfg = tiny();
  ImageSet test_set;
  test_set.count = 40;
  test_set.height = cfg.image_height;
  test_set.width = cfg.image_width;
  test_set.pixels.resize(size_t(40) * cfg.input_dim());
  const auto noise = random_vector<float>(test_set.pixels.size(), 5, 0, 255);
  for (size_t i = 0; i < noise.size(); ++i) test_set.pixels[i] = static_cast<uint8_t>(noise[i]);
  EvalOptions opt;
  opt.batch = 16;
  opt.mi_samples = 25;
  {
    Model model(cfg);
    model.initialize(1);
    // Scale the encoder's input weights up so posteriors are far apart.
    for (auto [name, t] : model.named_parameters())
      if (name == "encoder.0.weight") {
        auto w = t.to_host();
        for (auto& v : w) v *= 20;
        t.copy_from_host(w.data(), int64_t(w.size()));
      }
    const EvalResult r = evaluate(model, test_set, opt);
    EXPECT_EQ(r.mi_samples, 25);
    EXPECT_GT(r.mutual_info, 0.1);
    EXPECT_LE(r.mutual_info, std::log(40.0) + 1e-9);
    EXPECT_GE(r.aggregate_kl, -0.5) << "a KL estimate, noisy but not far below zero";
  }
  {
    Model model(cfg);
    model.initialize(1);
    for (auto [name, t] : model.named_parameters())
      if (name == "encoder.0.weight") t.copy_from_host(std::vector<float>(size_t(t.numel()), 0.0f).data(), t.numel());
    const EvalResult r = evaluate(model, test_set, opt);
    EXPECT_NEAR(r.mutual_info, 0.0, 1e-9);
    EXPECT_GT(r.aggregate_kl, 0.0);
  }
}

TEST(Objectives, ConfigurationMistakesNameTheField) {
  const auto fails_with = [](const ObjectiveConfig& o, const ModelConfig& m, const std::string& needle) {
    try {
      o.validate();
      o.check_model(m);
      ADD_FAILURE() << "accepted; expected an error containing '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const ModelConfig m = tiny(), mog = tiny(PriorType::MixtureOfGaussians);
  ObjectiveConfig o = iwae(0);
  fails_with(o, m, "k must be in [1, 4096]");
  o = iwae(5);
  o.beta = 0.5f;
  fails_with(o, m, "objective.beta");
  o = iwae(5);
  o.free_bits = 1;
  fails_with(o, m, "objective.free_bits");
  o = ObjectiveConfig{};
  o.k = 3;
  fails_with(o, m, "objective.k");
  o = ObjectiveConfig{};
  o.free_bits = 0.5f;
  o.free_bits_group = 3;
  fails_with(o, m, "must divide the latent size 4");
  o.free_bits_group = 2;
  fails_with(o, mog, "standard_normal");
  o.capacity = 5;
  fails_with(o, m, "choose one");
  o = ObjectiveConfig{};
  o.warmup = WarmupSchedule::Cyclical;
  fails_with(o, m, "warmup_epochs");
  EXPECT_THROW(ObjectiveConfig::from_json(R"({"type": "iwae", "k": 0})"), Error);
  EXPECT_EQ(ObjectiveConfig::from_json(R"({"type": "iwae-dreg", "k": 5})").type, ObjectiveType::IwaeDreg);
  const ObjectiveConfig round = ObjectiveConfig::from_json(iwae(7, true).to_json());
  EXPECT_EQ(round.k, 7);
  EXPECT_EQ(round.type, ObjectiveType::IwaeDreg);
}

}  // namespace
}  // namespace vae
