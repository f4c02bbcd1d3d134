// The CPU backend's convolutions through oneDNN (src/backend/cpu/onednn_conv.hpp): the same values
// as the im2col path (cpu_conv.hpp, itself checked against the definition in test_conv.cpp) up to
// rounding, every output element written, and the same bits every time for the same shape and
// thread count (our determinism guarantee, which oneDNN 2.6 gives for a fixed environment and which
// these tests hold it to), at awkward sizes and the conv VAE's; and a conv VAE trained twice from one
// seed ends with the same parameters.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "test_util.hpp"
#include "vae/vae.hpp"

namespace vae {
namespace {

using test::expect_sums_close;
using test::random_vector;

struct ConvOutputs {
  std::vector<float> y, y_nobias, dx, dw, db, dw_nobias;
};

// Every convolution entry point of a backend made under VAE_CPU_CONV=mode ("" for the measured
// policy), outputs poisoned with NaN beforehand.
ConvOutputs run_conv(const char* mode, const ConvGeometry& g) {
  if (*mode) setenv("VAE_CPU_CONV", mode, 1);
  else unsetenv("VAE_CPU_CONV");
  const auto be = make_backend(Device::CPU);
  unsetenv("VAE_CPU_CONV");
  const size_t nx = size_t(g.n) * g.c * g.h * g.w, ny = size_t(g.n) * g.k * g.oh() * g.ow(),
               nw = size_t(g.k) * g.c * g.kh * g.kw;
  const auto x = random_vector<float>(nx, 1), w = random_vector<float>(nw, 2), b = random_vector<float>(g.k, 3),
             dy = random_vector<float>(ny, 4);
  ConvOutputs o;
  for (auto* v : {&o.y, &o.y_nobias}) v->assign(ny, NAN);
  o.dx.assign(nx, NAN);
  for (auto* v : {&o.dw, &o.dw_nobias}) v->assign(nw, NAN);
  o.db.assign(size_t(g.k), NAN);
  const size_t bytes = be->conv_workspace_bytes(g);
  std::vector<float> ws(bytes / sizeof(float) + 1, NAN);
  const Workspace workspace{ws.data(), bytes};
  be->conv_forward(g, x.data(), w.data(), b.data(), o.y.data(), workspace);
  be->conv_forward(g, x.data(), w.data(), nullptr, o.y_nobias.data(), workspace);
  be->conv_backward_data(g, dy.data(), w.data(), o.dx.data(), workspace);
  be->conv_backward_filter(g, x.data(), dy.data(), o.dw.data(), o.db.data(), workspace);
  be->conv_backward_filter(g, x.data(), dy.data(), o.dw_nobias.data(), nullptr, workspace);
  return o;
}

TEST(CpuConv, OneDnnMatchesIm2colAndRepeatsItsBits) {
  set_num_threads(2);
  const ConvGeometry cases[] = {
      {37, 1, 28, 28, 32, 4, 4, 2, 1},   // the conv VAE's first layer, an odd batch
      {37, 32, 14, 14, 64, 4, 4, 2, 1},  // its second (and, backward, the decoder's first)
      {3, 3, 11, 7, 5, 3, 3, 3, 2},      // non-square, stride 3, padding 2, few channels
      {2, 9, 6, 6, 10, 1, 1, 1, 0},      // 1x1 kernel, channels that fill no block evenly
      {1, 16, 5, 5, 8, 5, 5, 1, 0},      // the kernel covers the image: one output pixel
  };
  for (const ConvGeometry& g : cases) {
    const std::string shape = std::to_string(g.n) + "x" + std::to_string(g.c) + "x" + std::to_string(g.h) + "x" +
                              std::to_string(g.w) + "->" + std::to_string(g.k) + " k" + std::to_string(g.kh) + " s" +
                              std::to_string(g.stride) + " p" + std::to_string(g.pad);
    const ConvOutputs ref = run_conv("im2col", g);
    const int taps = g.c * g.kh * g.kw, per_filter = g.n * g.oh() * g.ow();
    for (const char* mode : {"", "onednn"}) {
      const ConvOutputs a = run_conv(mode, g), b = run_conv(mode, g);
      const std::string what = shape + " (" + (*mode ? mode : "measured policy") + ")";
      expect_sums_close(a.y, ref.y, taps, what + " forward");
      expect_sums_close(a.y_nobias, ref.y_nobias, taps, what + " forward without bias");
      expect_sums_close(a.dx, ref.dx, g.k * g.kh * g.kw, what + " backward data");
      expect_sums_close(a.dw, ref.dw, per_filter, what + " weight gradient");
      expect_sums_close(a.db, ref.db, per_filter, what + " bias gradient");
      expect_sums_close(a.dw_nobias, ref.dw_nobias, per_filter, what + " weight gradient without bias");
      // Same bits from a second backend (new primitives), same thread count.
      for (const auto& [x, y] : {std::pair{&a.y, &b.y}, std::pair{&a.y_nobias, &b.y_nobias}, std::pair{&a.dx, &b.dx},
                                  std::pair{&a.dw, &b.dw}, std::pair{&a.db, &b.db}, std::pair{&a.dw_nobias, &b.dw_nobias}})
        EXPECT_TRUE(std::memcmp(x->data(), y->data(), x->size() * sizeof(float)) == 0)
            << what << ": a second run gave other bits";
    }
  }
}

// A workspace sized for one batch serves a smaller one on the oneDNN path too (an epoch's short
// last batch), and one too small for the oneDNN call is refused with what it needs.
TEST(CpuConv, OneDnnTakesTheWorkspaceOfALargerBatchAndRefusesASmallerOne) {
  setenv("VAE_CPU_CONV", "onednn", 1);
  const auto be = make_backend(Device::CPU);
  unsetenv("VAE_CPU_CONV");
  const ConvGeometry large{64, 32, 14, 14, 64, 4, 4, 2, 1};
  ConvGeometry small = large;
  small.n = 5;
  const size_t bytes = be->conv_workspace_bytes(large);
  ASSERT_GE(bytes, be->conv_workspace_bytes(small));
  std::vector<float> ws(bytes / sizeof(float) + 1);
  const auto x = random_vector<float>(size_t(small.n) * 32 * 14 * 14, 1), w = random_vector<float>(64 * 32 * 16, 2);
  std::vector<float> y(size_t(small.n) * 64 * 7 * 7, NAN);
  be->conv_forward(small, x.data(), w.data(), nullptr, y.data(), Workspace{ws.data(), bytes});
  for (float v : y) ASSERT_TRUE(std::isfinite(v));
  try {
    be->conv_forward(large, x.data(), w.data(), nullptr, y.data(), Workspace{ws.data(), be->conv_workspace_bytes(small)});
    ADD_FAILURE() << "a workspace sized for 5 images was accepted for 64";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("conv_workspace_bytes"), std::string::npos) << e.what();
  }
}

// The conv VAE trained twice from one seed on the measured policy: the same parameters, bit for
// bit, after steps that cross every convolution path (oneDNN forward, backward data and weight
// gradient; im2col's weight gradient of the 1-channel layers).
TEST(CpuConv, ConvVaeTrainedTwiceFromOneSeedEndsWithTheSameBits) {
  set_num_threads(2);
  ModelConfig config;
  config.encoder.type = NetworkType::Conv;
  config.encoder.channels = {8, 16};
  config.encoder.hidden = {64};
  config.latent = 8;
  TrainConfig train;
  train.batch = 48;
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<float> images(size_t(train.batch) * config.input_dim());
  for (float& v : images) v = u(gen) < 0.3f ? 1.0f : 0.0f;
  std::vector<std::vector<float>> finals;
  for (int run = 0; run < 2; ++run) {
    Model model(config);
    model.initialize(11);
    Trainer trainer(model, train);
    for (int step = 0; step < 4; ++step) trainer.step(images, train.batch);
    std::vector<float> all;
    for (const auto& [name, t] : model.named_parameters()) {
      const auto v = t.to_host();
      all.insert(all.end(), v.begin(), v.end());
    }
    finals.push_back(std::move(all));
  }
  ASSERT_EQ(finals[0].size(), finals[1].size());
  EXPECT_EQ(std::memcmp(finals[0].data(), finals[1].data(), finals[0].size() * sizeof(float)), 0);
  Model fresh(config);
  fresh.initialize(11);
  std::vector<float> initial;
  for (const auto& [name, t] : fresh.named_parameters()) {
    const auto v = t.to_host();
    initial.insert(initial.end(), v.begin(), v.end());
  }
  EXPECT_NE(initial, finals[0]) << "the steps changed nothing: the comparison above would be vacuous";
}

}  // namespace
}  // namespace vae
