// An op written once (DESIGN.md, "An op is one unit"). Its math is a functor over n independent
// items (rows, elements or parameter entries), `VAE_HD void operator()(int64_t i) const`, in
// kernels/<op>.cuh, templated on the scalar so the CPU can also run it in double for
// finite-difference checks. The same functor runs in an OpenMP loop on the CPU and in a
// grid-stride kernel on CUDA; ops::run picks the loop for the backend. A new op therefore touches
//   kernels/<op>.cuh  its math, functors and entry points (argument checks, then ops::run),
//   kernels/<op>.cu   one VAE_INSTANTIATE_FOR_EACH line per functor (the CUDA kernels),
//   tests/op_table.cpp its rows (finite differences, CUDA parity, benchmark),
// and nothing in Backend.
//
// Items are independent, so any split over threads gives the same bits; a reduction is written as
// one item per output that loops over its inputs in order (deterministic on both sides).
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "backend/backend.hpp"
#include "hd.cuh"
#include "vae/error.hpp"

namespace vae::ops {

template <class F>
void cpu_for_each(const F& f, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) f(i);
}

// Defined in for_each_cuda.cuh; each op's kernels/<op>.cu instantiates it for its functors.
template <class F>
void cuda_for_each(const F& f, int64_t n, void* stream);

// Runs f over items [0, n) on be's device, queued on its stream (nothing waits, nothing allocates:
// allowed inside a recorded step). Be is a Backend, or an executor of the tests' reference (the op
// table runs the same entry points in double) with its own for_each.
template <class Be, class F>
void run(Be& be, const F& f, int64_t n) {
  if (n <= 0) return;
  if constexpr (std::is_base_of_v<Backend, Be>) {
    if (be.device() == Device::CPU) {
      cpu_for_each(f, n);
      return;
    }
#if defined(VAE_WITH_CUDA)
    cuda_for_each(f, n, be.native_stream());
#else
    throw Error("this vae build has no CUDA support; use --device cpu");
#endif
  } else {
    be.for_each(f, n);
  }
}

// A scalar argument of an entry point that takes its type from the pointers (no deduction from 1.0f).
template <class T>
using scalar_t = std::type_identity_t<T>;

inline void check(bool ok, const char* op, const std::string& what) {
  if (!ok) throw Error(std::string(op) + ": " + what);
}

}  // namespace vae::ops
