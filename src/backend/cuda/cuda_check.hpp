// Check macros for CUDA runtime (kernels/cuda_check.cuh), cuBLAS and cuBLASLt status codes. Each
// throws vae::Error naming the expression, file:line and what to try.
#pragma once

#include <cublasLt.h>

#include <string>

#include "cuda_check.cuh"
#include "vae/error.hpp"

namespace vae::cuda {

[[noreturn]] inline void throw_cublas(cublasStatus_t status, const char* expr, const char* file, int line) {
  throw Error(std::string("cuBLASLt error ") + cublasLtGetStatusName(status) + " (" + cublasLtGetStatusString(status) +
              ") in " + expr + " at " + file + ":" + std::to_string(line) +
              "; check the GPU and driver with nvidia-smi, or run with --device cpu");
}

}  // namespace vae::cuda

#define VAE_CUBLAS_CHECK(expr)                                                        \
  do {                                                                                \
    const cublasStatus_t vae_status_ = (expr);                                        \
    if (vae_status_ != CUBLAS_STATUS_SUCCESS) ::vae::cuda::throw_cublas(vae_status_, #expr, __FILE__, __LINE__); \
  } while (0)
