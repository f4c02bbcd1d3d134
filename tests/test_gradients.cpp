// Finite-difference gradient checks. Every operation's CPU reference runs in double (the ops are
// templates) and its backward is compared with central differences of a scalar objective
// J = sum(output * R) for a fixed random R. Bound: |analytic - numeric| <= 1e-6 * (1 + |numeric|);
// with h = 1e-5 the truncation error is ~1e-10 and rounding ~1e-11, so a real bug cannot hide under it.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>

#include "backend/backend.hpp"
#include "backend/cpu/cpu_ops.hpp"
#include "graph/layers.hpp"
#include "model/model_impl.hpp"
#include "test_util.hpp"
#include "vae/model.hpp"

namespace vae {
namespace {

using test::random_away_from_zero;
using test::random_vector;

constexpr double kStep = 1e-5;
constexpr double kTol = 1e-6;

// Numerical gradient of objective() with respect to every element of x (modified in place, restored).
std::vector<double> numeric_gradient(std::vector<double>& x, const std::function<double()>& objective) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + kStep;
    const double up = objective();
    x[i] = keep - kStep;
    const double down = objective();
    x[i] = keep;
    g[i] = (up - down) / (2 * kStep);
  }
  return g;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

TEST(GradCheck, Linear) {
  for (auto [rows, in, out] : {std::tuple{1, 1, 1}, std::tuple{3, 5, 7}, std::tuple{4, 13, 2}}) {
    auto x = random_vector<double>(rows * in, 1), w = random_vector<double>(out * in, 2), b = random_vector<double>(out, 3);
    const auto r = random_vector<double>(rows * out, 4);
    std::vector<double> y(rows * out), dx(x.size()), dw(w.size()), db(b.size());
    auto objective = [&] {
      cpu::linear_forward(x.data(), w.data(), b.data(), y.data(), rows, in, out);
      return dot(y, r);
    };
    cpu::linear_backward(x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data(), rows, in, out);
    test::expect_close(dx, numeric_gradient(x, objective), kTol, kTol, "linear dx");
    test::expect_close(dw, numeric_gradient(w, objective), kTol, kTol, "linear dW");
    test::expect_close(db, numeric_gradient(b, objective), kTol, kTol, "linear db");
  }
}

// The fused pair Linear -> ReLU -> Linear: linear_relu_forward, then linear_relu_input_backward
// (the upper layer's input gradient through the ReLU, with the lower layer's bias gradient) and the
// lower layer's weight gradient without its bias, as Sequential runs them.
TEST(GradCheck, LinearReluPair) {
  for (auto [rows, in, hidden, out] : {std::tuple{1, 1, 1, 1}, std::tuple{3, 5, 7, 2}, std::tuple{4, 9, 6, 5}}) {
    // Exact pre-activations at least 1/32 from ReLU's kink (see test::quarters).
    auto x = test::quarters<double>(rows * in, 21), w = test::quarters<double>(hidden * in, 22);
    auto b = test::odd_32nds<double>(hidden, 23);
    const auto v = random_vector<double>(out * hidden, 24), c = random_vector<double>(out, 25);
    const auto r = random_vector<double>(rows * out, 26);
    std::vector<double> y(rows * hidden), z(rows * out);
    auto objective = [&] {
      cpu::linear_relu_forward(x.data(), w.data(), b.data(), y.data(), rows, in, hidden);
      cpu::linear_forward(y.data(), v.data(), c.data(), z.data(), rows, hidden, out);
      return dot(z, r);
    };
    objective();
    std::vector<double> dpre(rows * hidden), db(hidden), dx(x.size()), dw(w.size());
    cpu::linear_relu_input_backward(v.data(), r.data(), y.data(), dpre.data(), db.data(), rows, hidden, out);
    cpu::linear_backward<double>(x.data(), w.data(), dpre.data(), dx.data(), dw.data(), nullptr, rows, in, hidden);
    test::expect_close(dx, numeric_gradient(x, objective), kTol, kTol, "linear+relu dx");
    test::expect_close(dw, numeric_gradient(w, objective), kTol, kTol, "linear+relu dW");
    test::expect_close(db, numeric_gradient(b, objective), kTol, kTol, "linear+relu db (from the upper layer)");
  }
}

TEST(GradCheck, Activations) {
  for (math::Act act : {math::Act::ReLU, math::Act::LeakyReLU, math::Act::Tanh, math::Act::SiLU}) {
    auto x = random_away_from_zero(37, 5);
    for (auto& v : x) v *= 3;
    const auto r = random_vector<double>(37, 6);
    std::vector<double> y(37), dx(37);
    auto objective = [&] {
      cpu::activation_forward(act, 0.01, x.data(), y.data(), 37);
      return dot(y, r);
    };
    cpu::activation_backward(act, 0.01, x.data(), r.data(), dx.data(), 37);
    test::expect_close(dx, numeric_gradient(x, objective), kTol, kTol, "activation " + std::to_string(int(act)));
  }
}

TEST(GradCheck, LatentSampleAndKl) {
  const int rows = 3, latent = 5;  // 5: not a multiple of the Philox block of 4
  for (double eps_scale : {1.0, 0.0}) {
    auto h = random_vector<double>(rows * 2 * latent, 7, -1.5, 1.5);
    const auto r = random_vector<double>(rows * latent, 8);
    const double kl_weight = 0.37;
    std::vector<double> z(rows * latent), kl(rows), kl_dim(latent), dh(h.size());
    auto objective = [&] {
      cpu::latent_sample_kl_forward(rows, latent, 99, 4, 10, eps_scale, h.data(), z.data(), kl.data(), kl_dim.data());
      double s = dot(z, r);
      for (double k : kl) s += kl_weight * k;
      return s;
    };
    objective();
    double total_kl = 0, total_dim = 0;
    for (double k : kl) total_kl += k;
    for (double k : kl_dim) total_dim += k;
    EXPECT_NEAR(total_kl, total_dim, 1e-12) << "KL per sample and per dimension must add up to the same total";
    cpu::latent_sample_kl_backward(rows, latent, 99, 4, 10, eps_scale, h.data(), r.data(), kl_weight, dh.data());
    test::expect_close(dh, numeric_gradient(h, objective), kTol, kTol, "latent dh");
  }
}

TEST(GradCheck, BernoulliLikelihood) {
  const int rows = 3, d = 11;
  auto logits = random_vector<double>(rows * d, 9, -6, 6);
  auto x = random_vector<double>(rows * d, 10, 0, 1);
  for (auto& v : x) v = v < 0.5 ? 0.0 : 1.0;
  std::vector<double> nll(rows), dl(logits.size());
  const double scale = 1.0 / rows;
  auto objective = [&] {
    cpu::bernoulli_nll<double>(logits.data(), x.data(), nll.data(), nullptr, rows, d, 1.0);
    double s = 0;
    for (double v : nll) s += v;
    return s * scale;
  };
  cpu::bernoulli_nll(logits.data(), x.data(), nll.data(), dl.data(), rows, d, scale);
  test::expect_close(dl, numeric_gradient(logits, objective), kTol, kTol, "bernoulli dlogits");
}

TEST(GradCheck, GaussianLikelihoodFixedAndLearnedSigma) {
  const int rows = 4, d = 6;
  auto mean = random_vector<double>(rows * d, 11, -0.5, 1.5);
  auto x = random_vector<double>(rows * d, 12, 0, 1);
  auto log_sigma = random_vector<double>(d, 13, -2, 0.5);
  const double scale = 1.0 / rows;
  std::vector<double> nll(rows), dmean(mean.size()), dls(d);
  for (bool learned : {false, true}) {
    auto objective = [&] {
      cpu::gaussian_nll<double>(mean.data(), x.data(), learned ? log_sigma.data() : nullptr, std::log(0.3), nll.data(),
                                nullptr, nullptr, rows, d, 1.0);
      double s = 0;
      for (double v : nll) s += v;
      return s * scale;
    };
    cpu::gaussian_nll<double>(mean.data(), x.data(), learned ? log_sigma.data() : nullptr, std::log(0.3), nll.data(),
                              dmean.data(), learned ? dls.data() : nullptr, rows, d, scale);
    test::expect_close(dmean, numeric_gradient(mean, objective), kTol, kTol, "gaussian dmean");
    if (learned) test::expect_close(dls, numeric_gradient(log_sigma, objective), kTol, kTol, "gaussian dlog_sigma");
  }
}

TEST(ImportanceSampling, LogDensityRatioAndLogSumExp) {
  const int rows = 2, k = 9, latent = 3;
  const auto h = random_vector<double>(rows * 2 * latent, 14);
  std::vector<double> z(rows * k * latent), lpq(rows * k);
  cpu::latent_importance_sample(h.data(), z.data(), lpq.data(), rows, k, latent, 5, 100, 20);
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
  const auto nll = random_vector<double>(rows * k, 15, 50, 400);
  std::vector<double> run_max(rows, -INFINITY), run_sum(rows, 0.0);
  std::vector<double> a1, n1, a2, n2;
  for (int b = 0; b < rows; ++b)
    for (int j = 0; j < k; ++j) {
      (j < 4 ? a1 : a2).push_back(lpq[b * k + j]);
      (j < 4 ? n1 : n2).push_back(nll[b * k + j]);
    }
  cpu::logsumexp_accumulate(a1.data(), n1.data(), rows, 4, run_max.data(), run_sum.data());
  cpu::logsumexp_accumulate(a2.data(), n2.data(), rows, k - 4, run_max.data(), run_sum.data());
  for (int b = 0; b < rows; ++b) {
    double direct = 0, shift = -INFINITY;
    for (int j = 0; j < k; ++j) shift = std::max(shift, lpq[b * k + j] - nll[b * k + j]);
    for (int j = 0; j < k; ++j) direct += std::exp(lpq[b * k + j] - nll[b * k + j] - shift);
    EXPECT_NEAR(run_max[b] + std::log(run_sum[b]), shift + std::log(direct), 1e-10);
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
    be->activation_forward(acts[l], 0.0f, pre.data(), post.data(), static_cast<int64_t>(pre.size()));
    pres.push_back(pre);
    inputs.push_back(post);
  }
  EXPECT_EQ(out, inputs.back());
  std::vector<float> upstream = dy, want_grads(grads.size(), -7.0f), want_dx(x.size());
  for (int l = 3; l >= 0; --l) {
    std::vector<float> dpre(upstream.size()), down(rows * widths[l]);
    be->activation_backward(acts[l], 0.0f, pres[l].data(), upstream.data(), dpre.data(), static_cast<int64_t>(dpre.size()));
    be->linear_backward(inputs[l].data(), params.data() + slices[2 * l].offset, dpre.data(),
                        l == 0 ? want_dx.data() : down.data(), want_grads.data() + slices[2 * l].offset,
                        want_grads.data() + slices[2 * l + 1].offset, rows, widths[l], widths[l + 1]);
    upstream = down;
  }
  EXPECT_EQ(grads, want_grads);
  EXPECT_EQ(dx, want_dx);
}

// The graph plumbing (Sequential, flat buffers, the model's wiring of encoder, latent, decoder and
// likelihood) in float against float central differences of the whole loss. Float differences are
// coarse, so the check uses h = 1e-2 on the parameters with the largest gradients, with bound
// 2e-2 * |g| + 2e-3.
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
    const float beta = 0.8f;
    m.forward_backward(x.data(), rows, beta, 7, 3);
    const std::vector<float> grads = m.grads.to_host();
    auto loss_at = [&] {
      m.forward_backward(x.data(), rows, beta, 7, 3);
      return static_cast<double>(m.loss.to_host()[0]);
    };
    // Check every parameter slice's 3 largest-gradient entries.
    for (const auto& slice : m.slices) {
      std::vector<std::pair<float, int64_t>> order;
      for (int64_t i = 0; i < shape_numel(slice.shape); ++i)
        order.emplace_back(-std::abs(grads[slice.offset + i]), slice.offset + i);
      std::sort(order.begin(), order.end());
      for (int t = 0; t < 3 && t < static_cast<int>(order.size()); ++t) {
        const int64_t i = order[t].second;
        float* p = m.params.data() + i;
        const float keep = *p;
        const float hstep = 1e-2f;
        *p = keep + hstep;
        const double up = loss_at();
        *p = keep - hstep;
        const double down = loss_at();
        *p = keep;
        const double numeric = (up - down) / (2 * hstep);
        EXPECT_NEAR(grads[i], numeric, 2e-2 * std::abs(numeric) + 2e-3) << slice.name << " element " << i - slice.offset;
      }
    }
  }
}

}  // namespace
}  // namespace vae
