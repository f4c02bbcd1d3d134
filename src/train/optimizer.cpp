#include <cmath>

#include "train/schedule.hpp"

namespace vae {

double learning_rate(const TrainConfig& c, int64_t step, int64_t total_steps) {
  if (c.schedule == LrSchedule::Constant || total_steps <= 1) return c.lr;
  const double progress = std::min(1.0, static_cast<double>(step) / static_cast<double>(total_steps - 1));
  return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1.0 + std::cos(M_PI * progress));
}

double kl_weight(const TrainConfig& c, int64_t step, int64_t steps_per_epoch) {
  const ObjectiveConfig& o = c.objective;
  if (o.warmup_epochs <= 0) return o.beta;
  const int64_t span = static_cast<int64_t>(o.warmup_epochs) * steps_per_epoch;
  if (o.warmup == WarmupSchedule::Linear) return o.beta * std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(span));
  if (o.warmup == WarmupSchedule::LinearEpochs) {  // epoch e (1-based) holds e / warmup_epochs
    const int64_t epoch = step / steps_per_epoch + 1;
    return o.beta * std::min(1.0, static_cast<double>(epoch) / static_cast<double>(o.warmup_epochs));
  }
  // Cyclical: each cycle of `span` steps rises over its first warmup_ratio, then holds at beta.
  const double rise = static_cast<double>(o.warmup_ratio) * static_cast<double>(span);
  return o.beta * std::min(1.0, static_cast<double>(step % span + 1) / rise);
}

double capacity_at(const TrainConfig& c, int64_t step, int64_t steps_per_epoch) {
  const ObjectiveConfig& o = c.objective;
  if (o.capacity_epochs <= 0) return o.capacity;
  const double ramp = static_cast<double>(step + 1) / (static_cast<double>(o.capacity_epochs) * steps_per_epoch);
  return o.capacity * std::min(1.0, ramp);
}

}  // namespace vae
