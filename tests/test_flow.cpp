// The flow (latent/flow.hpp): invertibility f^-1(f(z)) = z, the log-determinant against a
// finite-difference Jacobian, the ActNorms' data-dependent initialisation, the flow prior's and the
// posterior flow's whole-model gradients (ELBO and the importance-weighted bound), sampling from the
// flow prior, and configuration mistakes.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "backend/backend.hpp"
#include "elementwise.cuh"
#include "latent/flow.hpp"
#include "model/model_impl.hpp"
#include "model_gradient_check.hpp"
#include "philox.cuh"
#include "test_util.hpp"
#include "vae/vae.hpp"

namespace vae {
namespace {

using test::random_vector;

// A flow with every parameter drawn (so no layer is the identity), on the CPU.
struct RandomFlow {
  Flow flow;
  Tensor params, grads;
  explicit RandomFlow(int latent, int steps = 3, int hidden = 5) : flow("f", latent, steps, hidden) {
    const int64_t n = align_params(flow.layout(0));
    auto host = random_vector<float>(static_cast<size_t>(n), 77, -0.4, 0.4);
    params = Tensor::from_host(host, {n});
    grads = Tensor::zeros({n});
    flow.bind(params.data(), grads.data());
  }
};

// log |det J| of the flow at each row of x, J by central differences in float (h = 1e-3), through
// an LU determinant in double.
double numeric_logdet(Flow& flow, Backend& be, const std::vector<float>& x, int L) {
  std::vector<double> J(static_cast<size_t>(L) * L);
  for (int j = 0; j < L; ++j) {
    std::vector<float> up = x, down = x;
    const float h = 1e-3f;
    up[j] += h;
    down[j] -= h;
    Tensor tu = Tensor::from_host(up, {1, L}), td = Tensor::from_host(down, {1, L});
    const std::vector<float> yu = Tensor::from_host(std::vector<float>(flow.forward(be, tu.data(), 1, nullptr),
                                                                       flow.forward(be, tu.data(), 1, nullptr) + L),
                                                    {L})
                                      .to_host();
    const float* pd = flow.forward(be, td.data(), 1, nullptr);
    const std::vector<float> yd(pd, pd + L);
    for (int i = 0; i < L; ++i) J[static_cast<size_t>(i) * L + j] = (double(yu[i]) - double(yd[i])) / (2.0 * h);
  }
  double logdet = 0;  // Gaussian elimination with partial pivoting
  for (int c = 0; c < L; ++c) {
    int pivot = c;
    for (int r = c + 1; r < L; ++r)
      if (std::abs(J[static_cast<size_t>(r) * L + c]) > std::abs(J[static_cast<size_t>(pivot) * L + c])) pivot = r;
    for (int k = 0; k < L; ++k) std::swap(J[static_cast<size_t>(c) * L + k], J[static_cast<size_t>(pivot) * L + k]);
    const double d = J[static_cast<size_t>(c) * L + c];
    logdet += std::log(std::abs(d));
    for (int r = c + 1; r < L; ++r) {
      const double f = J[static_cast<size_t>(r) * L + c] / d;
      for (int k = c; k < L; ++k) J[static_cast<size_t>(r) * L + k] -= f * J[static_cast<size_t>(c) * L + k];
    }
  }
  return logdet;
}

TEST(Flow, InverseUndoesForwardAndTheLogDeterminantMatchesTheJacobian) {
  auto be = make_cpu_backend();
  for (int L : {2, 5, 8}) {
    SCOPED_TRACE(L);
    RandomFlow rf(L);
    const int rows = 6;
    rf.flow.prepare(rows, Device::CPU);
    const auto x = random_vector<float>(static_cast<size_t>(rows) * L, 3, -2, 2);
    Tensor xt = Tensor::from_host(x, {rows, L}), logdet = Tensor::zeros({rows}), back({rows, L});
    const float* y = rf.flow.forward(*be, xt.data(), rows, logdet.data());
    Tensor yt = Tensor::from_host(std::vector<float>(y, y + int64_t(rows) * L), {rows, L});
    rf.flow.inverse(*be, yt.data(), rows, back.data());
    test::expect_close(back.to_host(), x, 1e-5, 1e-5, "f^-1(f(x))");
    const auto ld = logdet.to_host();
    for (int r = 0; r < 3; ++r) {
      const std::vector<float> row(x.begin() + r * L, x.begin() + (r + 1) * L);
      EXPECT_NEAR(ld[r], numeric_logdet(rf.flow, *be, row, L), 2e-3) << "row " << r;
    }
  }
}

TEST(Flow, DataInitialisationStandardisesEachActNormsInput) {
  auto be = make_cpu_backend();
  const int L = 4, rows = 64;
  RandomFlow rf(L, 2, 3);
  rf.flow.prepare(rows, Device::CPU);
  auto x = random_vector<float>(static_cast<size_t>(rows) * L, 8, -1, 1);
  for (int r = 0; r < rows; ++r)
    for (int u = 0; u < L; ++u) x[static_cast<size_t>(r) * L + u] = 3.0f + 5.0f * (u + 1) * x[static_cast<size_t>(r) * L + u];
  Tensor xt = Tensor::from_host(x, {rows, L});
  rf.flow.initialize_from(*be, xt.data(), rows);
  // The first ActNorm's output: (x + b) e^s, zero mean and unit variance per dimension.
  const auto p = rf.params.to_host();
  for (int u = 0; u < L; ++u) {
    double s1 = 0, s2 = 0;
    for (int r = 0; r < rows; ++r) {
      const double v = (x[static_cast<size_t>(r) * L + u] + p[u]) * std::exp(double(p[static_cast<size_t>(align_params(L)) + u]));
      s1 += v, s2 += v * v;
    }
    EXPECT_NEAR(s1 / rows, 0.0, 1e-5);
    EXPECT_NEAR(s2 / rows, 1.0, 1e-4);
  }
}

ModelConfig tiny_flow(bool prior_flow, int posterior_steps) {
  ModelConfig cfg;
  cfg.image_height = 3;
  cfg.image_width = 4;
  cfg.encoder.hidden = {6};
  cfg.encoder.activation = Activation::Tanh;
  cfg.latent = 4;
  if (prior_flow) {
    cfg.prior.type = PriorType::Flow;
    cfg.prior.flow_steps = 2;
    cfg.prior.flow_hidden = 3;
  }
  cfg.posterior_flow_steps = posterior_steps;
  cfg.posterior_flow_hidden = 3;
  return cfg;
}

// Every flow tensor of a model gets its gradient: the parameters are perturbed off their identity
// start first (zero last layers would leave the first layers' gradients at zero). The couplings'
// hidden biases are raised so no hidden unit sits within a finite difference of ReLU's kink.
void perturb(Model& model) {
  for (auto [name, t] : model.named_parameters())
    if (name.find(".flow.") != std::string::npos) {
      auto v = t.to_host();
      const auto noise = random_vector<float>(v.size(), std::hash<std::string>{}(name), -0.3, 0.3);
      const bool hidden_bias = name.find("coupling.0.bias") != std::string::npos;
      for (size_t i = 0; i < v.size(); ++i) v[i] += noise[i] + (hidden_bias ? 4.0f : 0.0f);
      t.copy_from_host(v.data(), int64_t(v.size()));
    }
}

TEST(Flow, WholeModelGradientsThroughTheFlowPriorAndThePosteriorFlow) {
  struct V { bool prior_flow; int posterior_steps; bool iwae; };
  for (const V v : {V{true, 0, false}, V{false, 2, false}, V{true, 2, false}, V{false, 2, true}, V{true, 0, true}}) {
    SCOPED_TRACE(std::to_string(v.prior_flow) + " " + std::to_string(v.posterior_steps) + " " + std::to_string(v.iwae));
    Model model(tiny_flow(v.prior_flow, v.posterior_steps));
    model.initialize(5);
    perturb(model);
    if (v.iwae) {
      ObjectiveConfig o;
      o.type = ObjectiveType::Iwae;
      o.k = 3;
      model.impl().set_objective(o);
    }
    const int rows = 5;
    auto x = random_vector<float>(static_cast<size_t>(rows) * model.impl().input_dim(), 6, 0, 1);
    for (auto& e : x) e = e < 0.5f ? 0.0f : 1.0f;
    const auto checked = test::expect_model_gradient_matches_differences(model.impl(), x, rows, 0.7f, 3, 2);
    const auto flows = std::count_if(checked.begin(), checked.end(),
                                     [](const std::string& n) { return n.find(".flow.") != std::string::npos; });
    EXPECT_EQ(flows, 3 * 8 * ((v.prior_flow ? 2 : 0) + v.posterior_steps)) << "three entries of every flow tensor";
  }
}

// Samples from the flow prior are the inverse flow of N(0, T^2 I) draws: the normalising direction
// takes them back to those draws, and at T = 0 every sample is g^-1(0).
TEST(Flow, FlowPriorSamplesAreTheInverseFlowOfGaussianDraws) {
  Model model(tiny_flow(true, 0));
  model.initialize(2);
  perturb(model);
  ModelImpl& m = model.impl();
  Prior& prior = m.latent_block.prior();
  const int n = 16, L = 4;
  prior.prepare(n, Device::CPU);
  Tensor z({n, L}), logp = Tensor::zeros({n});
  prior.sample(*m.backend, z.data(), n, 0.0f, 9);
  const auto at_zero = z.to_host();
  for (int r = 1; r < n; ++r)
    for (int u = 0; u < L; ++u) EXPECT_EQ(at_zero[static_cast<size_t>(r) * L + u], at_zero[u]);
  prior.sample(*m.backend, z.data(), n, 1.0f, 9);
  prior.prepare(n, Device::CPU);
  prior.add_log_prob(*m.backend, z.data(), n, 1.0f, logp.data());
  const auto lp = logp.to_host();
  for (float v : lp) EXPECT_TRUE(std::isfinite(v));
  // g(z) is the draw: its log N plus the log-determinant is log p.
  Tensor eps({n, L});
  ops::normal_fill(*m.backend, eps.data(), n, L, 1.0f, 9, kStreamPrior, 0);
  const auto e = eps.to_host();
  const std::vector<float> ld = prior.last_logdet(n).to_host();
  for (int r = 0; r < n; ++r) {
    double log_n = 0;
    for (int u = 0; u < L; ++u) log_n += -0.5 * double(e[static_cast<size_t>(r) * L + u]) * e[static_cast<size_t>(r) * L + u] - 0.9189385332046727;
    EXPECT_NEAR(lp[r], log_n + ld[r], 1e-3) << "row " << r;
  }
}

TEST(Flow, ConfigurationMistakesNameTheField) {
  const auto fails_with = [](const std::string& text, const std::string& needle) {
    try {
      ModelConfig::from_json(text);
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  fails_with(R"({"posterior": {"latent": 1}, "prior": {"type": "flow"}})", "latent size must be at least 2");
  fails_with(R"({"posterior": {"latent": 1, "flow_steps": 2}})", "latent size must be at least 2");
  fails_with(R"({"prior": {"type": "flow", "flow_steps": 0}})", "prior.flow_steps must be at least 1");
  fails_with(R"({"prior": {"type": "mog", "flow_steps": 2}})", "prior.flow_steps and prior.flow_hidden are for the flow prior");
  fails_with(R"({"posterior": {"flow_steps": 100}})", "posterior.flow_steps must be in [0, 64]");
  const ModelConfig ok = ModelConfig::from_json(R"({"posterior": {"flow_steps": 3}, "prior": {"type": "flow", "flow_steps": 2}})");
  EXPECT_EQ(ModelConfig::from_json(ok.to_json()).to_json(), ok.to_json());
  Model model(tiny_flow(false, 2));
  ObjectiveConfig dreg;
  dreg.type = ObjectiveType::IwaeDreg;
  dreg.k = 2;
  EXPECT_THROW(model.impl().set_objective(dreg), Error);
}

}  // namespace
}  // namespace vae
