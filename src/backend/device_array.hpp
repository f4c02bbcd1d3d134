// A typed array on a backend's device for data that is not float32 (the uint8 data set, int32
// batch indices, the per-step scalars). On the CPU, mirror() just points at the host vector (no
// copy); on CUDA it allocates device memory and uploads once. allocate() gives an owned array of
// fixed address whose contents upload() replaces: what a captured CUDA graph needs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "backend/cuda/cuda_runtime.hpp"
#include "backend/recording_guard.hpp"
#include "vae/error.hpp"
#include "vae/tensor.hpp"

namespace vae {

template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;

  static DeviceArray mirror(const std::vector<T>& host, Device device) {
    forbid_while_recording("uploading an array");
    DeviceArray a;
    a.size_ = host.size();
    a.device_ = device;
    if (device == Device::CPU) {
      a.data_ = const_cast<T*>(host.data());  // a view: the caller keeps host alive
      a.read_only_ = true;
    } else {
      const size_t bytes = std::max<size_t>(1, host.size() * sizeof(T));
      a.storage_ = std::shared_ptr<void>(cuda::device_alloc(bytes), [](void* p) { cuda::device_free(p); });
      a.data_ = static_cast<T*>(a.storage_.get());
      if (!host.empty()) cuda::copy_host_to_device(a.data_, host.data(), host.size() * sizeof(T));
    }
    return a;
  }

  static DeviceArray allocate(size_t n, Device device) {
    forbid_while_recording("allocating an array");
    DeviceArray a;
    a.size_ = n;
    const size_t bytes = std::max<size_t>(1, n * sizeof(T));
    if (device == Device::CPU) {
      a.storage_ = std::shared_ptr<void>(::operator new(bytes), [](void* p) { ::operator delete(p); });
    } else {
      a.storage_ = std::shared_ptr<void>(cuda::device_alloc(bytes), [](void* p) { cuda::device_free(p); });
    }
    a.data_ = static_cast<T*>(a.storage_.get());
    a.device_ = device;
    return a;
  }

  // Replaces the first count elements (synchronously; on CUDA ordered after the work already queued).
  void upload(const T* host, size_t count) {
    forbid_while_recording("uploading an array");
    if (count > size_) throw Error("DeviceArray::upload: " + std::to_string(count) + " elements into an array of " +
                                   std::to_string(size_));
    if (read_only_) throw Error("DeviceArray::upload: this array is a view of a host vector (mirror on the CPU)");
    if (count == 0) return;
    if (device_ == Device::CPU) std::copy(host, host + count, data_);
    else cuda::copy_host_to_device(data_, host, count * sizeof(T));
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::shared_ptr<void> storage_;
  T* data_ = nullptr;
  size_t size_ = 0;
  Device device_ = Device::CPU;
  bool read_only_ = false;
};

}  // namespace vae
