#include "backend/backend.hpp"

#include "vae/error.hpp"

namespace vae {

std::unique_ptr<Backend> make_backend(Device device) {
  if (device == Device::CPU) return make_cpu_backend();
#ifdef VAE_WITH_CUDA
  if (!cuda_available()) throw Error("a CUDA model was asked for, but no CUDA GPU is available; use --device cpu");
  return make_cuda_backend();
#else
  throw Error("this vae build has no CUDA support; rebuild with the CUDA toolkit installed (-DVAE_CUDA=ON) "
              "or use --device cpu");
#endif
}

}  // namespace vae
