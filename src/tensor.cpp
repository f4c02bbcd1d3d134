#include "vae/tensor.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "backend/cuda/cuda_runtime.hpp"
#include "backend/recording_guard.hpp"
#include "vae/error.hpp"

namespace vae {

#ifndef VAE_WITH_CUDA
// A CPU-only build: the CUDA entry points exist so callers need no #ifdef, and say what to do.
namespace cuda {
namespace {
[[noreturn]] void no_cuda() {
  throw Error("this vae build has no CUDA support; rebuild with the CUDA toolkit installed "
              "(-DVAE_CUDA=ON) or use --device cpu");
}
}  // namespace
int device_count() { return 0; }
std::string device_status() { return "this vae build has no CUDA support"; }
void* device_alloc(size_t) { no_cuda(); }
void device_free(void*) noexcept {}
void copy_host_to_device(void*, const void*, size_t) { no_cuda(); }
void copy_device_to_host(void*, const void*, size_t) { no_cuda(); }
void copy_device_to_device(void*, const void*, size_t) { no_cuda(); }
void synchronize() {}
int current_device() { return -1; }
void set_device(int) { no_cuda(); }
}  // namespace cuda
#endif

std::string to_string(Device device) { return device == Device::CPU ? "cpu" : "cuda"; }

bool cuda_available() { return cuda::device_count() > 0; }

void synchronize(Device device) {
  forbid_while_recording("waiting for the device (vae::synchronize)");
  if (device == Device::CUDA) cuda::synchronize();
}

int cuda_device_index() { return cuda_available() ? cuda::current_device() : -1; }

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::CPU;
  if (name == "cuda") {
    if (!cuda_available()) throw Error("--device cuda was asked for, but " + cuda::device_status() + "; use --device cpu");
    return Device::CUDA;
  }
  if (name == "auto") return cuda_available() ? Device::CUDA : Device::CPU;
  throw Error("unknown device '" + name + "': expected cpu, cuda or auto");
}

std::string to_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error("negative dimension in shape " + to_string(shape));
    n *= d;
  }
  return n;
}

Tensor::Tensor(Shape shape, Device device) : shape_(std::move(shape)), device_(device) {
  forbid_while_recording("allocating a tensor");
  numel_ = shape_numel(shape_);
  const size_t bytes = std::max<size_t>(1, static_cast<size_t>(numel_) * sizeof(float));
  if (device == Device::CPU) {
    // 64-byte alignment: whole cache lines, and room for any vector width.
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) throw Error("out of host memory: asked for " + std::to_string(bytes >> 20) + " MiB; try a smaller --batch");
    storage_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  } else {
    storage_ = std::shared_ptr<void>(cuda::device_alloc(bytes), [](void* q) { cuda::device_free(q); });
  }
  data_ = static_cast<float*>(storage_.get());
}

Tensor Tensor::zeros(Shape shape, Device device) {
  Tensor t(std::move(shape), device);
  t.fill(0.0f);
  return t;
}

Tensor Tensor::from_host(const std::vector<float>& values, Shape shape, Device device) {
  Tensor t(std::move(shape), device);
  if (static_cast<int64_t>(values.size()) != t.numel())
    throw Error("from_host: " + std::to_string(values.size()) + " values for shape " + to_string(t.shape()));
  t.copy_from_host(values.data(), t.numel());
  return t;
}

Tensor Tensor::borrow(float* data, Shape shape, Device device, std::shared_ptr<void> owner) {
  Tensor t;
  t.numel_ = shape_numel(shape);
  if (!data && t.numel_ > 0) throw Error("Tensor::borrow: null data for shape " + to_string(shape));
  t.storage_ = owner ? std::move(owner) : std::shared_ptr<void>(data, [](void*) {});
  t.data_ = data;
  t.shape_ = std::move(shape);
  t.device_ = device;
  return t;
}

Tensor Tensor::view(int64_t offset, Shape shape) const {
  const int64_t n = shape_numel(shape);
  if (offset < 0 || offset + n > numel_)
    throw Error("view of " + std::to_string(n) + " elements at offset " + std::to_string(offset) +
                " is outside a tensor of " + std::to_string(numel_));
  Tensor t;
  t.storage_ = storage_;
  t.data_ = data_ + offset;
  t.shape_ = std::move(shape);
  t.numel_ = n;
  t.device_ = device_;
  return t;
}

Tensor Tensor::reshape(Shape shape) const {
  if (shape_numel(shape) != numel_)
    throw Error("cannot reshape " + to_string(shape_) + " to " + to_string(shape));
  return view(0, std::move(shape));
}

std::vector<float> Tensor::to_host() const {
  forbid_while_recording("copying a tensor to the host");
  std::vector<float> out(static_cast<size_t>(numel_));
  copy_to_host(out.data(), numel_);
  return out;
}

void Tensor::copy_to_host(float* out, int64_t count) const {
  forbid_while_recording("copying a tensor to the host");
  if (count != numel_) throw Error("copy_to_host: " + to_string(shape_) + " into " + std::to_string(count) + " values");
  if (count == 0) return;
  if (device_ == Device::CPU) std::memcpy(out, data_, static_cast<size_t>(count) * sizeof(float));
  else cuda::copy_device_to_host(out, data_, static_cast<size_t>(count) * sizeof(float));
}

void Tensor::copy_from_host(const float* values, int64_t count) {
  forbid_while_recording("copying host values into a tensor");
  if (count != numel_) throw Error("copy_from_host: " + std::to_string(count) + " values into " + to_string(shape_));
  if (count == 0) return;
  if (device_ == Device::CPU) std::memcpy(data_, values, static_cast<size_t>(count) * sizeof(float));
  else cuda::copy_host_to_device(data_, values, static_cast<size_t>(count) * sizeof(float));
}

void Tensor::copy_from(const Tensor& other) {
  forbid_while_recording("copying a tensor");
  if (other.numel_ != numel_) throw Error("copy_from: " + to_string(other.shape_) + " into " + to_string(shape_));
  const size_t bytes = static_cast<size_t>(numel_) * sizeof(float);
  if (bytes == 0) return;
  if (device_ == Device::CPU && other.device_ == Device::CPU) std::memcpy(data_, other.data_, bytes);
  else if (device_ == Device::CPU) cuda::copy_device_to_host(data_, other.data_, bytes);
  else if (other.device_ == Device::CPU) cuda::copy_host_to_device(data_, other.data_, bytes);
  else cuda::copy_device_to_device(data_, other.data_, bytes);
}

void Tensor::fill(float value) {
  forbid_while_recording("filling a tensor from the host");
  if (device_ == Device::CPU) {
    std::fill(data_, data_ + numel_, value);
  } else {
    const std::vector<float> host(static_cast<size_t>(numel_), value);
    copy_from_host(host.data(), numel_);
  }
}

}  // namespace vae
