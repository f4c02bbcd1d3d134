// A model's forward and backward as one step taken on its own: the step's values written to the
// model's one-entry record first (as Trainer::step does), then ModelImpl::forward_backward reading it.
#pragma once

#include "model/model_impl.hpp"

namespace vae::test {

inline void forward_backward_at(ModelImpl& m, const float* x, int rows, float beta, uint64_t seed, uint64_t step,
                                const float* y = nullptr, int64_t row0 = 0) {
  StepScalars s;
  s.philox_step = step;
  s.beta = beta;
  s.kl_grad_weight = beta / static_cast<float>(rows);
  s.capacity = m.objective_config().capacity;
  m.forward_backward(x, rows, seed, m.single_step().write(s), y, row0);
}

}  // namespace vae::test
