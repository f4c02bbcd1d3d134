// Flush-to-zero and denormals-are-zero for the CPU threads that compute.
//
// Why: as a VAE trains, many weights, Adam moments and activations drift into the subnormal range
// (below 1.2e-38). x86 cores handle subnormal operands and results in microcode, 10-100x slower
// than normal floats; a default 10-epoch Fashion-MNIST run slowed from 3.7 s to 12.9 s an epoch.
// FTZ (results) and DAZ (inputs) make them zero instead, as GPUs' flush-to-zero mode and
// PyTorch's hot paths (oneDNN) do. The training results change only below 1.2e-38.
//
// The mode is per thread (MXCSR on x86-64, FPCR on AArch64), so the scope sets it on the calling
// thread and on every OpenMP worker (OpenBLAS is the OpenMP build and runs on the same workers),
// and restores each thread's previous mode when it ends. Scopes nest.
#pragma once

#include <vector>

namespace vae {

class FlushDenormalsScope {
 public:
  FlushDenormalsScope();
  ~FlushDenormalsScope();
  FlushDenormalsScope(const FlushDenormalsScope&) = delete;
  FlushDenormalsScope& operator=(const FlushDenormalsScope&) = delete;

  // Whether the calling thread flushes denormals now (for tests).
  static bool active_on_this_thread();

 private:
  unsigned long caller_mode_ = 0;
  std::vector<unsigned long> worker_modes_;  // by OpenMP thread number
};

}  // namespace vae
