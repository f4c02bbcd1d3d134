// One StepScalars record in a backend's memory. Every training step reads its per-step values
// (the Philox step, beta and the KL term's weight, the capacity, Adam's coefficients) from such a
// record when its work runs; a recorded run selects each step's entry from the epoch's table
// (Backend::select_step), and a step taken on its own (Trainer::step, the classifier, a test) writes
// its values here first. One channel: no operation takes a host copy of a step's values as well.
#pragma once

#include "backend/device_array.hpp"
#include "step_scalars.cuh"

namespace vae {

class StepRecord {
 public:
  explicit StepRecord(Device device) : record_(DeviceArray<StepScalars>::allocate(1, device)) {}
  // Replaces the record (after the work already queued, which may still read the old one: on CUDA
  // the upload is ordered after it) and returns where it lives.
  const StepScalars* write(const StepScalars& s) {
    record_.upload(&s, 1);
    return record_.data();
  }
  const StepScalars* data() const { return record_.data(); }

 private:
  DeviceArray<StepScalars> record_;
};

}  // namespace vae
