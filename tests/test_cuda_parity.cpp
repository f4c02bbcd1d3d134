// CUDA beyond single operations (each operation's parity is a row of the op table, op_table.cpp):
// out-of-memory errors, and the golden end-to-end run (STYLE.md item 6). On a machine without a
// GPU every test here skips.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <deque>
#include <functional>
#include <iostream>
#include <limits>

#include "backend/backend.hpp"
#include "backend/device_array.hpp"
#include "model/model_impl.hpp"
#include "philox.cuh"
#include "test_util.hpp"
#include "vae/vae.hpp"

namespace vae {
namespace {

// Asking for more GPU memory than there is: one message with the size asked for and what to do.
TEST(CudaErrors, OutOfMemorySaysHowMuchAndSuggestsASmallerBatch) {
  SKIP_WITHOUT_GPU();
  try {
    Tensor huge({int64_t{1} << 42}, Device::CUDA);  // 16 TiB
    FAIL() << "a 16 TiB allocation succeeded";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("out of GPU memory"), std::string::npos) << what;
    EXPECT_NE(what.find("16777216 MiB"), std::string::npos) << what;
    EXPECT_NE(what.find("--batch"), std::string::npos) << what;
  }
  Tensor fine({1024}, Device::CUDA);  // the failure left the device usable
  fine.fill(2.0f);
  EXPECT_EQ(fine.to_host()[1023], 2.0f);
}

// STYLE.md item 6: the same weights, batch and noise on both backends; the loss terms and every
// gradient after the first step, then ten optimizer steps, then a second GPU run for identical bits.
TEST(CudaGolden, TenStepsAgreeAndRepeatBitExact) {
  SKIP_WITHOUT_GPU();
  ModelConfig cfg;  // the default 784-512-256-(2x32) model
  TrainConfig tc;
  tc.seed = 5;
  const int rows = 64;
  std::vector<float> images(size_t(rows) * cfg.input_dim());
  {
    const auto u = test::random_vector<float>(images.size(), 31, 0, 1);
    for (size_t i = 0; i < images.size(); ++i) images[i] = u[i] < 0.3f ? 1.0f : 0.0f;
  }
  auto run = [&](Device device, std::vector<float>* first_grads, std::vector<float>* losses) {
    Model model(cfg, device);
    model.initialize(11);
    tc.device = device;
    tc.tf32 = false;  // strict FP32 for the comparison (the Trainer applies it)
    Trainer trainer(model, tc);
    for (int s = 0; s < 10; ++s) {
      losses->push_back(static_cast<float>(trainer.step(images, rows)));
      if (s == 0) *first_grads = model.impl().grads().to_host();
    }
    return model.impl().params().to_host();
  };
  std::vector<float> g_cpu, g_gpu, g_gpu2, l_cpu, l_gpu, l_gpu2;
  const auto p_cpu = run(Device::CPU, &g_cpu, &l_cpu);
  const auto p_gpu = run(Device::CUDA, &g_gpu, &l_gpu);
  // Bounds: FP32 with different summation orders through six GEMMs.
  for (int s = 0; s < 10; ++s) EXPECT_NEAR(l_gpu[s], l_cpu[s], 1e-4 * std::abs(l_cpu[s])) << "loss at step " << s + 1;
  test::expect_close(g_gpu, g_cpu, 1e-5, 1e-3, "gradients after step 1");
  // After ten Adam steps a gradient within rounding of zero can take either sign, moving its
  // parameter by up to lr per step; so: 99.9% of parameters within 1e-5, all within 10 * lr.
  size_t far = 0;
  double worst = 0;
  for (size_t i = 0; i < p_cpu.size(); ++i) {
    const double e = std::abs(double(p_gpu[i]) - p_cpu[i]);
    far += e > 1e-5;
    worst = std::max(worst, e);
  }
  std::cout << "[golden] parameters beyond 1e-5 after 10 steps: " << far << " of " << p_cpu.size() << ", worst " << worst
            << "\n";
  EXPECT_LE(far, p_cpu.size() / 1000);
  EXPECT_LE(worst, 10 * tc.lr);
  const auto p_gpu2 = run(Device::CUDA, &g_gpu2, &l_gpu2);
  EXPECT_EQ(std::memcmp(p_gpu.data(), p_gpu2.data(), p_gpu.size() * 4), 0) << "two GPU runs differ";
  EXPECT_EQ(l_gpu, l_gpu2);
}

}  // namespace
}  // namespace vae
