// Learning-rate and KL-weight schedules, and the seeded epoch permutation.
#pragma once

#include <cstdint>
#include <vector>

#include "vae/config.hpp"

namespace vae {

// Learning rate for 0-based step out of total_steps.
double learning_rate(const TrainConfig& c, int64_t step, int64_t total_steps);
// The KL weight at 0-based step. Linear warm-up: beta * min(1, (step + 1) / (warmup_epochs *
// steps_per_epoch)); linear_epochs: beta * min(1, e / warmup_epochs) through epoch
// e = step / steps_per_epoch + 1; cyclical: the same ramp as linear over the first warmup_ratio of
// each cycle of warmup_epochs epochs, restarting at every cycle; beta itself without warm-up.
double kl_weight(const TrainConfig& c, int64_t step, int64_t steps_per_epoch);
// The capacity objective's C at step: capacity * min(1, (step + 1) / (capacity_epochs * steps_per_epoch)).
double capacity_at(const TrainConfig& c, int64_t step, int64_t steps_per_epoch);

}  // namespace vae
