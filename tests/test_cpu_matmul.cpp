// The CPU backend's linear layers through oneDNN (src/backend/cpu/onednn_matmul.hpp): the same
// values as the OpenBLAS path up to rounding, and the same bits every time for the same shape and
// thread count (our determinism guarantee, which oneDNN 2.6 gives for a fixed environment and
// which this test holds it to), at awkward sizes and the default model's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "test_util.hpp"
#include "vae/vae.hpp"

namespace vae {
namespace {

using test::expect_sums_close;
using test::random_vector;

struct LinearOutputs {
  std::vector<float> y, yr, dx, dw, db, dpre, dbias;
};

// Every linear entry point of a backend made under VAE_CPU_MATMUL=mode ("" for the default policy).
LinearOutputs run_linear(const char* mode, int rows, int in, int out) {
  if (*mode) setenv("VAE_CPU_MATMUL", mode, 1);
  else unsetenv("VAE_CPU_MATMUL");
  const auto be = make_backend(Device::CPU);
  unsetenv("VAE_CPU_MATMUL");
  const auto x = random_vector<float>(size_t(rows) * in, 1, -1, 1), w = random_vector<float>(size_t(out) * in, 2, -1, 1);
  const auto b = random_vector<float>(out, 3, -1, 1), dy = random_vector<float>(size_t(rows) * out, 4, -1, 1);
  auto a = random_vector<float>(size_t(rows) * in, 5, -1, 1);
  for (float& v : a) v = std::max(v, 0.0f);  // a ReLU's output: zeros and positives
  LinearOutputs o;
  o.y.assign(size_t(rows) * out, NAN);  // poisoned: every element must be written
  o.yr.assign(size_t(rows) * out, NAN);
  o.dx.assign(size_t(rows) * in, NAN);
  o.dw.assign(size_t(out) * in, NAN);
  o.db.assign(size_t(out), NAN);
  o.dpre.assign(size_t(rows) * in, NAN);
  o.dbias.assign(size_t(in), NAN);
  be->linear_forward(x.data(), w.data(), b.data(), o.y.data(), rows, in, out);
  be->linear_relu_forward(x.data(), w.data(), b.data(), o.yr.data(), nullptr, rows, in, out);
  be->linear_backward(x.data(), w.data(), dy.data(), o.dx.data(), o.dw.data(), o.db.data(), rows, in, out);
  be->linear_relu_input_backward(w.data(), dy.data(), a.data(), nullptr, o.dpre.data(), o.dbias.data(), rows, in, out);
  return o;
}

TEST(CpuMatmul, OneDnnMatchesOpenBlasAndRepeatsItsBits) {
  set_num_threads(2);
  for (const auto [rows, in, out] : {std::tuple{37, 53, 29}, std::tuple{1, 784, 512}, std::tuple{128, 784, 512},
                                      std::tuple{1024, 32, 256}, std::tuple{300, 512, 784}}) {
    const std::string shape = std::to_string(rows) + "x" + std::to_string(in) + "x" + std::to_string(out);
    const LinearOutputs ref = run_linear("openblas", rows, in, out);
    for (const char* mode : {"", "onednn"}) {
      const LinearOutputs a = run_linear(mode, rows, in, out), b = run_linear(mode, rows, in, out);
      const std::string what = shape + " (" + (*mode ? mode : "default policy") + ")";
      expect_sums_close(a.y, ref.y, in, what + " forward");
      expect_sums_close(a.yr, ref.yr, in, what + " forward + ReLU");
      expect_sums_close(a.dx, ref.dx, out, what + " input gradient");
      expect_sums_close(a.dw, ref.dw, rows, what + " weight gradient");
      expect_sums_close(a.dpre, ref.dpre, out, what + " input gradient through ReLU");
      EXPECT_EQ(a.db, ref.db) << what << ": the bias gradient is ours on both paths";
      // Same bits on a second backend (new primitives), same thread count.
      for (const auto& [x, y] : {std::pair{&a.y, &b.y}, std::pair{&a.yr, &b.yr}, std::pair{&a.dx, &b.dx},
                                  std::pair{&a.dw, &b.dw}, std::pair{&a.dpre, &b.dpre}, std::pair{&a.dbias, &b.dbias}})
        EXPECT_TRUE(*x == *y) << what << ": a second run gave other bits";
    }
  }
}

}  // namespace
}  // namespace vae
