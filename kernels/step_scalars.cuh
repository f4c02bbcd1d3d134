// The values a training step reads when it runs rather than when it is queued, shared by the ops
// (kernels/) and the backends (src/backend/): the per-step record and the latent noise's address.
#pragma once

#include <cstdint>

#include "vae_math.cuh"

namespace vae {

// The values of one training step that change from step to step. The trainer writes a table of
// them per epoch into the backend's memory, and select_step copies the current entry into a fixed
// record that the step's operations read when they run (not when they are queued). That is what
// lets one captured CUDA graph replay every step of a run: no kernel argument changes.
struct StepScalars {
  uint64_t philox_step = 0;       // counter word of this step's binarization and latent noise
  int64_t row0 = 0;               // first position of the batch in the epoch's permutation
  float beta = 1.0f;              // KL weight in the loss
  float kl_grad_weight = 0.0f;    // beta / rows: the KL term's weight in the gradient
  float capacity = 0.0f;          // the capacity objective's C at this step (nats)
  math::AdamCoefficients adam{};  // learning rate and bias corrections of this step (grad_scale unused)
};

// The two addresses an op may take from a training step's record: the Philox counter word of its
// noise and the batch's first position in the epoch's permutation. Outside a training step (the
// evaluator, generation, the tests) there is no record and the caller gives them as constants.
// Every other step value (beta, the KL term's weight, the capacity, Adam's coefficients) has one
// source, the record (backend/step_record.hpp).
VAE_HD uint64_t philox_step_of(const StepScalars* record, uint64_t constant) {
  return record ? record->philox_step : constant;
}
VAE_HD int64_t permutation_offset_of(const StepScalars* record) { return record ? record->row0 : 0; }

// Where the reparameterisation noise for a batch comes from: element (r, c) uses Philox counter
// (c/4, row0 + r, step, kStreamLatent) under seed. eps_scale 0 gives z = mu (posterior mean).
struct LatentArgs {
  int rows = 0;
  int latent = 0;
  uint64_t seed = 0;
  uint64_t step = 0;
  int64_t row0 = 0;
  float eps_scale = 1.0f;
  // A training step's record (always set for a training step's backward, whose weights it holds):
  // the noise's step comes from it when the kernel runs (philox_step_of). Null outside training.
  const StepScalars* per_step = nullptr;
};

}  // namespace vae
