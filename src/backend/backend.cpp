#include "backend/backend.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/cuda/cuda_runtime.hpp"
#include "backend/recording_guard.hpp"

#include "vae/error.hpp"

namespace vae {

void ConvGeometry::check(const char* who) const {
  const auto dims = [&] {
    return "input " + std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w) +
           ", " + std::to_string(k) + " filters of " + std::to_string(kh) + "x" + std::to_string(kw) + ", stride " +
           std::to_string(stride) + ", padding " + std::to_string(pad);
  };
  if (n < 1 || c < 1 || h < 1 || w < 1 || k < 1 || kh < 1 || kw < 1 || stride < 1 || pad < 0)
    throw Error(std::string(who) + ": every size must be positive (padding >= 0); got " + dims());
  if (h + 2 * pad < kh || w + 2 * pad < kw)
    throw Error(std::string(who) + ": the kernel is larger than the padded input; got " + dims());
}

math::AdamCoefficients adam_coefficients(const AdamArgs& a) {
  math::AdamCoefficients c{};
  c.lr = a.lr;
  c.beta1 = a.beta1;
  c.beta2 = a.beta2;
  c.eps = a.eps;
  c.weight_decay = a.weight_decay;
  c.decoupled = a.decoupled;
  const double bc1 = 1.0 - std::pow(static_cast<double>(a.beta1), static_cast<double>(a.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(a.beta2), static_cast<double>(a.step));
  c.step_size = static_cast<float>(a.lr / bc1);
  c.inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  c.grad_scale = 1.0f;
  return c;
}

namespace {

thread_local bool t_recording = false;

// Work on the CPU runs as it is queued, so a recording is the function itself.
class RerunWork final : public RecordedWork {
 public:
  explicit RerunWork(std::function<void()> enqueue) : enqueue_(std::move(enqueue)) {}
  // The replay is where the CPU runs the recorded work, so it is checked here as CUDA checks a capture.
  void replay() override {
    RecordingScope recording;
    enqueue_();
  }

 private:
  std::function<void()> enqueue_;
};

class ImmediateReadback final : public HostReadback {
 public:
  explicit ImmediateReadback(int n) : values_(static_cast<size_t>(n)) {}
  void start(const float* src) override { std::copy(src, src + values_.size(), values_.begin()); }
  bool ready() override { return true; }
  const float* wait() override { return values_.data(); }

 private:
  std::vector<float> values_;
};

}  // namespace

RecordingScope::RecordingScope() : outer_(t_recording) { t_recording = true; }
RecordingScope::~RecordingScope() { t_recording = outer_; }

void forbid_while_recording(const char* what) {
  if (!t_recording) return;
  throw Error(std::string(what) +
              " inside a recorded training step: a CUDA graph cannot hold it. This is a bug in vae: train "
              "with --no-cuda-graph (cuda_graph: false) meanwhile, and report it");
}

std::unique_ptr<RecordedWork> Backend::capture(std::function<void()> enqueue) {
  return std::make_unique<RerunWork>(std::move(enqueue));
}

void Backend::synchronize() {
  forbid_while_recording("waiting for the device (Backend::synchronize)");
  wait_idle();
}

std::unique_ptr<HostReadback> Backend::make_readback(int n) {
  forbid_while_recording("creating a host readback");
  if (n < 1) throw Error("make_readback: n must be at least 1");
  return new_readback(n);
}

std::unique_ptr<HostReadback> Backend::new_readback(int n) { return std::make_unique<ImmediateReadback>(n); }

std::unique_ptr<Backend> make_backend(Device device) {
  if (device == Device::CPU) return make_cpu_backend();
#ifdef VAE_WITH_CUDA
  if (!cuda_available()) throw Error("a CUDA model was asked for, but " + cuda::device_status() + "; use --device cpu");
  return make_cuda_backend();
#else
  throw Error("this vae build has no CUDA support; rebuild with the CUDA toolkit installed (-DVAE_CUDA=ON) "
              "or use --device cpu");
#endif
}

}  // namespace vae
