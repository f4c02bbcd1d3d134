// Checks above the single operation: the importance-sampling log-density against a direct
// computation, Sequential's fusion pass against the layers one by one, and the whole model's wiring
// against float finite differences. Each operation's own gradient check is a row of the op table
// (op_table.cpp, run by test_op_table.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>

#include "activation.cuh"
#include "backend/backend.hpp"
#include "backend/cpu/cpu_ops.hpp"
#include "graph/layers.hpp"
#include "importance_sample.cuh"
#include "latent_sample_kl.cuh"
#include "model/model_impl.hpp"
#include "model_gradient_check.hpp"
#include "op_table.hpp"
#include "test_util.hpp"
#include "vae/model.hpp"

namespace vae {
namespace {

using test::random_vector;

// The fused latent op's two KL outputs describe the same total (the op table checks its gradient).
TEST(LatentSampleKl, KlPerSampleAndPerDimensionAddUp) {
  const int rows = 3, latent = 5;
  const auto h = random_vector<double>(rows * 2 * latent, 7, -1.5, 1.5);
  std::vector<double> z(rows * latent), kl(rows), kl_dim(latent);
  LatentArgs a;
  a.rows = rows;
  a.latent = latent;
  a.seed = 99;
  a.step = 4;
  a.row0 = 10;
  optable::Ref<double> cpu;
  ops::latent_sample_kl_forward(cpu, a, h.data(), z.data(), kl.data(), kl_dim.data());
  double total_kl = 0, total_dim = 0;
  for (double k : kl) total_kl += k;
  for (double k : kl_dim) total_dim += k;
  EXPECT_NEAR(total_kl, total_dim, 1e-12);
}

TEST(ImportanceSampling, LogDensityRatioAndLogSumExp) {
  const int rows = 2, k = 9, latent = 3;
  const auto h = random_vector<double>(rows * 2 * latent, 14);
  std::vector<double> z(rows * k * latent), lpq(rows * k);
  optable::Ref<double> cpu;
  ops::latent_importance_sample(cpu, h.data(), z.data(), lpq.data(), rows, k, latent, 5, 100, 20);
  // log N(z; 0, I) - log N(z; mu, sigma^2) computed directly from z.
  for (int b = 0; b < rows; ++b)
    for (int j = 0; j < k; ++j) {
      double want = 0;
      for (int u = 0; u < latent; ++u) {
        const double mu = h[b * 2 * latent + u];
        const double lv = math::soft_clamp(h[b * 2 * latent + latent + u], double(math::kLogvarMin), double(math::kLogvarMax));
        const double zz = z[(b * k + j) * latent + u];
        want += -0.5 * zz * zz - (-0.5 * (zz - mu) * (zz - mu) / std::exp(lv) - 0.5 * lv);
      }
      EXPECT_NEAR(lpq[b * k + j], want, 1e-10);
    }
  // Streaming log-sum-exp over two chunks equals the direct value.
  // Weights within a few nats of each other, so that the effective sample size is neither 1 nor k.
  for (double& v : lpq) v = 0;
  const auto nll = random_vector<double>(rows * k, 15, 0, 3);
  std::vector<double> run_max(rows, -INFINITY), run_sum(rows, 0.0), run_sq(rows, 0.0);
  std::vector<double> a1, n1, a2, n2;
  for (int b = 0; b < rows; ++b)
    for (int j = 0; j < k; ++j) {
      (j < 4 ? a1 : a2).push_back(lpq[b * k + j]);
      (j < 4 ? n1 : n2).push_back(nll[b * k + j]);
    }
  ops::logsumexp_accumulate(cpu, a1.data(), n1.data(), rows, 4, run_max.data(), run_sum.data(), run_sq.data());
  ops::logsumexp_accumulate(cpu, a2.data(), n2.data(), rows, k - 4, run_max.data(), run_sum.data(), run_sq.data());
  for (int b = 0; b < rows; ++b) {
    double sum_w = 0, sum_w2 = 0;
    for (int j = 0; j < k; ++j) {
      const double w = std::exp(lpq[b * k + j] - nll[b * k + j]);
      sum_w += w, sum_w2 += w * w;
    }
    EXPECT_NEAR(run_max[b] + std::log(run_sum[b]), std::log(sum_w), 1e-10);
    // The effective sample size (sum w)^2 / sum w^2 from the running sums.
    const double ess = run_sum[b] * run_sum[b] / run_sq[b];
    EXPECT_NEAR(ess, sum_w * sum_w / sum_w2, 1e-9 * k);
    EXPECT_GT(ess, 1.5);
    EXPECT_LT(ess, k - 0.5);
  }
}

// Sequential fuses each Linear followed by ReLU (one backend call forward, and the upper layer's
// input gradient through the ReLU with the pair's bias gradient backward). On the CPU that must give
// exactly the bits of the layers run one by one, including a pair at the very end (whose ReLU
// gradient comes from outside) and a Tanh in the middle (not fused).
TEST(SequentialFusion, SameBitsAsLayerByLayer) {
  auto be = make_cpu_backend();
  Sequential seq;
  seq.add(std::make_unique<Linear>(5, 7));
  seq.add(std::make_unique<ActivationLayer>(Activation::ReLU, 0.0f, Shape{7}));
  seq.add(std::make_unique<Linear>(7, 6));
  seq.add(std::make_unique<ActivationLayer>(Activation::ReLU, 0.0f, Shape{6}));
  seq.add(std::make_unique<Linear>(6, 4));
  seq.add(std::make_unique<ActivationLayer>(Activation::Tanh, 0.0f, Shape{4}));
  seq.add(std::make_unique<Linear>(4, 3));
  seq.add(std::make_unique<ActivationLayer>(Activation::ReLU, 0.0f, Shape{3}));
  const int64_t n = align_params(seq.layout(0));
  std::vector<float> params(static_cast<size_t>(n), 0.0f), grads(params.size(), -7.0f);
  uint32_t tensor_index = 0;
  seq.initialize(params, InitScheme::Torch, 3, tensor_index);
  seq.bind(params.data(), grads.data());
  const int rows = 6;
  const auto x = random_vector<float>(rows * 5, 30), dy = random_vector<float>(rows * 3, 31);
  std::vector<float> dx(x.size());
  seq.prepare(rows, *be);
  const float* y = seq.forward(*be, x.data(), rows);
  const std::vector<float> out(y, y + rows * 3);
  seq.backward(*be, x.data(), dy.data(), dx.data(), rows);

  // Layer by layer, unfused, with the same parameters (offsets from the Sequential's layout).
  std::vector<ParamSlice> slices;
  seq.param_slices("", slices);
  ASSERT_EQ(slices.size(), 8u);
  const int widths[5] = {5, 7, 6, 4, 3};
  const math::Act acts[4] = {math::Act::ReLU, math::Act::ReLU, math::Act::Tanh, math::Act::ReLU};
  std::vector<std::vector<float>> inputs{x}, pres;
  for (int l = 0; l < 4; ++l) {
    std::vector<float> pre(rows * widths[l + 1]), post(pre.size());
    be->linear_forward(inputs.back().data(), params.data() + slices[2 * l].offset,
                       params.data() + slices[2 * l + 1].offset, pre.data(), rows, widths[l], widths[l + 1]);
    ops::activation_forward(*be, acts[l], 0.0f, pre.data(), post.data(), static_cast<int64_t>(pre.size()));
    pres.push_back(pre);
    inputs.push_back(post);
  }
  EXPECT_EQ(out, inputs.back());
  std::vector<float> upstream = dy, want_grads(grads.size(), -7.0f), want_dx(x.size());
  for (int l = 3; l >= 0; --l) {
    std::vector<float> dpre(upstream.size()), down(rows * widths[l]);
    ops::activation_backward(*be, acts[l], 0.0f, pres[l].data(), upstream.data(), dpre.data(), static_cast<int64_t>(dpre.size()));
    be->linear_backward(inputs[l].data(), params.data() + slices[2 * l].offset, dpre.data(),
                        l == 0 ? want_dx.data() : down.data(), want_grads.data() + slices[2 * l].offset,
                        want_grads.data() + slices[2 * l + 1].offset, rows, widths[l], widths[l + 1]);
    upstream = down;
  }
  EXPECT_EQ(grads, want_grads);
  EXPECT_EQ(dx, want_dx);
}

// The graph plumbing (Sequential, flat buffers, the model's wiring of encoder, latent, decoder and
// likelihood) in float against float central differences of the whole loss (model_gradient_check.hpp).
TEST(GradCheck, WholeModelInFloat) {
  for (Likelihood lik : {Likelihood::Bernoulli, Likelihood::Gaussian, Likelihood::Bernoulli}) {
    // The third pass: a conv encoder and its mirrored decoder (Conv2d, Flatten, Reshape, ConvTranspose2d).
    static int pass = 0;
    const bool conv = pass++ == 2;
    ModelConfig cfg;
    cfg.image_height = conv ? 9 : 3;
    cfg.image_width = conv ? 9 : 5;
    cfg.encoder.hidden = {7, 6};
    if (conv) {
      cfg.encoder.type = NetworkType::Conv;
      cfg.encoder.channels = {3, 4};
      cfg.encoder.kernel = 3;
      cfg.encoder.hidden = {5};
    }
    cfg.latent = 3;
    cfg.encoder.activation = Activation::Tanh;  // smooth, so differences are meaningful everywhere
    cfg.likelihood = lik;
    cfg.learned_sigma = lik == Likelihood::Gaussian;
    cfg.gaussian_sigma = 0.5f;
    Model model(cfg);
    model.initialize(3);
    ModelImpl& m = model.impl();
    const int rows = 4;
    auto x = random_vector<float>(rows * cfg.input_dim(), 16, 0, 1);
    if (lik == Likelihood::Bernoulli)
      for (auto& v : x) v = v < 0.5f ? 0.0f : 1.0f;
    test::expect_model_gradient_matches_differences(m, x, rows, 0.8f, 7, 3);
  }
}

}  // namespace
}  // namespace vae
