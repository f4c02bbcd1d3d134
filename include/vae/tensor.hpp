// Tensor: an owning, reference-counted float32 array with a shape and a device tag.
// Views (view()) share the owner's storage; the flat parameter buffer hands out such views.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vae {

enum class Device { CPU, CUDA };
std::string to_string(Device device);
Device parse_device(const std::string& name);  // "cpu" | "cuda" | "auto"
bool cuda_available();                          // a CUDA build and at least one usable GPU
// Waits until the device has finished all work queued so far (nothing to wait for on the CPU).
// Call it before other code (another library, another stream) reads a CUDA tensor's memory.
void synchronize(Device device);
// The CUDA device this process's tensors live on (0 unless CUDA_VISIBLE_DEVICES says otherwise);
// -1 in a build or on a machine without CUDA.
int cuda_device_index();

using Shape = std::vector<int64_t>;
std::string to_string(const Shape& shape);
int64_t shape_numel(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised storage for shape on device. Throws vae::Error (with the size) when out of memory.
  Tensor(Shape shape, Device device = Device::CPU);
  static Tensor zeros(Shape shape, Device device = Device::CPU);
  static Tensor from_host(const std::vector<float>& values, Shape shape, Device device = Device::CPU);
  // A tensor over memory owned elsewhere (a DLPack tensor, a caller's buffer): data holds
  // numel(shape) contiguous floats on device and stays valid while owner, which this tensor and
  // its views keep alive, lives.
  static Tensor borrow(float* data, Shape shape, Device device, std::shared_ptr<void> owner);

  bool defined() const { return data_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim(size_t i) const { return shape_.at(i); }
  int64_t numel() const { return numel_; }
  Device device() const { return device_; }
  float* data() { return data_; }
  const float* data() const { return data_; }

  // A view of numel(shape) elements starting at element offset; shares (and keeps alive) storage.
  Tensor view(int64_t offset, Shape shape) const;
  // Same storage, new shape with the same element count.
  Tensor reshape(Shape shape) const;

  std::vector<float> to_host() const;
  // The values into out[0, count) on the host; count must be numel().
  void copy_to_host(float* out, int64_t count) const;
  void copy_from_host(const float* values, int64_t count);
  void copy_from(const Tensor& other);  // same numel, any devices
  void fill(float value);

 private:
  std::shared_ptr<void> storage_;
  float* data_ = nullptr;
  Shape shape_;
  int64_t numel_ = 0;
  Device device_ = Device::CPU;
};

}  // namespace vae
