// A typed array on a backend's device for data that is not float32 (the uint8 data set, int32
// batch indices). On the CPU, mirror() just points at the host vector (no copy); on CUDA it
// allocates device memory and uploads once.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/cuda/cuda_runtime.hpp"
#include "vae/tensor.hpp"

namespace vae {

template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;

  static DeviceArray mirror(const std::vector<T>& host, Device device) {
    DeviceArray a;
    a.size_ = host.size();
    if (device == Device::CPU) {
      a.data_ = const_cast<T*>(host.data());  // a view: the caller keeps host alive
    } else {
      const size_t bytes = std::max<size_t>(1, host.size() * sizeof(T));
      a.storage_ = std::shared_ptr<void>(cuda::device_alloc(bytes), [](void* p) { cuda::device_free(p); });
      a.data_ = static_cast<T*>(a.storage_.get());
      if (!host.empty()) cuda::copy_host_to_device(a.data_, host.data(), host.size() * sizeof(T));
    }
    return a;
  }

  const T* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::shared_ptr<void> storage_;
  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace vae
