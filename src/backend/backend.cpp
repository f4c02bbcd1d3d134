#include "backend/backend.hpp"

#include "vae/error.hpp"

namespace vae {

std::unique_ptr<Backend> make_backend(Device device) {
  if (device == Device::CPU) return make_cpu_backend();
  // The CUDA backend (cuBLASLt layers and the fused kernels) is tracked as its own issue; until it
  // lands a CUDA model cannot run, and saying so beats silently training on the CPU.
  throw Error("the CUDA backend is not part of this build yet; run with --device cpu");
}

}  // namespace vae
