// Host/device qualifiers and the few math calls the shared formulas need.
//
// The same inline functions compile into the CPU backend (g++) and into CUDA kernels (nvcc).
// VAE_HD is empty when the compiler is not nvcc, so this header needs no CUDA headers.
// The hd_* overloads exist because unqualified exp(float) on the host resolves to the double
// ::exp, while std::exp is not callable on every device toolchain: one name, both sides, both types.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define VAE_HD __host__ __device__ __forceinline__
#else
#define VAE_HD inline
#endif

namespace vae::hd {

VAE_HD float exp(float x) { return ::expf(x); }
VAE_HD double exp(double x) { return ::exp(x); }
VAE_HD float log(float x) { return ::logf(x); }
VAE_HD double log(double x) { return ::log(x); }
VAE_HD float log1p(float x) { return ::log1pf(x); }
VAE_HD double log1p(double x) { return ::log1p(x); }
VAE_HD float sqrt(float x) { return ::sqrtf(x); }
VAE_HD double sqrt(double x) { return ::sqrt(x); }
VAE_HD float tanh(float x) { return ::tanhf(x); }
VAE_HD double tanh(double x) { return ::tanh(x); }
VAE_HD float cos(float x) { return ::cosf(x); }
VAE_HD float sin(float x) { return ::sinf(x); }
VAE_HD float abs(float x) { return ::fabsf(x); }
VAE_HD double abs(double x) { return ::fabs(x); }
#if defined(__CUDA_ARCH__)
VAE_HD bool isfinite(float x) { return ::isfinite(x); }
VAE_HD bool isfinite(double x) { return ::isfinite(x); }
#else
VAE_HD bool isfinite(float x) { return std::isfinite(x); }
VAE_HD bool isfinite(double x) { return std::isfinite(x); }
#endif

}  // namespace vae::hd
