// Check macros for CUDA runtime status codes, for the ops' kernels and the backend alike. Each
// throws vae::Error naming the expression, file:line and what to try; the *_NOTHROW variant is for
// destructors. (cuBLAS's macro is the backend's: src/backend/cuda/cuda_check.hpp.)
#pragma once

#include <cuda_runtime_api.h>

#include <cstdio>
#include <string>

#include "vae/error.hpp"

namespace vae::cuda {

[[noreturn]] inline void throw_cuda(cudaError_t status, const char* expr, const char* file, int line) {
  std::string hint = "check that the NVIDIA driver supports CUDA 13 (nvidia-smi) or run with --device cpu";
  if (status == cudaErrorMemoryAllocation) hint = "out of GPU memory; try a smaller --batch";
  if (status == cudaErrorInsufficientDriver) hint = "the NVIDIA driver is older than this CUDA runtime; update the driver";
  throw Error(std::string("CUDA error ") + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ") in " +
              expr + " at " + file + ":" + std::to_string(line) + "; " + hint);
}

}  // namespace vae::cuda

#define VAE_CUDA_CHECK(expr)                                                          \
  do {                                                                                \
    const cudaError_t vae_status_ = (expr);                                           \
    if (vae_status_ != cudaSuccess) ::vae::cuda::throw_cuda(vae_status_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: the launch itself (bad configuration) fails here, not at the next sync.
#define VAE_CUDA_CHECK_LAUNCH() VAE_CUDA_CHECK(cudaGetLastError())

#define VAE_CUDA_CHECK_NOTHROW(expr)                                                  \
  do {                                                                                \
    const cudaError_t vae_status_ = (expr);                                           \
    if (vae_status_ != cudaSuccess)                                                   \
      std::fprintf(stderr, "vae: CUDA error %s in %s at %s:%d (ignored in a destructor)\n", \
                   cudaGetErrorName(vae_status_), #expr, __FILE__, __LINE__);         \
  } while (0)
