// Host/device qualifiers and the few math calls the shared formulas need.
//
// The same inline functions compile into the CPU backend (g++) and into CUDA kernels (nvcc).
// VAE_HD is empty when the compiler is not nvcc, so this header needs no CUDA headers.
// The hd_* overloads exist because unqualified exp(float) on the host resolves to the double
// ::exp, while std::exp is not callable on every device toolchain: one name, both sides, both types.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define VAE_HD __host__ __device__ __forceinline__
#else
#define VAE_HD inline
#endif

// A loop inside a functor that the CPU should run in SIMD lanes (OpenMP's simd, which lets a
// reduction's lanes each sum their own items, in an order fixed by the binary and the CPU); nothing
// under nvcc, whose threads are the parallelism.
#define VAE_PRAGMA(x) _Pragma(#x)
#if defined(__CUDACC__)
#define VAE_SIMD
#define VAE_SIMD_REDUCTION(op, var)
#else
#define VAE_SIMD VAE_PRAGMA(omp simd)
#define VAE_SIMD_REDUCTION(op, var) VAE_PRAGMA(omp simd reduction(op : var))
#endif

namespace vae::hd {

VAE_HD float exp(float x) { return ::expf(x); }
VAE_HD double exp(double x) { return ::exp(x); }
VAE_HD float log(float x) { return ::logf(x); }
VAE_HD double log(double x) { return ::log(x); }
VAE_HD float log1p(float x) { return ::log1pf(x); }
VAE_HD double log1p(double x) { return ::log1p(x); }
VAE_HD float expm1(float x) { return ::expm1f(x); }
VAE_HD double expm1(double x) { return ::expm1(x); }
VAE_HD float max(float a, float b) { return a > b ? a : b; }
VAE_HD double max(double a, double b) { return a > b ? a : b; }
VAE_HD float floor(float x) { return ::floorf(x); }
VAE_HD double floor(double x) { return ::floor(x); }
VAE_HD float sqrt(float x) { return ::sqrtf(x); }
VAE_HD double sqrt(double x) { return ::sqrt(x); }
VAE_HD float tanh(float x) { return ::tanhf(x); }
VAE_HD double tanh(double x) { return ::tanh(x); }
VAE_HD float cos(float x) { return ::cosf(x); }
VAE_HD float sin(float x) { return ::sinf(x); }
VAE_HD float abs(float x) { return ::fabsf(x); }
VAE_HD double abs(double x) { return ::fabs(x); }
// e^x for x <= 0 (the likelihoods' e^-|l|). On the host: Cody-Waite reduction by ln 2 and Cephes'
// degree-6 polynomial, within 2 ulps of e^x, and 0 where e^x is below the smallest normal float
// (x < -87.33, as flush-to-zero leaves it), all without branches, so the loops that call it
// vectorize: glibc's expf is a call per element, which the compiler vectorizes only under
// -ffast-math. On the device: ::expf.
VAE_HD float exp_nonpositive(float x) {
#if defined(__CUDA_ARCH__)
  return ::expf(x);
#else
  const bool normal = !(x < -87.3365f);  // ln(2^-126); NaN stays NaN through p below
  x = normal ? x : -87.3365f;
  // n = round(x / ln 2) by the float rounding of an add (exact here: |x / ln 2| < 2^22).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // x - n ln 2, |r| <= ln 2 / 2
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float n_in_range = n >= -126.0f ? n : -126.0f;               // a NaN's n converts as -126
  const int32_t bits = (static_cast<int32_t>(n_in_range) + 127) * (1 << 23);  // 2^n, n in [-126, 0]
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return normal ? p * scale : 0.0f;
#endif
}
VAE_HD double exp_nonpositive(double x) { return ::exp(x); }

#if defined(__CUDA_ARCH__)
VAE_HD bool isfinite(float x) { return ::isfinite(x); }
VAE_HD bool isfinite(double x) { return ::isfinite(x); }
#else
VAE_HD bool isfinite(float x) { return std::isfinite(x); }
VAE_HD bool isfinite(double x) { return std::isfinite(x); }
#endif

}  // namespace vae::hd
