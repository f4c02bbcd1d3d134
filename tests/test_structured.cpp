// The structured latent space's parts beyond their op-table rows (issue 28): gated networks and the
// bounded log-variance (their layout against vae_vampprior's, the whole model's gradient, the
// checkpoint and the configuration's mistakes).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "discretized_logistic_nll.cuh"
#include "dmol_nll.cuh"
#include "gaussian_kl.cuh"
#include "gaussian_pair_kl.cuh"
#include "model/model_impl.hpp"
#include "op_table.hpp"
#include "model_gradient_check.hpp"
#include "test_util.hpp"
#include "vae/generate.hpp"
#include "vae/vae.hpp"

namespace vae {
namespace {

using test::random_vector;

void expect_rejected(const std::string& json, const std::string& fragment) {
  try {
    ModelConfig::from_json(json);
    ADD_FAILURE() << json << " was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

// A gated MLP has vae_vampprior's GatedDense layout: each hidden layer two Linear(in, out) (one of
// doubled width here), so 2 (in out + out) parameters, and the head and output layers as before.
TEST(GatedNetworks, HaveTheGatedDenseLayout) {
  ModelConfig cfg;
  cfg.encoder.hidden = {300, 300};
  cfg.encoder.activation = Activation::Gated;
  cfg.latent = 40;
  const int64_t d = 784;
  const int64_t encoder = 2 * (d * 300 + 300) + 2 * (300 * 300 + 300) + (300 * 80 + 80);
  const int64_t decoder = 2 * (40 * 300 + 300) + 2 * (300 * 300 + 300) + (300 * d + d);
  EXPECT_EQ(cfg.parameter_count(), encoder + decoder);
  Model model(cfg);
  const ModelImpl& m = model.impl();
  std::vector<std::string> kinds;
  for (size_t i = 0; i < m.encoder.size(); ++i) kinds.push_back(m.encoder.module(i).kind());
  EXPECT_EQ(kinds, (std::vector<std::string>{"Linear", "Gate", "Linear", "Gate", "Linear"}));
  EXPECT_EQ(m.encoder.module(1).out_shape(), (Shape{300}));
}

// The whole model's gradient through gated layers (MLP and conv, whose gates split channels) and
// the bounded log-variance (soft on the MLP, hard on the conv: the heads start inside the range).
TEST(GatedNetworks, WholeModelGradientMatchesDifferences) {
  for (bool conv : {false, true}) {
    SCOPED_TRACE(conv ? "conv" : "mlp");
    ModelConfig cfg;
    cfg.image_height = conv ? 9 : 3;
    cfg.image_width = conv ? 9 : 5;
    cfg.encoder.hidden = conv ? std::vector<int>{5} : std::vector<int>{7, 6};
    if (conv) {
      cfg.encoder.type = NetworkType::Conv;
      cfg.encoder.channels = {3, 4};
      cfg.encoder.kernel = 3;
    }
    cfg.encoder.activation = Activation::Gated;
    cfg.logvar_clamp = conv ? LogvarClampKind::Hard : LogvarClampKind::Soft;
    cfg.logvar_min = -4.0f;
    cfg.logvar_max = 3.0f;
    cfg.latent = 3;
    Model model(cfg);
    model.initialize(3);
    const int rows = 4;
    auto x = random_vector<float>(rows * cfg.input_dim(), 16, 0, 1);
    for (auto& v : x) v = v < 0.5f ? 0.0f : 1.0f;
    const auto checked = test::expect_model_gradient_matches_differences(model.impl(), x, rows, 0.8f, 7, 3);
    EXPECT_GE(checked.size(), 3u * model.impl().slices().size() - 3);
  }
}

// The bounded log-variance holds the encoder head's second half in the range (hard: exactly the
// ends; soft: c + s tanh((raw - c) / s)), and mu passes untouched.
TEST(LogvarClamp, HoldsTheHeadsLogVarianceInItsRange) {
  for (LogvarClampKind kind : {LogvarClampKind::Hard, LogvarClampKind::Soft}) {
    ModelConfig cfg;
    cfg.image_height = 4;
    cfg.image_width = 4;
    cfg.encoder.hidden = {8};
    cfg.latent = 6;
    cfg.logvar_clamp = kind;
    cfg.logvar_min = -1.0f;
    cfg.logvar_max = 0.5f;
    Model clamped(cfg);
    clamped.initialize(4);
    cfg.logvar_clamp = LogvarClampKind::None;
    Model plain(cfg);
    plain.initialize(4);
    // Inputs far from the data's range push the raw head past both ends.
    auto xs = random_vector<float>(32 * 16, 9, -40, 40);
    const Tensor x = Tensor::from_host(xs, {32, 16});
    const std::vector<float> a = clamped.encode(x).to_host(), b = plain.encode(x).to_host();
    int below = 0, above = 0;
    for (int r = 0; r < 32; ++r)
      for (int u = 0; u < 12; ++u) {
        const float got = a[r * 12 + u], raw = b[r * 12 + u];
        if (u < 6) {
          EXPECT_EQ(got, raw);
          continue;
        }
        below += raw < -1.0f;
        above += raw > 0.5f;
        if (kind == LogvarClampKind::Hard) EXPECT_EQ(got, std::min(std::max(raw, -1.0f), 0.5f));
        else {  // tanh reaches +-1 in float far out: the ends themselves, never past them
          EXPECT_GE(got, -1.0f);
          EXPECT_LE(got, 0.5f);
          EXPECT_NEAR(got, -0.25f + 0.75f * std::tanh((raw + 0.25f) / 0.75f), 1e-6f);
        }
      }
    EXPECT_GT(below, 0);
    EXPECT_GT(above, 0);
  }
}

TEST(GatedNetworks, CheckpointRoundTripsAndMistakesAreNamed) {
  ModelConfig cfg = ModelConfig::from_json(
      R"({"image": {"channels": 1, "height": 8, "width": 8}, "encoder": {"type": "conv", "channels": [4], "hidden": [6],
          "activation": "gated"}, "posterior": {"latent": 3, "logvar_clamp": "hard", "logvar_min": -6, "logvar_max": 2}})");
  EXPECT_EQ(cfg.encoder.activation, Activation::Gated);
  EXPECT_EQ(cfg.logvar_clamp, LogvarClampKind::Hard);
  EXPECT_EQ(ModelConfig::from_json(cfg.to_json()).to_json(), cfg.to_json());
  Model model(cfg);
  model.initialize(2);
  test::ScratchDir dir("gated_checkpoint");
  save_checkpoint(model, dir.file("m.safetensors"));
  Model loaded = load_checkpoint(dir.file("m.safetensors"));
  EXPECT_EQ(loaded.config().to_json(), cfg.to_json());
  EXPECT_EQ(loaded.impl().params().to_host(), model.impl().params().to_host());
  const Tensor x = Tensor::from_host(random_vector<float>(5 * 64, 3, 0, 1), {5, 64});
  EXPECT_EQ(loaded.decode(loaded.encode(x).view(0, {5, 3})).to_host(), model.decode(model.encode(x).view(0, {5, 3})).to_host());

  expect_rejected(R"({"encoder": {"activation": "gelu"}})", "activation 'gelu'");
  expect_rejected(R"({"posterior": {"logvar_clamp": "firm"}})", "logvar_clamp 'firm'");
  expect_rejected(R"({"posterior": {"logvar_clamp": "hard", "logvar_min": 2, "logvar_max": -6}})",
                  "posterior.logvar_min and logvar_max");
  expect_rejected(R"({"posterior": {"logvar_clamp": "soft", "logvar_min": -40}})", "posterior.logvar_min");
}

// The discretized logistic's mass of one bin, from the definition in long double: the difference of
// two logistic CDFs (the end bins one CDF), the log-scale soft-clamped as the op does.
long double direct_bin_log_mass(int k, double mean, double raw_log_scale) {
  const long double ls = math::soft_clamp(raw_log_scale, double(math::kLogScaleMin), double(math::kLogScaleMax));
  const long double s = std::exp(ls);
  // Above the mean, the difference of the two survival functions (1 - CDF, computed as such): the
  // CDFs there are both near 1 and their difference would cancel.
  auto cdf = [&](long double edge) { return 1.0L / (1.0L + std::exp(-(edge - mean) / s)); };
  auto survival = [&](long double edge) { return 1.0L / (1.0L + std::exp((edge - mean) / s)); };
  const long double lo = (k - 0.5L) / 255.0L, hi = (k + 0.5L) / 255.0L;
  if (k > 0 && lo > mean) return std::log(survival(lo) - (k == 255 ? 0.0L : survival(hi)));
  return std::log((k == 255 ? 1.0L : cdf(hi)) - (k == 0 ? 0.0L : cdf(lo)));
}

// Every bin's mass, the end bins included, against the long-double definition, over means inside
// and far outside [0, 1] and log-scales from below the clamp's floor to above its ceiling; in
// float on the CPU backend and in double through the op table's reference executor.
TEST(DiscretizedLogistic, BinMassesMatchTheDefinitionAndSumToOne) {
  const auto be = make_backend(Device::CPU);
  optable::Ref<double> ref;
  for (double mean : {0.5, 0.0, 1.0, 0.13, -0.4, 1.7})
    for (double raw : {-9.0, -7.0, -4.0, -1.0, 0.0, 5.0, 6.0}) {
      SCOPED_TRACE("mean " + std::to_string(mean) + " raw log-scale " + std::to_string(raw));
      std::vector<float> out(512), x(256), nll(256);
      std::vector<double> outd(512), xd(256), nlld(256);
      for (int k = 0; k < 256; ++k) {
        out[2 * k] = float(mean), out[2 * k + 1] = float(raw), x[k] = float(k / 255.0);
        outd[2 * k] = double(float(mean)), outd[2 * k + 1] = double(float(raw)), xd[k] = k / 255.0;
      }
      // 256 rows of one value each: every bin of one distribution.
      ops::discretized_logistic_nll(*be, out.data(), x.data(), nll.data(), static_cast<float*>(nullptr), 256, 1, 1.0f);
      ops::discretized_logistic_nll(ref, outd.data(), xd.data(), nlld.data(), static_cast<double*>(nullptr), 256, 1, 1.0);
      long double total = 0;
      for (int k = 0; k < 256; ++k) {
        const long double want = -direct_bin_log_mass(k, double(float(mean)), double(float(raw)));
        ASSERT_TRUE(std::isfinite(nll[k])) << "bin " << k;
        // Where the definition itself underflows (a mass below 1e-4900), the op's log-space form is
        // the only finite answer: it must be large.
        if (!std::isfinite(double(want))) {
          EXPECT_GT(nll[k], 1000.0f) << "bin " << k;
          continue;
        }
        EXPECT_NEAR(nlld[k], double(want), 1e-9 * (1 + std::fabs(double(want)))) << "bin " << k;
        EXPECT_NEAR(nll[k], double(want), 2e-5 * (1 + std::fabs(double(want)))) << "bin " << k;
        total += std::exp(-want);
      }
      EXPECT_NEAR(double(total), 1.0, 1e-12);
    }
}

// The mixture of discretized logistics against its definition in long double: RGB positions with K = 3
// components (the planes' layout, the colour coupling through tanh'd coefficients, the mixing), and
// a grey mixture whose 256 bin masses sum to one.
TEST(MixtureDiscretizedLogistic, MatchesTheDefinitionAndSumsToOne) {
  const auto be = make_backend(Device::CPU);
  const int K = 3, C = 3, hw = 5, planes = K * (1 + 2 * C + 3);
  auto out = random_vector<float>(planes * hw, 21, -1, 1);
  for (int k = 0; k < K; ++k)
    for (int c = 0; c < C; ++c)
      for (int p = 0; p < hw; ++p) out[(K + k * C + c) * hw + p] = 0.5f * out[(K + k * C + c) * hw + p] + 0.5f;
  auto xs = random_vector<float>(C * hw, 22, 0, 1);
  for (auto& v : xs) v = std::round(v * 255.0f) / 255.0f;
  xs[0] = 0, xs[hw] = 1;  // end bins
  float nll = 0;
  ops::dmol_nll(*be, out.data(), xs.data(), &nll, static_cast<float*>(nullptr), 1, K, C, hw, 1.0f);
  long double want = 0;
  for (int p = 0; p < hw; ++p) {
    auto at = [&](int plane) { return double(out[plane * hw + p]); };
    long double norm = 0;
    for (int k = 0; k < K; ++k) norm += std::exp(static_cast<long double>(at(k)));
    long double mass = 0;
    for (int k = 0; k < K; ++k) {
      const double x0 = xs[p], x1 = xs[hw + p], x2 = xs[2 * hw + p];
      const double mu[3] = {at(K + k * C), at(K + k * C + 1) + std::tanh(at(K + 2 * K * C + 3 * k)) * x0,
                            at(K + k * C + 2) + std::tanh(at(K + 2 * K * C + 3 * k + 1)) * x0 +
                                std::tanh(at(K + 2 * K * C + 3 * k + 2)) * x1};
      long double log_pk = std::log(std::exp(static_cast<long double>(at(k))) / norm);
      const double xc[3] = {x0, x1, x2};
      for (int c = 0; c < C; ++c)
        log_pk += direct_bin_log_mass(int(std::lround(xc[c] * 255)), mu[c], at(K + K * C + k * C + c));
      mass += std::exp(log_pk);
    }
    want -= std::log(mass);
  }
  EXPECT_NEAR(nll, double(want), 2e-5 * (1 + std::fabs(double(want))));

  // Grey, K = 3: one distribution's 256 bins.
  const int G = 3, gplanes = 3 * G;
  std::vector<float> x(256);
  const float params[gplanes] = {0.3f, -1.0f, 1.2f, 0.2f, 0.55f, 0.9f, -3.0f, -2.0f, -5.5f};
  for (int k = 0; k < 256; ++k) x[k] = float(k / 255.0);
  // One row of 256 positions would sum them; 256 rows of one position keep each bin's own mass.
  std::vector<float> row_out(gplanes);
  long double total = 0;
  for (int k = 0; k < 256; ++k) {
    for (int pl = 0; pl < gplanes; ++pl) row_out[pl] = params[pl];
    float one = 0;
    ops::dmol_nll(*be, row_out.data(), &x[k], &one, static_cast<float*>(nullptr), 1, G, 1, 1, 1.0f);
    total += std::exp(-static_cast<long double>(one));
  }
  EXPECT_NEAR(double(total), 1.0, 2e-5);
  // With K = 1 it is the discretized logistic itself.
  const float single[3] = {0.4f, 0.61f, -2.5f};
  const float pair[2] = {0.61f, -2.5f};
  for (int k : {0, 7, 150, 255}) {
    float a = 0, b = 0;
    ops::dmol_nll(*be, single, &x[k], &a, static_cast<float*>(nullptr), 1, 1, 1, 1, 1.0f);
    ops::discretized_logistic_nll(*be, pair, &x[k], &b, static_cast<float*>(nullptr), 1, 1, 1.0f);
    EXPECT_EQ(a, b) << "bin " << k;
  }
}

Dataset grey_dataset(int count, int side, uint64_t seed, bool binary) {
  Dataset data;
  for (ImageSet* set : {&data.train, &data.test}) {
    set->count = count, set->height = side, set->width = side;
    for (float v : random_vector<float>(int64_t(count) * side * side, set == &data.train ? seed : seed + 1, 0, 255.99))
      set->pixels.push_back(binary ? (v < 128 ? 0 : 255) : static_cast<uint8_t>(v));
  }
  return data;
}

// The whole model's gradient with the discretized logistic (MLP and conv decoders, whose outputs
// are [means | log-scales] planes), on 8-bit values with both end bins.
TEST(DiscretizedLogistic, WholeModelGradientMatchesDifferences) {
  for (int pass : {0, 1, 2}) {
    // mlp dlogistic, conv dlogistic, conv dmol on RGB (K = 2: logits, means, log-scales, coefficients).
    const bool conv = pass > 0, rgb = pass == 2;
    SCOPED_TRACE(pass == 0 ? "mlp" : rgb ? "conv dmol rgb" : "conv");
    ModelConfig cfg;
    // Small images: the loss (about 5.5 nats a value at the start) stays small enough for float
    // differences of it to resolve the gradient.
    cfg.image_height = conv ? 4 : 3;
    cfg.image_width = conv ? 4 : 5;
    cfg.encoder.hidden = {6};
    if (conv) {
      cfg.encoder.type = NetworkType::Conv;
      cfg.encoder.channels = {3};
    }
    cfg.encoder.activation = Activation::Tanh;
    cfg.latent = 3;
    cfg.likelihood = Likelihood::DiscretizedLogistic;
    if (rgb) {
      cfg.image_channels = 3;
      cfg.likelihood = Likelihood::MixtureDiscretizedLogistic;
      cfg.likelihood_components = 2;
    }
    EXPECT_EQ(cfg.decoder_output_dim(), (rgb ? 2 * 10 * 16 : 2 * cfg.input_dim()));
    Model model(cfg);
    model.initialize(3);
    const int rows = 4;
    auto x = random_vector<float>(rows * cfg.input_dim(), 16, 0, 1);
    for (auto& v : x) v = std::round(v * 255.0f) / 255.0f;
    x[0] = 0, x[1] = 1;
    test::expect_model_gradient_matches_differences(model.impl(), x, rows, 0.8f, 7, 3);
  }
}

// A dlogistic model trains on 8-bit images, reports bits per dimension as -log2 P / d (its ELBO's
// and its k-sample bound's), round-trips through its checkpoint, decodes images in [0, 1]; on binary
// data it is refused before any step.
TEST(DiscretizedLogistic, TrainsReportsBitsPerDimensionAndRefusesBinaryData) {
  ModelConfig cfg;
  cfg.image_height = 6;
  cfg.image_width = 6;
  cfg.encoder.hidden = {16};
  cfg.latent = 4;
  cfg.likelihood = Likelihood::DiscretizedLogistic;
  Model model(cfg);
  model.initialize(1);
  TrainConfig tc;
  tc.epochs = 2;
  tc.batch = 32;
  tc.threads = 1;
  const Dataset data = grey_dataset(256, 6, 5, false);
  Trainer trainer(model, tc);
  const auto history = trainer.fit(data);
  EXPECT_LT(history[1].test.neg_elbo, history[0].test.neg_elbo);
  EvalOptions eo;
  eo.k = 20;
  const EvalResult r = evaluate(model, data.test, eo);
  EXPECT_EQ(r.likelihood, "dlogistic");
  EXPECT_EQ(r.dimensions, 36);
  EXPECT_FALSE(r.bpd_from_density);
  EXPECT_NEAR(r.bpd_elbo, r.neg_elbo / (36 * std::log(2.0)), 1e-12);
  EXPECT_NEAR(r.bpd, r.iwae_nll / (36 * std::log(2.0)), 1e-12);
  // Uniform random bytes hold 8 bits each: a model of them can do no better.
  EXPECT_GT(r.bpd, 7.9);
  const std::string j = r.to_json();
  EXPECT_NE(j.find("\"bpd\""), std::string::npos) << j;

  test::ScratchDir dir("dlogistic_checkpoint");
  save_checkpoint(model, dir.file("m.safetensors"));
  Model loaded = load_checkpoint(dir.file("m.safetensors"));
  EXPECT_EQ(evaluate(loaded, data.test, eo).iwae_nll, r.iwae_nll);
  const std::vector<float> images = sample_images(loaded, 8, 1.0f, 2).to_host();
  ASSERT_EQ(images.size(), 8u * 36);
  for (float v : images) EXPECT_TRUE(v >= 0.0f && v <= 1.0f) << v;

  // Pixels drawn from the likelihood: 8-bit values (k / 255), another draw for another seed, the
  // same for the same seed.
  SampleOptions so;
  so.n = 64;
  so.seed = 4;
  so.draw_pixels = true;
  const std::vector<float> drawn = sample_images(loaded, so), again = sample_images(loaded, so);
  EXPECT_EQ(drawn, again);
  for (float v : drawn) EXPECT_EQ(v, std::round(v * 255.0f) / 255.0f) << v;
  so.seed = 5;
  EXPECT_NE(sample_images(loaded, so), drawn);
  // A model of uniform random bytes has wide logistics: its draws cover the grey levels.
  EXPECT_GT(std::set<float>(drawn.begin(), drawn.end()).size(), 100u);

  Model fresh(cfg);
  fresh.initialize(1);
  Trainer refused(fresh, tc);
  try {
    refused.fit(grey_dataset(64, 6, 7, true));
    ADD_FAILURE() << "binary data was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--likelihood bernoulli"), std::string::npos) << e.what();
  }
  expect_rejected(R"({"likelihood": {"type": "dlogistic", "components": 3}})", "likelihood.components is for the dmol");
  expect_rejected(R"({"likelihood": {"type": "logistic"}})", "likelihood 'logistic'");
}

// The KL between two heads: against N(0, I) (a zero head) it is the posterior's own KL to the same
// bits, and against itself zero; between two Gaussians of one dimension, the closed form in long double.
TEST(GaussianPairKl, AgreesWithTheStandardNormalKlAndTheClosedForm) {
  const auto be = make_backend(Device::CPU);
  const int rows = 6, L = 5;
  const auto hq = random_vector<float>(rows * 2 * L, 3, -2, 2);
  const std::vector<float> zero(rows * 2 * L, 0.0f);
  std::vector<float> a(rows), b(rows), da(L), db(L), self(rows);
  ops::gaussian_pair_kl_forward(*be, hq.data(), zero.data(), rows, L, a.data(), da.data());
  ops::gaussian_kl_forward(*be, hq.data(), rows, L, b.data(), db.data());
  for (int r = 0; r < rows; ++r) EXPECT_NEAR(a[r], b[r], 1e-6f * (1 + b[r]));
  for (int u = 0; u < L; ++u) EXPECT_NEAR(da[u], db[u], 1e-6f * (1 + db[u]));
  ops::gaussian_pair_kl_forward(*be, hq.data(), hq.data(), rows, L, self.data(), static_cast<float*>(nullptr));
  for (float v : self) EXPECT_NEAR(v, 0.0f, 1e-6f * L);  // e^lv e^-lv - 1: rounding only
  const float q[2] = {0.7f, -1.2f}, p[2] = {-0.4f, 0.9f};
  float kl = 0;
  ops::gaussian_pair_kl_forward(*be, q, p, 1, 1, &kl, static_cast<float*>(nullptr));
  const long double vq = std::exp(-1.2L), vp = std::exp(0.9L), d = 0.7L + 0.4L;
  const long double want = 0.5L * (std::log(vp / vq) + (vq + d * d) / vp - 1);
  EXPECT_NEAR(kl, double(want), 1e-6);
}

// A model small enough for finite differences: 3x4 images (mlp) or 8x8 (conv, one conv of 3
// channels), one hidden layer of 6, tanh (smooth everywhere).
ModelConfig tiny_config(NetworkType type) {
  ModelConfig cfg;
  cfg.image_height = type == NetworkType::Conv ? 8 : 3;
  cfg.image_width = type == NetworkType::Conv ? 8 : 4;
  cfg.encoder.type = type;
  if (type == NetworkType::Conv) cfg.encoder.channels = {3};
  cfg.encoder.hidden = {6};
  cfg.encoder.activation = Activation::Tanh;
  return cfg;
}

ModelConfig label_prior_config(NetworkType type) {
  ModelConfig cfg = tiny_config(type);
  cfg.latent = 3;
  cfg.conditional = true;
  cfg.classes = 3;
  cfg.prior.type = PriorType::LabelGaussian;
  return cfg;
}

// p(z | y): the whole model's gradient reaches the prior's per-class means and log-variances (ELBO
// and the importance-weighted bound, whose k samples of a row share its label), MLP and conv.
TEST(LabelGaussianPrior, WholeModelGradientReachesThePerClassGaussians) {
  for (NetworkType type : {NetworkType::MLP, NetworkType::Conv})
    for (bool importance : {false, true}) {
      SCOPED_TRACE(to_string(type) + (importance ? " iwae k=3" : " elbo"));
      Model model(label_prior_config(type));
      model.initialize(4);
      ModelImpl& m = model.impl();
      // Start the classes apart, so each class's gradient is its own.
      std::vector<float> params = m.params().to_host();
      for (const auto& sl : m.slices())
        if (sl.name == "prior.means")
          for (int64_t i = 0; i < shape_numel(sl.shape); ++i) params[sl.offset + i] = 0.3f * float(i % 5) - 0.6f;
      m.params().copy_from_host(params.data(), m.params().numel());
      if (importance) {
        ObjectiveConfig o;
        o.type = ObjectiveType::Iwae;
        o.k = 3;
        m.set_objective(o);
      }
      const int rows = 5;
      const std::vector<float> labels = {0, 2, 1, 2, 0};
      auto x = random_vector<float>(rows * m.input_dim(), 9, 0, 1);
      for (auto& v : x) v = v < 0.5f ? 0.0f : 1.0f;
      const auto checked = test::expect_model_gradient_matches_differences(m, x, rows, 1.0f, 3, 2, labels);
      EXPECT_EQ(std::count(checked.begin(), checked.end(), "prior.means"), 3);
      EXPECT_EQ(std::count(checked.begin(), checked.end(), "prior.logvar"), 3);
    }
}

// Samples of label c come from class c's Gaussian (their mean and spread), the checkpoint carries
// the per-class parameters, and the prior refuses an unconditional model and missing labels.
TEST(LabelGaussianPrior, SamplesFollowTheirLabelsGaussianAndMistakesAreNamed) {
  Model model(label_prior_config(NetworkType::MLP));
  model.initialize(1);
  ModelImpl& m = model.impl();
  std::vector<float> params = m.params().to_host();
  for (const auto& sl : m.slices()) {
    if (sl.name == "prior.means")
      for (int64_t i = 0; i < 9; ++i) params[sl.offset + i] = float(i) - 4.0f;  // class c, dim u: 3c + u - 4
    if (sl.name == "prior.logvar")
      for (int64_t i = 0; i < 9; ++i) params[sl.offset + i] = std::log(0.25f);  // sigma 0.5
  }
  m.params().copy_from_host(params.data(), m.params().numel());
  SampleOptions o;
  o.n = 4000;
  o.seed = 5;
  o.labels = {2};
  const std::vector<float> z = sample_latents(model, o).to_host();
  for (int u = 0; u < 3; ++u) {
    double mean = 0, sq = 0;
    for (int i = 0; i < o.n; ++i) mean += z[i * 3 + u], sq += double(z[i * 3 + u]) * z[i * 3 + u];
    mean /= o.n;
    EXPECT_NEAR(mean, 6 + u - 4, 0.03) << "dim " << u;
    EXPECT_NEAR(std::sqrt(sq / o.n - mean * mean), 0.5, 0.03) << "dim " << u;
  }
  o.labels = {};
  EXPECT_THROW(sample_latents(model, o), Error);

  test::ScratchDir dir("label_prior_checkpoint");
  save_checkpoint(model, dir.file("m.safetensors"));
  Model loaded = load_checkpoint(dir.file("m.safetensors"));
  EXPECT_EQ(loaded.impl().params().to_host(), params);
  o.labels = {2};
  EXPECT_EQ(sample_latents(loaded, o).to_host(), z);
  expect_rejected(R"({"prior": {"type": "label_gaussian"}})", "needs a conditional model");
}

ModelConfig hierarchy_config(std::vector<int> levels, bool residual, NetworkType type = NetworkType::MLP) {
  ModelConfig cfg = tiny_config(type);
  cfg.levels = std::move(levels);
  cfg.latent = 0;
  for (int l : cfg.levels) cfg.latent += l;
  cfg.top_down_hidden = 5;
  cfg.residual_posterior = residual;
  return cfg;
}

// The whole model's gradient through a hierarchy: every level's top-down network, bottom-up head
// and KL, two and three levels, with and without the residual posterior, MLP and conv, and a top
// level on the general path (a mixture prior: Monte-Carlo KL at the top, analytic below).
TEST(Hierarchy, WholeModelGradientMatchesDifferences) {
  struct Case {
    std::vector<int> levels;
    bool residual;
    NetworkType type;
    PriorType prior;
    LogvarClampKind clamp = LogvarClampKind::None;
  };
  // The soft clamp to a narrow range (the hard one's kinks would trip the differences) bends every
  // head's log-variance: the top's in the encoder, each level's posterior and conditional prior.
  const std::vector<Case> cases = {{{3, 2}, false, NetworkType::MLP, PriorType::StandardNormal},
                                   {{2, 3, 2}, true, NetworkType::MLP, PriorType::StandardNormal},
                                   {{2, 2}, true, NetworkType::Conv, PriorType::StandardNormal},
                                   {{3, 2}, false, NetworkType::MLP, PriorType::MixtureOfGaussians},
                                   {{3, 2}, true, NetworkType::MLP, PriorType::Vamp},
                                   {{2, 3, 2}, true, NetworkType::MLP, PriorType::StandardNormal, LogvarClampKind::Soft},
                                   {{3, 2}, false, NetworkType::Conv, PriorType::StandardNormal, LogvarClampKind::Soft}};
  for (const Case& c : cases) {
    ModelConfig cfg = hierarchy_config(c.levels, c.residual, c.type);
    cfg.logvar_clamp = c.clamp;
    cfg.logvar_min = -0.6f;
    cfg.logvar_max = 0.4f;
    cfg.prior.type = c.prior;
    cfg.prior.components = c.prior == PriorType::StandardNormal ? 0 : 3;
    SCOPED_TRACE(cfg.to_json());
    Model model(cfg);
    model.initialize(6);
    const int rows = 4;
    auto x = random_vector<float>(rows * cfg.input_dim(), 16, 0, 1);
    for (auto& v : x) v = v < 0.5f ? 0.0f : 1.0f;
    const auto checked = test::expect_model_gradient_matches_differences(model.impl(), x, rows, 0.8f, 7, 3);
    const auto top_down = std::count_if(checked.begin(), checked.end(),
                                        [](const std::string& n) { return n.rfind("top_down.", 0) == 0; });
    EXPECT_EQ(top_down, 3 * 4 * int64_t(c.levels.size() - 1)) << "every top-down network's weights and biases";
  }
}

// The hard clamp holds every level's posterior log-variance in its range (the top's in the
// encoder, the lower levels' after the top-down path adds to their heads), and each lower level's
// conditional prior's: inputs far outside [0, 1] push the raw heads past both ends.
TEST(Hierarchy, LogvarClampHoldsEveryLevelInItsRange) {
  ModelConfig cfg = hierarchy_config({3, 3}, true);
  cfg.logvar_clamp = LogvarClampKind::Hard;
  cfg.logvar_min = -1.0f;
  cfg.logvar_max = 0.5f;
  Model model(cfg);
  model.initialize(4);
  const int n = 64, d = cfg.input_dim();
  const Tensor x = Tensor::from_host(random_vector<float>(size_t(n) * d, 9, -40, 40), {n, d});
  const std::vector<float> lv = encode_tensor(model, x).logvar.to_host();
  ASSERT_EQ(lv.size(), size_t(n) * 6);
  int at_lo[2] = {0, 0}, at_hi[2] = {0, 0};
  for (int r = 0; r < n; ++r)
    for (int u = 0; u < 6; ++u) {
      const float v = lv[size_t(r) * 6 + u];
      // The kernels' own soft clamp to (-30, 20) moves values in this range by under 1e-6.
      EXPECT_GE(v, -1.0f - 1e-5f);
      EXPECT_LE(v, 0.5f + 1e-5f);
      at_lo[u / 3] += v < -1.0f + 1e-5f;
      at_hi[u / 3] += v > 0.5f - 1e-5f;
    }
  for (int level = 0; level < 2; ++level) {
    EXPECT_GT(at_lo[level], 0) << "level " << level << " never reached the lower end";
    EXPECT_GT(at_hi[level], 0) << "level " << level << " never reached the upper end";
  }
  // The conditional prior: its top-down network's bias set to a log-variance of 5 (e^5 unclamped),
  // its temperature-1 samples' variance is the clamp's upper end, e^0.5.
  int biases = 0;
  for (auto [name, t] : model.named_parameters())
    if (name.rfind("top_down.1.", 0) == 0 && name.size() > 4 && name.substr(name.size() - 4) == "bias" && t.numel() == 12) {
      std::vector<float> b = t.to_host();
      for (int u = 3; u < 6; ++u) b[size_t(u)] = 5.0f;
      t.copy_from_host(b.data(), int64_t(b.size()));
      ++biases;
    }
  ASSERT_EQ(biases, 1);
  SampleOptions o;
  o.n = 2000;
  o.seed = 5;
  o.level_temperatures = {0.0f, 1.0f};
  const std::vector<float> z = sample_latents(model, o).to_host();
  for (int u = 3; u < 6; ++u) {
    double s = 0, ss = 0;
    for (int i = 0; i < o.n; ++i) s += z[size_t(i) * 6 + u], ss += double(z[size_t(i) * 6 + u]) * z[size_t(i) * 6 + u];
    const double var = ss / o.n - (s / o.n) * (s / o.n);
    EXPECT_GT(var, std::exp(0.5) * 0.8) << u;
    EXPECT_LT(var, std::exp(0.5) * 1.2) << u;
  }
}

// Free bits per level: groups of a level's size floor each level's batch-mean KL (the loss holds
// max(lambda L_l, KL_l) per level); a level under its floor sends no KL gradient into its heads or
// the top-down network, one above it the ELBO's. The levels' KL comes from kl_dim (forward_eval at
// the step's noise).
TEST(Hierarchy, FreeBitsPerLevelFloorEachLevel) {
  ModelConfig cfg = hierarchy_config({3, 3}, true);
  const int rows = 6;
  auto x = random_vector<float>(rows * cfg.input_dim(), 26, 0, 1);
  for (auto& v : x) v = v < 0.5f ? 0.0f : 1.0f;
  Model plain(cfg), floored(cfg);
  plain.initialize(3);
  floored.initialize(3);
  test::forward_backward_at(plain.impl(), x.data(), rows, 0.8f, 1, 0);
  // The training step's noise (seed 1, step 0): the lower level's KL depends on the z above it.
  plain.impl().forward_eval(x.data(), rows, 1, 0, 1.0f);
  const auto kl_dim = plain.impl().kl_dim().to_host();
  ASSERT_EQ(kl_dim.size(), 6u);
  const double top = (kl_dim[0] + kl_dim[1] + kl_dim[2]) / rows, lower = (kl_dim[3] + kl_dim[4] + kl_dim[5]) / rows;
  ASSERT_GT(std::abs(top - lower), 1e-3) << "the levels' KL must differ for a floor between them";
  ObjectiveConfig o;
  o.free_bits_group = 3;
  o.free_bits = static_cast<float>((top + lower) / 6);  // per dimension: between the two levels' means
  o.check_model(cfg);
  floored.impl().set_objective(o);
  test::forward_backward_at(floored.impl(), x.data(), rows, 0.8f, 1, 0);
  const auto loss = floored.impl().loss().to_host(), plain_loss = plain.impl().loss().to_host();
  const double floor = 3 * o.free_bits;
  EXPECT_NEAR(loss[0], plain_loss[1] + 0.8 * (std::max(floor, top) + std::max(floor, lower)), 1e-4);
  EXPECT_NEAR(loss[2], plain_loss[2], 1e-5) << "the reported KL is the KL itself";
  const auto checked = test::expect_model_gradient_matches_differences(floored.impl(), x, rows, 0.8f, 1, 0);
  EXPECT_GE(std::count_if(checked.begin(), checked.end(), [](const std::string& n) { return n.rfind("top_down.", 0) == 0; }),
            4);

  // Both levels under a high floor: no KL gradient anywhere, the loss is reconstruction plus a constant.
  Model high(cfg), recon_only(cfg);
  high.initialize(3);
  recon_only.initialize(3);
  o.free_bits = 50;
  high.impl().set_objective(o);
  test::forward_backward_at(high.impl(), x.data(), rows, 0.8f, 1, 0);
  test::forward_backward_at(recon_only.impl(), x.data(), rows, 0.0f, 1, 0);
  const auto a = high.impl().grads().to_host(), b = recon_only.impl().grads().to_host();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 * (1 + std::abs(b[i]))) << i;

  // A group spanning two levels is refused, by name.
  ModelConfig uneven = hierarchy_config({4, 2}, false);
  o.free_bits_group = 3;
  try {
    o.check_model(uneven);
    ADD_FAILURE() << "a group spanning two levels was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must divide every level's size (4,2)"), std::string::npos) << e.what();
  }
  o.free_bits_group = 2;
  EXPECT_NO_THROW(o.check_model(uneven));
}

// IWAE training through the hierarchy: the bound's gradient (every level's Monte-Carlo log p - log q,
// each sample its own top-down pass) matches differences of the bound, two and three levels, the
// residual posterior, clamped heads, a mixture at the top; at k = 1 the samples are the ELBO's (the
// same noise: the same reconstruction term to the bit).
TEST(Hierarchy, IwaeTrainingGradientMatchesDifferencesOfTheBound) {
  struct Case {
    std::vector<int> levels;
    bool residual;
    PriorType prior;
    LogvarClampKind clamp;
  };
  const std::vector<Case> cases = {{{3, 2}, false, PriorType::StandardNormal, LogvarClampKind::None},
                                   {{2, 3, 2}, true, PriorType::StandardNormal, LogvarClampKind::Soft},
                                   {{3, 2}, true, PriorType::MixtureOfGaussians, LogvarClampKind::None}};
  for (const Case& c : cases) {
    ModelConfig cfg = hierarchy_config(c.levels, c.residual);
    cfg.prior.type = c.prior;
    cfg.prior.components = c.prior == PriorType::StandardNormal ? 0 : 3;
    cfg.logvar_clamp = c.clamp;
    cfg.logvar_min = -0.6f;
    cfg.logvar_max = 0.4f;
    SCOPED_TRACE(cfg.to_json());
    Model model(cfg);
    model.initialize(8);
    ObjectiveConfig o;
    o.type = ObjectiveType::Iwae;
    o.k = 3;
    o.check_model(cfg);
    model.impl().set_objective(o);
    const int rows = 3;
    auto x = random_vector<float>(rows * cfg.input_dim(), 36, 0, 1);
    for (auto& v : x) v = v < 0.5f ? 0.0f : 1.0f;
    const auto checked = test::expect_model_gradient_matches_differences(model.impl(), x, rows, 1.0f, 5, 2);
    const auto top_down = std::count_if(checked.begin(), checked.end(),
                                        [](const std::string& n) { return n.rfind("top_down.", 0) == 0; });
    EXPECT_EQ(top_down, 3 * 4 * int64_t(c.levels.size() - 1)) << "every top-down network's weights and biases";
  }

  ModelConfig cfg = hierarchy_config({3, 2}, true);
  Model elbo(cfg), bound(cfg);
  elbo.initialize(2);
  bound.initialize(2);
  ObjectiveConfig one;
  one.type = ObjectiveType::Iwae;
  one.k = 1;
  bound.impl().set_objective(one);
  const int rows = 5;
  auto x = random_vector<float>(rows * cfg.input_dim(), 37, 0, 1);
  for (auto& v : x) v = v < 0.5f ? 0.0f : 1.0f;
  test::forward_backward_at(elbo.impl(), x.data(), rows, 1.0f, 4, 7);
  test::forward_backward_at(bound.impl(), x.data(), rows, 1.0f, 4, 7);
  EXPECT_EQ(bound.impl().loss().to_host()[1], elbo.impl().loss().to_host()[1]) << "k = 1 draws the ELBO's samples";
  ObjectiveConfig dreg = one;
  dreg.type = ObjectiveType::IwaeDreg;
  try {
    dreg.check_model(cfg);
    ADD_FAILURE() << "iwae_dreg training of a hierarchy was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train a hierarchy with iwae or elbo"), std::string::npos) << e.what();
  }
}

// The hierarchy's importance-weighted bound: at k = 1 an unbiased estimate of the ELBO (their means
// over the test set agree to the estimate's noise), tighter with more samples; the checkpoint
// round-trips; sampling follows each level's temperature.
TEST(Hierarchy, BoundsCheckpointAndLevelTemperatures) {
  SKIP_WITHOUT_FASHION_MNIST();
  const Dataset& data = test::fashion_mnist();
  ModelConfig cfg;
  cfg.encoder.hidden = {64};
  cfg.levels = {6, 6};
  cfg.latent = 12;
  Model model(cfg);
  model.initialize(1);
  TrainConfig tc;
  tc.epochs = 1;
  tc.train_limit = 3000;
  tc.test_limit = 200;
  tc.threads = 2;
  Trainer(model, tc).fit(data);
  EvalOptions eo;
  eo.limit = 2000;
  eo.k = 1;
  const EvalResult one = evaluate(model, data.test, eo);
  EXPECT_NEAR(one.iwae_nll, one.neg_elbo, 0.6) << "k = 1 estimates the ELBO";
  eo.k = 50;
  const EvalResult many = evaluate(model, data.test, eo);
  EXPECT_LT(many.iwae_nll, many.neg_elbo - 0.5);
  ASSERT_EQ(many.level_sizes, (std::vector<int>{6, 6}));
  EXPECT_NEAR(many.kl_per_level[0] + many.kl_per_level[1], many.kl, 1e-9);
  EXPECT_GT(many.kl_per_level[1], 0.0);
  // Units that add to the code: mean KL term above 0.01 nats, level by level.
  ASSERT_EQ(many.kl_active_units_per_level.size(), 2u);
  ASSERT_EQ(many.kl_per_dim.size(), 12u);
  for (int level = 0; level < 2; ++level) {
    int expected = 0;
    for (int u = 6 * level; u < 6 * level + 6; ++u) expected += many.kl_per_dim[size_t(u)] > 0.01;
    EXPECT_EQ(many.kl_active_units_per_level[size_t(level)], expected) << level;
  }
  EXPECT_NE(many.to_json().find("\"kl_active_units_per_level\""), std::string::npos);

  test::ScratchDir dir("hierarchy_checkpoint");
  save_checkpoint(model, dir.file("m.safetensors"));
  Model loaded = load_checkpoint(dir.file("m.safetensors"));
  EXPECT_EQ(loaded.config().to_json(), model.config().to_json());
  EXPECT_EQ(evaluate(loaded, data.test, eo).iwae_nll, many.iwae_nll);

  SampleOptions o;
  o.n = 16;
  o.seed = 3;
  o.level_temperatures = {0.0f, 0.0f};
  const std::vector<float> cold = sample_latents(loaded, o).to_host();
  for (int i = 1; i < o.n; ++i)
    for (int u = 0; u < 12; ++u) EXPECT_EQ(cold[i * 12 + u], cold[u]) << "every level at its prior's mean";
  o.level_temperatures = {1.0f, 0.0f};
  const std::vector<float> top_only = sample_latents(loaded, o).to_host();
  o.level_temperatures = {1.0f, 1.0f};
  const std::vector<float> both = sample_latents(loaded, o).to_host();
  int same_top = 0, same_lower = 0;
  for (int i = 0; i < o.n; ++i)
    for (int u = 0; u < 12; ++u) (u < 6 ? same_top : same_lower) += top_only[i * 12 + u] == both[i * 12 + u];
  EXPECT_EQ(same_top, o.n * 6) << "the top's draw does not depend on the levels below";
  EXPECT_EQ(same_lower, 0) << "the lower level's noise at temperature 1";
  EXPECT_EQ(sample_images(loaded, 4, 1.0f, 2).numel(), 4 * 784);

  // Keeping every level is the reconstruction; keeping the top alone draws the level below: another
  // seed, other images; temperature 0, the prior's mean, the same for any seed.
  const std::vector<float> recon = reconstruct_images(loaded, data.test, 6).second.to_host();
  EXPECT_EQ(reconstruct_keeping_levels(loaded, data.test, 6, 2, 1.0f, 1).to_host(), recon);
  const std::vector<float> a = reconstruct_keeping_levels(loaded, data.test, 6, 1, 1.0f, 1).to_host();
  const std::vector<float> b = reconstruct_keeping_levels(loaded, data.test, 6, 1, 1.0f, 2).to_host();
  EXPECT_NE(a, b);
  EXPECT_NE(a, recon);
  EXPECT_EQ(reconstruct_keeping_levels(loaded, data.test, 6, 1, 0.0f, 1).to_host(),
            reconstruct_keeping_levels(loaded, data.test, 6, 1, 0.0f, 2).to_host());
  EXPECT_THROW(reconstruct_keeping_levels(loaded, data.test, 6, 3, 1.0f, 1), Error);
}

TEST(Hierarchy, ConfigurationMistakesAreNamed) {
  expect_rejected(R"({"posterior": {"levels": [40, 0]}})", "every level needs 1 to 4096 units");
  expect_rejected(R"({"posterior": {"levels": [40, 40], "latent": 32}})", "must be the sum of posterior.levels");
  expect_rejected(R"({"posterior": {"levels": [40, 40], "flow_steps": 2}})", "no flow steps");
  const ModelConfig ok = ModelConfig::from_json(R"({"posterior": {"levels": [40, 20], "residual": true}})");
  EXPECT_EQ(ok.latent, 60);
  EXPECT_TRUE(ok.hierarchical());
  EXPECT_EQ(ModelConfig::from_json(ok.to_json()).to_json(), ok.to_json());
}

}  // namespace
}  // namespace vae
