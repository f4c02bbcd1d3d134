// Device memory and device queries, kept out of the public headers (which include no CUDA header).
// In a build without CUDA these throw vae::Error saying how to get a CUDA build.
#pragma once

#include <cstddef>
#include <string>

namespace vae::cuda {

int device_count();  // 0 when there is no driver or no GPU
std::string device_status();  // why device_count() is 0 (no GPU, driver too old), or how many there are
void* device_alloc(size_t bytes);
void device_free(void* ptr) noexcept;
void copy_host_to_device(void* dst, const void* src, size_t bytes);
void copy_device_to_host(void* dst, const void* src, size_t bytes);
void copy_device_to_device(void* dst, const void* src, size_t bytes);
void synchronize();     // cudaDeviceSynchronize, checked
int current_device();   // cudaGetDevice
void set_device(int index);  // cudaSetDevice, checked

}  // namespace vae::cuda
