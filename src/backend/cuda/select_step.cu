// Select the current training step's scalars from the epoch's table (see StepScalars).
//   current = table[cursor]; cursor += 1
// A captured CUDA graph starts with this kernel, so every replay reads the next step's learning
// rate, KL weight, Philox step and batch offset without any kernel argument changing.
// Shapes: table[count] records, cursor and current single values, all in device memory.
// Bytes: reads 8 + sizeof(StepScalars), writes the same. One thread: the work is a copy of ~60 bytes.
// A cursor outside the table is a bug in the caller; the kernel traps rather than read past the
// table. CPU twin: CpuBackend::select_step.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launchers.hpp"
#include "launch.cuh"

namespace vae::cuda {
namespace {

__global__ void select_step_kernel(const StepScalars* __restrict__ table, int64_t count, int64_t* __restrict__ cursor,
                                   StepScalars* __restrict__ current) {
  const int64_t i = *cursor;
  if (i < 0 || i >= count) __trap();
  *current = table[i];
  *cursor = i + 1;
}

}  // namespace

void launch_select_step(const StepScalars* table, int64_t count, int64_t* cursor, StepScalars* current,
                        cudaStream_t s) {
  require(count >= 1 && table && cursor && current, "select_step", "empty table or null pointer");
  select_step_kernel<<<1, 1, 0, s>>>(table, count, cursor, current);
  VAE_CUDA_CHECK_LAUNCH();
}

}  // namespace vae::cuda
