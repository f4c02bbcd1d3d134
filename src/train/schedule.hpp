// Learning-rate and KL-weight schedules, and the seeded epoch permutation.
#pragma once

#include <cstdint>
#include <vector>

#include "vae/config.hpp"

namespace vae {

// Learning rate for 0-based step out of total_steps.
double learning_rate(const TrainConfig& c, int64_t step, int64_t total_steps);
// beta * min(1, (step + 1) / (warmup_epochs * steps_per_epoch)); beta itself without warm-up.
double kl_weight(const TrainConfig& c, int64_t step, int64_t steps_per_epoch);
// A uniformly random permutation of 0..n-1 (Fisher-Yates driven by Philox), a function of (seed, epoch).
std::vector<int32_t> epoch_permutation(int64_t n, uint64_t seed, int epoch);

}  // namespace vae
