// The structured latent space's parts beyond their op-table rows (issue 28): gated networks and the
// bounded log-variance (their layout against vae_vampprior's, the whole model's gradient, the
// checkpoint and the configuration's mistakes).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "model/model_impl.hpp"
#include "model_gradient_check.hpp"
#include "test_util.hpp"
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

}  // namespace
}  // namespace vae
