// CUDA runtime glue: device queries, allocation with an actionable out-of-memory message, copies.
#include <cuda_runtime.h>

#include <string>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_runtime.hpp"
#include "vae/error.hpp"

namespace vae::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the "no device" status so later calls do not see it
    return 0;
  }
  return count;
}

std::string device_status() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  cudaGetLastError();
  if (status == cudaErrorInsufficientDriver) {
    // The runtime says "insufficient driver" both for an old driver and for none at all.
    int driver = 0;
    cudaDriverGetVersion(&driver);
    cudaGetLastError();
    if (driver == 0) return "no NVIDIA driver is installed (is there a GPU on this machine?)";
    return "the NVIDIA driver supports CUDA " + std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10) +
           " but this build needs 13.0; update the driver";
  }
  if (status != cudaSuccess) return std::string("no usable CUDA GPU (") + cudaGetErrorString(status) + ")";
  return count > 0 ? std::to_string(count) + " CUDA GPU(s)" : "no CUDA GPU is visible to this process";
}

void* device_alloc(size_t bytes) {
  if (device_count() == 0) throw Error(device_status() + "; run with --device cpu");
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

void synchronize() { VAE_CUDA_CHECK(cudaDeviceSynchronize()); }

int current_device() {
  int device = 0;
  VAE_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

void set_device(int index) { VAE_CUDA_CHECK(cudaSetDevice(index)); }

}  // namespace vae::cuda
