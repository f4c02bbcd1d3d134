#include "backend/backend.hpp"

#include <cmath>

#include "backend/cuda/cuda_runtime.hpp"

#include "vae/error.hpp"

namespace vae {

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
