// The whole model's gradient in float against float central differences of its loss, for the tests
// of the graph's plumbing (test_gradients.cpp) and of a learned prior (test_latent.cpp). Float
// differences are coarse, so the check uses h = 1e-2 on each parameter tensor's 3 largest-gradient
// entries, with bound 2e-2 * |numeric| + 2e-3.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "model/model_impl.hpp"
#include "model_step.hpp"

namespace vae::test {

// Returns the name of the tensor of every entry checked.
inline std::vector<std::string> expect_model_gradient_matches_differences(ModelImpl& m, const std::vector<float>& x,
                                                                          int rows, float beta, uint64_t seed,
                                                                          uint64_t step,
                                                                          const std::vector<float>& labels = {}) {
  // A conditional model's labels as the device's float class indices (CPU: host memory).
  const float* y = labels.empty() ? nullptr : labels.data();
  forward_backward_at(m, x.data(), rows, beta, seed, step, y);
  const std::vector<float> grads = m.grads().to_host();
  auto loss_at = [&] {
    forward_backward_at(m, x.data(), rows, beta, seed, step, y);
    return static_cast<double>(m.loss().to_host()[0]);
  };
  std::vector<std::string> checked;
  for (const auto& slice : m.slices()) {
    std::vector<std::pair<float, int64_t>> order;
    for (int64_t i = 0; i < shape_numel(slice.shape); ++i)
      order.emplace_back(-std::abs(grads[slice.offset + i]), slice.offset + i);
    std::sort(order.begin(), order.end());
    for (int t = 0; t < 3 && t < static_cast<int>(order.size()); ++t) {
      const int64_t i = order[t].second;
      float* p = m.params().data() + i;
      const float keep = *p;
      const float hstep = 1e-2f;
      *p = keep + hstep;
      const double up = loss_at();
      *p = keep - hstep;
      const double down = loss_at();
      *p = keep;
      const double numeric = (up - down) / (2 * hstep);
      EXPECT_NEAR(grads[i], numeric, 2e-2 * std::abs(numeric) + 2e-3) << slice.name << " element " << i - slice.offset;
      checked.push_back(slice.name);
    }
  }
  return checked;
}

}  // namespace vae::test
