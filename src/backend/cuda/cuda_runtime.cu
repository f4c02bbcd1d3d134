// CUDA runtime glue: device queries, allocation with an actionable out-of-memory message, copies.
#include <cuda_runtime.h>

#include <string>

#include "backend/cuda/cuda_runtime.hpp"
#include "vae/error.hpp"

namespace vae::cuda {
namespace {

void check(cudaError_t status, const char* what, const char* file, int line) {
  if (status == cudaSuccess) return;
  throw Error(std::string("CUDA error in ") + what + " (" + file + ":" + std::to_string(line) +
              "): " + cudaGetErrorString(status) +
              ". Check that the NVIDIA driver supports CUDA 13 (nvidia-smi) or run with --device cpu.");
}
#define VAE_CUDA_CHECK(expr) check((expr), #expr, __FILE__, __LINE__)

}  // namespace

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" status
    return 0;
  }
  return count;
}

void* device_alloc(size_t bytes) {
  if (device_count() == 0) throw Error("no CUDA GPU is visible to this process; run with --device cpu");
  void* ptr = nullptr;
  const cudaError_t status = cudaMalloc(&ptr, bytes);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    throw Error("out of GPU memory: asked for " + std::to_string(bytes >> 20) + " MiB with " +
                std::to_string(free_bytes >> 20) + " MiB free of " + std::to_string(total_bytes >> 20) +
                " MiB; try a smaller --batch");
  }
  VAE_CUDA_CHECK(status);
  return ptr;
}

void device_free(void* ptr) noexcept { cudaFree(ptr); }

void copy_host_to_device(void* dst, const void* src, size_t bytes) {
  VAE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void copy_device_to_host(void* dst, const void* src, size_t bytes) {
  VAE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void copy_device_to_device(void* dst, const void* src, size_t bytes) {
  VAE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}

}  // namespace vae::cuda
