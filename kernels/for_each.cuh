// An op written once (DESIGN.md, "An op is one unit"). Its math is a functor over n independent
// items (rows, elements or parameter entries), `VAE_HD void operator()(int64_t i) const`, in
// kernels/<op>.cuh, templated on the scalar so the CPU can also run it in double for
// finite-difference checks. The same functor runs in an OpenMP loop on the CPU and in a
// grid-stride kernel on CUDA; ops::run picks the loop for the backend. A new op therefore touches
//   kernels/<op>.cuh  its math, functors and entry points (argument checks, then ops::run),
//   kernels/<op>.cu   one VAE_INSTANTIATE_FOR_EACH (or _FOR_ROWS) line per functor (the CUDA kernels),
//   tests/op_table.cpp its rows (finite differences, CUDA parity, benchmark),
// and nothing in Backend.
//
// Items are independent, so any split over threads gives the same bits; a short reduction is written
// as one item per output that loops over its inputs in order (deterministic on both sides).
//
// The second shape, ops::run_rows, is for a reduction along a long row (a likelihood over 784
// pixels, a KL over the latent units, a bias gradient over the batch): the functor declares
// `using Scalar = T;` and `int64_t items` (per row), and provides
//   VAE_HD void operator()(int64_t row, int64_t item, T& acc) const  // the item's own outputs; adds its term to acc
//   VAE_HD void finish(int64_t row, T total) const                    // the row's reduced outputs
// The CPU runs each row as one task, its items in SIMD lanes (each lane's items in order, then the
// lanes in a fixed order) where the body vectorizes, in order where it does not; CUDA runs one block
// per row, each thread's items in order, then a fixed tree of shuffles (block_reduce.cuh). Both are
// deterministic; they differ from each other only in the order of the sum.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <type_traits>

#include "hd.cuh"
#include "step_scalars.cuh"
#include "vae/error.hpp"
#include "vae/tensor.hpp"

namespace vae::ops {

// Each thread runs a copy of the functor: its pointers then live in registers, where the stores
// through them cannot change them (through a shared reference the compiler must reload them after
// every store, and vectorizes nothing).
//
// Items laid out in planes (an NCHW tensor's [n*c, h*w] planes): a functor whose item index is
// plane * plane_items + position may also declare `int64_t plane_items` and
//   VAE_HD void at(int64_t plane, int64_t position) const             // for_each's shape
//   VAE_HD void at(int64_t row, int64_t plane, int64_t position, T& acc) const  // run_rows's shape
// with operator() calling at with the index split. CUDA keeps the flat index (consecutive threads,
// consecutive positions); the CPU loops over planes and, inside one, over positions, so that the
// plane's own terms (a channel's bias) are loop invariants and the body vectorizes with no integer
// division per element.
template <class F>
concept PlanarItems = requires(const F& f) {
  { f.plane_items } -> std::convertible_to<int64_t>;
  f.at(int64_t{}, int64_t{});
};
template <class F>
concept PlanarRows = requires(const F& f, typename F::Scalar& acc) {
  { f.plane_items } -> std::convertible_to<int64_t>;
  f.at(int64_t{}, int64_t{}, int64_t{}, acc);
};

// The CPU's loops, each compiled twice on x86-64 with GCC: for AVX2 and for the baseline (SSE2),
// the copy chosen once per process from the CPU it runs on (target_clones: an ifunc resolved at
// load). Without it the library's loops use 4 of AVX2's 8 float lanes on every machine, as PyTorch
// avoids by dispatching on the CPU too. No FMA in either copy (target "avx2" alone), so an element's
// arithmetic is the same in both; a row's sum has 8 lanes on AVX2 and 4 on SSE2, so its bits differ
// between such machines (never on one machine: the choice is the CPU's).
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && defined(__x86_64__)
#define VAE_CPU_LOOP_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VAE_CPU_LOOP_CLONES
#endif

// Each call runs a span of items (or planes, or rows) on its own copy of the functor.
template <class F>
struct CpuLoops {
  VAE_CPU_LOOP_CLONES static void items(const F& shared, int64_t begin, int64_t end) {
    const F f = shared;
    if constexpr (PlanarItems<F>) {
      const int64_t per = f.plane_items;
      for (int64_t plane = begin; plane < end; ++plane)
#pragma omp simd
        for (int64_t p = 0; p < per; ++p) f.at(plane, p);
    } else {
      for (int64_t i = begin; i < end; ++i) f(i);
    }
  }
  VAE_CPU_LOOP_CLONES static void rows(const F& shared, int64_t begin, int64_t end) {
    const F f = shared;
    for (int64_t r = begin; r < end; ++r) {
      typename F::Scalar acc = 0;
      // A row's items in SIMD lanes where the functor's body vectorizes (the likelihoods: 784 pixels
      // a row), each lane summing its own items in order and the lanes added in a fixed order: the
      // order depends only on the binary and the CPU, so the bits repeat on a machine at any
      // thread count.
      if constexpr (PlanarRows<F>) {
        const int64_t per = f.plane_items;
        for (int64_t plane = 0; plane < f.items / per; ++plane) {
          typename F::Scalar plane_acc = 0;
#pragma omp simd reduction(+ : plane_acc)
          for (int64_t p = 0; p < per; ++p) f.at(r, plane, p, plane_acc);
          acc += plane_acc;
        }
      } else {
#pragma omp simd reduction(+ : acc)
        for (int64_t i = 0; i < f.items; ++i) f(r, i, acc);
      }
      f.finish(r, acc);
    }
  }
};

// Runs body(begin, end) over [0, units) in up to 64 contiguous spans shared out by OpenMP (static):
// each unit is independent, so the split changes no bits.
template <class Body>
void cpu_spans(int64_t units, Body body) {
  const int64_t spans = units < 64 ? units : 64;
#pragma omp parallel for schedule(static)
  for (int64_t s = 0; s < spans; ++s) body(units * s / spans, units * (s + 1) / spans);
}

template <class F>
void cpu_for_each(const F& f, int64_t n) {
  int64_t units = n;
  if constexpr (PlanarItems<F>) units = n / f.plane_items;
  cpu_spans(units, [&](int64_t begin, int64_t end) { CpuLoops<F>::items(f, begin, end); });
}

template <class F>
void cpu_for_rows(const F& f, int64_t rows) {
  cpu_spans(rows, [&](int64_t begin, int64_t end) { CpuLoops<F>::rows(f, begin, end); });
}

// Defined in for_each_cuda.cuh; each op's kernels/<op>.cu instantiates them for its functors.
template <class F>
void cuda_for_each(const F& f, int64_t n, void* stream);
template <class F>
void cuda_for_rows(const F& f, int64_t rows, void* stream);

// A device backend (vae::Backend, src/backend/backend.hpp) as the ops see it: its device, and the
// CUDA stream its work is queued on. Anything else passed as `be` is an executor with its own
// for_each and for_rows (the op table runs the same entry points in double on the CPU). Named by
// what it can do, so this header needs nothing from src/.
template <class Be>
concept DeviceBackend = requires(Be& be) {
  { be.device() } -> std::convertible_to<Device>;
  { be.native_stream() } -> std::convertible_to<void*>;
};

// Runs f over items [0, n) on be's device, queued on its stream (nothing waits, nothing allocates:
// allowed inside a recorded step).
template <class Be, class F>
void run(Be& be, const F& f, int64_t n) {
  if (n <= 0) return;
  if constexpr (DeviceBackend<Be>) {
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

// Runs the row functor f (the second shape, above) over rows [0, rows) on be's device.
template <class Be, class F>
void run_rows(Be& be, const F& f, int64_t rows) {
  if (rows <= 0) return;
  if constexpr (DeviceBackend<Be>) {
    if (be.device() == Device::CPU) {
      cpu_for_rows(f, rows);
      return;
    }
#if defined(VAE_WITH_CUDA)
    cuda_for_rows(f, rows, be.native_stream());
#else
    throw Error("this vae build has no CUDA support; use --device cpu");
#endif
  } else {
    be.for_rows(f, rows);
  }
}

// A scalar argument of an entry point that takes its type from the pointers (no deduction from 1.0f).
template <class T>
using scalar_t = std::type_identity_t<T>;

inline void check(bool ok, const char* op, const std::string& what) {
  if (!ok) throw Error(std::string(op) + ": " + what);
}

}  // namespace vae::ops
