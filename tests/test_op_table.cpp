// The op table's three modes as tests (op_table.hpp): gradient checks in double for every
// differentiable op, CUDA-vs-CPU parity for every op (skipped without a GPU), the harness's own
// self-test, and the coverage check that keeps an op from leaving the table.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "activation.cuh"
#include "elementwise.cuh"
#include "op_table.hpp"
#include "test_util.hpp"

namespace vae::optable {
namespace {

std::vector<std::string> ops_with(bool gradient) {
  std::vector<std::string> ops;
  for (const Coverage& c : required_coverage())
    if (!gradient || c.gradient) ops.push_back(c.op);
  return ops;
}

std::string test_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

class OpGradient : public ::testing::TestWithParam<std::string> {};

TEST_P(OpGradient, BackwardMatchesFiniteDifferencesInDouble) {
  int checked = 0;
  for (const Case& c : cases(Mode::Gradient))
    if (c.op == GetParam() && c.checks_gradients()) {
      SCOPED_TRACE(c.name());
      check_gradients(c);
      ++checked;
    }
  EXPECT_GT(checked, 0) << GetParam() << " has no gradient-checked case";
}
INSTANTIATE_TEST_SUITE_P(OpTable, OpGradient, ::testing::ValuesIn(ops_with(true)), test_name);

class OpParity : public ::testing::TestWithParam<std::string> {};

TEST_P(OpParity, CudaMatchesCpu) {
  SKIP_WITHOUT_GPU();
  for (const Case& c : cases(Mode::Parity))
    if (c.op == GetParam()) {
      SCOPED_TRACE(c.name());
      check_parity(c);
    }
}
INSTANTIATE_TEST_SUITE_P(OpTable, OpParity, ::testing::ValuesIn(ops_with(false)), test_name);

// Every operation the engine runs is in the table in every mode it is held to, and the table holds
// nothing that is not in the list (a new op must say what it is checked by).
TEST(OpTable, CoversEveryOperationInEachMode) {
  std::set<std::string> required;
  for (const Coverage& cov : required_coverage()) {
    required.insert(cov.op);
    bool parity = false, bench = false, gradient = false;
    for (const Case& c : cases(Mode::Parity)) parity = parity || c.op == cov.op;
    for (const Case& c : cases(Mode::Bench)) bench = bench || c.op == cov.op;
    for (const Case& c : cases(Mode::Gradient)) gradient = gradient || (c.op == cov.op && c.checks_gradients());
    EXPECT_TRUE(parity) << cov.op << " has no parity case";
    EXPECT_TRUE(bench) << cov.op << " has no benchmark case";
    if (cov.gradient) EXPECT_TRUE(gradient) << cov.op << " has no gradient-checked case";
  }
  for (Mode m : {Mode::Gradient, Mode::Parity, Mode::Bench})
    for (const Case& c : cases(m)) {
      EXPECT_TRUE(required.count(c.op)) << c.name() << " is not in required_coverage()";
      if (!c.device) {
        // A differentiable body states its gradients, and a body that states gradients is checked.
        EXPECT_EQ(c.checks_gradients(), !c.grads.empty()) << c.name();
        for (const GradSpec& g : c.grads) EXPECT_LT(g.input, c.inputs.size()) << c.name();
      }
      if (m == Mode::Bench) EXPECT_GT(c.bytes, 0) << c.name() << " states no bytes";
    }
}

// Every parity case on the CPU against the CPU: the bodies run, write every output (no NaN left
// from the poison) and repeat their bits; runs on every machine, so the table cannot rot where no
// GPU is.
TEST(OpTable, EveryParityCaseRunsOnTheCpuAndRepeatsItsBits) {
  for (const Case& c : cases(Mode::Parity)) {
    SCOPED_TRACE(c.name());
    Case exact = c;
    for (auto& o : exact.outputs) o.parity = {0, 0};
    for (auto& g : exact.grads) g.parity = {0, 0};
    for (auto& b : exact.device_bounds) b = {0, 0};
    check_parity(exact, Device::CPU);
  }
}

// The harness itself: an element the second run leaves unwritten stays NaN and fails; a value off
// by more than its bound fails; a wrong gradient fails the finite-difference check.
TEST(OpTable, HarnessCatchesUnwrittenWrongAndMisDifferentiatedOutputs) {
  Case c;
  c.op = "harness";
  c.shape = "n=33";
  c.inputs = {{"x", 33, Draw::Uniform, -2, 2, true}};
  c.outputs = {{"y", 33, {0, 0}}};
  c.grads = {{0, {0, 0}}};
  int calls = 0;
  set_body(c, [&calls](auto& be, auto& io) {
    const int n = ++calls == 2 ? 32 : 33;  // the second run skips the last element
    ops::activation_forward(be, math::Act::Tanh, 0.0f, io.in(0), io.out(0), n);
    if (io.backward()) ops::activation_backward(be, math::Act::Tanh, 0.0f, io.in(0), io.up(0), io.grad(0), 33);
  });
  EXPECT_NONFATAL_FAILURE(check_parity(c, Device::CPU), "element 32");
  calls = 10;  // every run writes everything from here on
  check_parity(c, Device::CPU);
  check_gradients(c);

  Case wrong = c;
  set_body(wrong, [](auto& be, auto& io) {
    ops::activation_forward(be, math::Act::Tanh, 0.0f, io.in(0), io.out(0), 33);
    // The derivative taken as if the op were SiLU: close to tanh's near 0, wrong elsewhere.
    if (io.backward()) ops::activation_backward(be, math::Act::SiLU, 0.0f, io.in(0), io.up(0), io.grad(0), 33);
  });
  EXPECT_NONFATAL_FAILURE(check_gradients(wrong), "harness n=33 dx");

  Case off;
  off.op = "harness";
  off.shape = "device";
  off.device_bounds = {{1e-4, 0}};
  int runs = 0;
  off.device = [&runs](Backend& be, Arena& a) -> std::function<void()> {
    float* y = a.out(5);
    const float value = ++runs == 1 ? 1.0f : 1.001f;
    return [&be, y, value] { ops::fill(be, y, 5, value); };
  };
  EXPECT_NONFATAL_FAILURE(check_parity(off, Device::CPU), "output 0");
}

}  // namespace
}  // namespace vae::optable
