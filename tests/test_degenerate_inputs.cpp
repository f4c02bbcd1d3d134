// What the engine does at the edges a static review of the CUDA code found undefined, checked on the
// CPU where the logic is shared with CUDA (the same functors, or the same choice functions):
//  - the importance-weighted bound when every log-weight of a row is -inf (no NaN);
//  - softmax cross-entropy with a label outside the classes (no read outside the row, NaN out);
//  - a convolution handed a workspace smaller than it needs (refused, not overrun), and a network
//    whose later batches are smaller than the one it was prepared for (the real size is passed);
//  - how cuDNN's algorithms are filtered by determinism, math type and workspace, and how cuBLASLt's
//    are tried in order with a refusal skipped for good (backend/algorithm_choice.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "backend/algorithm_choice.hpp"
#include "backend/backend.hpp"
#include "graph/layers.hpp"
#include "importance_sample.cuh"
#include "iwae_objective.cuh"
#include "softmax_xent.cuh"
#include "test_util.hpp"

namespace vae {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// ------------------------------------------------------------------ all log-weights -inf

TEST(DegenerateInputs, LogSumExpOfAllMinusInfinityIsMinusInfinityThenRecovers) {
  auto be = make_backend(Device::CPU);
  const int rows = 3, k = 4;
  // Row 0: every weight -inf (lpq = -inf); row 1: nll = +inf everywhere; row 2: ordinary values.
  std::vector<float> lpq = {-kInf, -kInf, -kInf, -kInf, -1, -2, -3, -4, -1, -2, -3, -4};
  std::vector<float> nll = {5, 6, 7, 8, kInf, kInf, kInf, kInf, 1, 1, 1, 1};
  std::vector<float> run_max(rows, -kInf), run_sum(rows, 0.0f);
  ops::logsumexp_accumulate(*be, lpq.data(), nll.data(), rows, k, run_max.data(), run_sum.data());
  for (int b : {0, 1}) {
    EXPECT_EQ(run_max[b], -kInf) << "row " << b;
    EXPECT_EQ(run_sum[b], 0.0f) << "row " << b << ": exp(-inf - (-inf)) would be NaN";
    EXPECT_EQ(run_max[b] + std::log(run_sum[b]), -kInf) << "log sum of zero weights";
  }
  double want = 0;
  for (int j = 0; j < k; ++j) want += std::exp(double(lpq[8 + j]) - nll[8 + j]);
  EXPECT_NEAR(run_max[2] + std::log(run_sum[2]), std::log(want), 1e-6);

  // A later chunk with finite weights for row 0: the running pair picks them up as if the first
  // chunk had never been there (it contributed zero).
  std::vector<float> lpq2 = {-1, -2, -3, -4, -kInf, -kInf, -kInf, -kInf, -1, -2, -3, -4};
  std::vector<float> nll2 = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  ops::logsumexp_accumulate(*be, lpq2.data(), nll2.data(), rows, k, run_max.data(), run_sum.data());
  EXPECT_NEAR(run_max[0] + std::log(run_sum[0]), std::log(want), 1e-6);
  EXPECT_EQ(run_max[1], -kInf);
  EXPECT_EQ(run_sum[1], 0.0f);
  EXPECT_NEAR(run_max[2] + std::log(run_sum[2]), std::log(2 * want), 1e-6);
}

TEST(DegenerateInputs, IwaeWeightsOfARowWithAllZeroWeightsAreUniformAndTheBoundIsMinusInfinity) {
  auto be = make_backend(Device::CPU);
  const int rows = 2, k = 3;
  for (bool dreg : {false, true}) {
    SCOPED_TRACE(dreg ? "DReG" : "IWAE");
    std::vector<float> lpq = {-kInf, -kInf, -kInf, -0.5f, -1.0f, -2.0f};
    std::vector<float> nll = {1, 2, 3, 4, 5, 6};
    std::vector<float> bound(rows), dw(rows * k), ew(rows * k), zs(rows * k), loss(3);
    ops::iwae_objective(*be, lpq.data(), nll.data(), rows, k, dreg, bound.data(), dw.data(), ew.data(),
                        dreg ? zs.data() : static_cast<float*>(nullptr), loss.data());
    EXPECT_EQ(bound[0], -kInf);
    EXPECT_EQ(loss[0], kInf) << "the loss is +inf (a step the divergence guard skips), not NaN";
    for (int j = 0; j < k; ++j) {
      EXPECT_FLOAT_EQ(dw[j], 1.0f / (rows * k)) << j;
      EXPECT_FLOAT_EQ(ew[j], (dreg ? 1.0f / k : 1.0f) / (rows * k)) << j;
      if (dreg) EXPECT_FLOAT_EQ(zs[j], 1.0f / k) << j;
    }
    // The ordinary row is untouched by its neighbour: normalised weights summing to one.
    double sum = 0;
    for (int j = 0; j < k; ++j) sum += dw[k + j] * rows;
    EXPECT_NEAR(sum, 1.0, 1e-6);
    EXPECT_TRUE(std::isfinite(bound[1]));
  }
}

// ------------------------------------------------------------------ labels outside the classes

TEST(DegenerateInputs, SoftmaxXentWithALabelOutsideTheClassesGivesNaNForThatRowOnly) {
  auto be = make_backend(Device::CPU);
  const int rows = 5, classes = 3;
  // Row r's logits sit right after row r-1's: a label of `classes` would read the next row's first
  // logit, -1 the previous row's last; 1.5 is no class index.
  std::vector<float> logits = test::random_vector<float>(rows * classes, 4);
  std::vector<float> y = {0, 3, -1, 1.5f, 2};
  std::vector<float> loss(rows), correct(rows), dlogits(rows * classes);
  ops::softmax_xent(*be, logits.data(), y.data(), rows, classes, loss.data(), correct.data(), dlogits.data(),
                    1.0f / rows);
  for (int r : {1, 2, 3}) {
    SCOPED_TRACE("row " + std::to_string(r));
    EXPECT_TRUE(std::isnan(loss[r]));
    EXPECT_TRUE(std::isnan(correct[r]));
    for (int c = 0; c < classes; ++c) EXPECT_TRUE(std::isnan(dlogits[r * classes + c]));
  }
  for (int r : {0, 4}) {
    SCOPED_TRACE("row " + std::to_string(r));
    const float* l = logits.data() + r * classes;
    const int label = static_cast<int>(y[r]);
    const double lse = std::log(std::exp(double(l[0])) + std::exp(double(l[1])) + std::exp(double(l[2])));
    EXPECT_NEAR(loss[r], lse - l[label], 1e-5);
    for (int c = 0; c < classes; ++c) EXPECT_TRUE(std::isfinite(dlogits[r * classes + c]));
  }
}

// ------------------------------------------------------------------ convolution workspaces

TEST(DegenerateInputs, ConvolutionRefusesAWorkspaceSmallerThanItNeeds) {
  auto be = make_backend(Device::CPU);
  const ConvGeometry g{4, 2, 9, 9, 3, 3, 3, 1, 1};
  const size_t need = be->conv_workspace_bytes(g);
  ASSERT_GT(need, sizeof(float));
  std::vector<float> x(size_t(g.n) * g.c * g.h * g.w, 0.5f), w(size_t(g.k) * g.c * g.kh * g.kw, 0.25f);
  std::vector<float> y(size_t(g.n) * g.k * g.oh() * g.ow()), dw(w.size()), dx(x.size());
  std::vector<float> ws(need / sizeof(float) + 1);
  const Workspace small{ws.data(), need - sizeof(float)}, enough{ws.data(), need};
  for (const Workspace& bad : {small, Workspace{nullptr, need}}) {
    try {
      be->conv_forward(g, x.data(), w.data(), nullptr, y.data(), bad);
      ADD_FAILURE() << "a short workspace was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("needs " + std::to_string(need)), std::string::npos) << e.what();
    }
    EXPECT_THROW(be->conv_backward_data(g, y.data(), w.data(), dx.data(), bad), Error);
    EXPECT_THROW(be->conv_backward_filter(g, x.data(), y.data(), dw.data(), nullptr, bad), Error);
  }
  EXPECT_NO_THROW(be->conv_forward(g, x.data(), w.data(), nullptr, y.data(), enough));
}

// A network prepared for a large batch and then run on smaller ones
// (the epoch's short last batch): every call gets the workspace's real size, and the outputs of
// the small batches are the first rows of the large one's.
TEST(DegenerateInputs, ConvNetworkRunsBatchesSmallerThanItWasPreparedFor) {
  auto be = make_backend(Device::CPU);
  Sequential net("conv");
  net.add(std::make_unique<Conv2d>(Shape{1, 12, 12}, 4, 3, 2, 1));
  net.add(std::make_unique<ConvTranspose2d>(Shape{4, 6, 6}, 2, 4, 2, 1, 0));
  const int64_t n = net.layout(0);
  std::vector<float> params = test::random_vector<float>(static_cast<size_t>(n), 3), grads(static_cast<size_t>(n));
  net.bind(params.data(), grads.data());
  net.prepare(96, *be);
  const int d = static_cast<int>(net.in_features()), out = static_cast<int>(net.out_features());
  const std::vector<float> x = test::random_vector<float>(size_t(96) * d, 5);
  const std::vector<float> full = [&] {
    const float* y = net.forward(*be, x.data(), 96);
    return std::vector<float>(y, y + size_t(96) * out);
  }();
  for (int rows : {1, 7, 95}) {
    SCOPED_TRACE(rows);
    const float* y = net.forward(*be, x.data(), rows);
    // To rounding: the GEMM's blocking may follow the chunk's image count.
    for (int64_t i = 0; i < int64_t(rows) * out; ++i) ASSERT_NEAR(y[i], full[size_t(i)], 1e-5) << i;
    std::vector<float> dy = test::random_vector<float>(size_t(rows) * out, 6), dx(size_t(rows) * d);
    EXPECT_NO_THROW(net.backward(*be, x.data(), dy.data(), dx.data(), rows));
  }
}

// ------------------------------------------------------------------ cuDNN's and cuBLASLt's choices

TEST(AlgorithmChoice, ConvMathTypesFollowTheRunsPrecision) {
  // Strict FP32: only FMA math.
  EXPECT_EQ(conv_math_refusal(ConvMath::Fma, false), "");
  EXPECT_NE(conv_math_refusal(ConvMath::Default, false), "");
  EXPECT_NE(conv_math_refusal(ConvMath::TensorOp, false), "");
  // TF32: FMA, default and tensor-op math.
  for (ConvMath m : {ConvMath::Fma, ConvMath::Default, ConvMath::TensorOp}) EXPECT_EQ(conv_math_refusal(m, true), "");
  // FP32 data converted to FP16 is refused in both modes, and the reason says so.
  for (bool tf32 : {false, true})
    EXPECT_NE(conv_math_refusal(ConvMath::TensorOpAllowConversion, tf32).find("FP16"), std::string::npos);
}

TEST(AlgorithmChoice, ConvCandidatesKeepCudnnsOrderAndTheFirstThatFitsRuns) {
  using M = ConvMath;
  const std::vector<ConvCandidate> offered = {
      {1, M::TensorOpAllowConversion, true, true, 0},  // fastest, but FP16 conversion
      {6, M::TensorOp, true, false, 0},                // not deterministic
      {7, M::TensorOp, false, true, 0},                // the heuristic's status was not SUCCESS
      {2, M::TensorOp, true, true, 64 << 20},          // TF32, needs 64 MiB
      {0, M::Fma, true, true, 1 << 20},                // FMA, 1 MiB
      {5, M::Default, true, true, 0},                  // no workspace
  };
  const auto tf32 = usable_conv_candidates(offered, true);
  ASSERT_EQ(tf32.size(), 3u);
  EXPECT_EQ(tf32[0].algo, 2);
  EXPECT_EQ(tf32[1].algo, 0);
  EXPECT_EQ(tf32[2].algo, 5);
  // The workspace sized for the preferred algorithm runs it; a smaller one (another batch size's
  // plan) takes the first that fits, down to one that needs none.
  EXPECT_EQ(first_fitting(tf32, 64 << 20)->algo, 2);
  EXPECT_EQ(first_fitting(tf32, (64 << 20) - 1)->algo, 0);
  EXPECT_EQ(first_fitting(tf32, 4096)->algo, 5);
  const auto strict = usable_conv_candidates(offered, false);
  ASSERT_EQ(strict.size(), 1u);
  EXPECT_EQ(strict[0].algo, 0);
  EXPECT_EQ(first_fitting(strict, 1 << 20)->algo, 0);
  EXPECT_EQ(first_fitting(strict, (1 << 20) - 1), nullptr) << "nothing fits: the caller throws";
}

TEST(AlgorithmChoice, RefusedAlgorithmsAreSkippedInOrderAndForGood) {
  std::vector<int> tried;
  std::vector<bool> accepts = {false, false, true, true};
  auto attempt = [&](int i) {
    tried.push_back(i);
    return bool(accepts[size_t(i)]);
  };
  int next = 0;
  EXPECT_EQ(first_accepted(next, 4, attempt), 2);
  EXPECT_EQ(tried, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(next, 2);
  // The next call starts at the one that ran: the refusals are not paid again.
  tried.clear();
  EXPECT_EQ(first_accepted(next, 4, attempt), 2);
  EXPECT_EQ(tried, (std::vector<int>{2}));
  // It is refused too (a new pointer alignment, say): the last one runs, then none is left.
  accepts[2] = false;
  EXPECT_EQ(first_accepted(next, 4, attempt), 3);
  accepts[3] = false;
  EXPECT_EQ(first_accepted(next, 4, attempt), -1);
  EXPECT_EQ(next, 4);
  tried.clear();
  EXPECT_EQ(first_accepted(next, 4, attempt), -1);
  EXPECT_TRUE(tried.empty()) << "an exhausted plan tries nothing";
}

}  // namespace
}  // namespace vae
