// The CUDA wrapper of ops written once (for_each.cuh): one grid-stride kernel per functor type,
// instantiated by VAE_INSTANTIATE_FOR_EACH in the op's kernels/<op>.cu. nvcc only.
#pragma once

#include <cuda_runtime_api.h>

#include "cuda_check.cuh"
#include "block_reduce.cuh"
#include "for_each.cuh"
#include "launch.cuh"

namespace vae::ops {

// Small blocks: a row-wise op over a batch of 128 rows is one block of 128 threads.
constexpr int kForEachThreads = 128;

template <class F>
__global__ void __launch_bounds__(kForEachThreads) for_each_kernel(const F f, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) f(i);
}

template <class F>
void cuda_for_each(const F& f, int64_t n, void* stream) {
  for_each_kernel<F><<<cuda::grid_for(n, kForEachThreads), kForEachThreads, 0, static_cast<cudaStream_t>(stream)>>>(f, n);
  VAE_CUDA_CHECK_LAUNCH();
}

// One block per row (a grid-stride loop over rows when there are more than the grid holds): each
// thread adds its items in order, then block_sum's fixed tree; thread 0 finishes the row.
constexpr int kForRowsThreads = 128;
constexpr int kForRowsMaxBlocks = 65536;

template <class F>
__global__ void __launch_bounds__(kForRowsThreads) for_rows_kernel(const F f, int64_t rows) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {  // uniform across the block: block_sum may sync
    typename F::Scalar acc = 0;
    for (int64_t i = threadIdx.x; i < f.items; i += blockDim.x) f(r, i, acc);
    acc = block_sum(acc);
    if (threadIdx.x == 0) f.finish(r, acc);
  }
}

template <class F>
void cuda_for_rows(const F& f, int64_t rows, void* stream) {
  const auto blocks = static_cast<unsigned>(rows < kForRowsMaxBlocks ? rows : kForRowsMaxBlocks);
  for_rows_kernel<F><<<blocks, kForRowsThreads, 0, static_cast<cudaStream_t>(stream)>>>(f, rows);
  VAE_CUDA_CHECK_LAUNCH();
}

}  // namespace vae::ops

#define VAE_INSTANTIATE_FOR_EACH(...) \
  template void ::vae::ops::cuda_for_each<__VA_ARGS__>(const __VA_ARGS__&, int64_t, void*)
#define VAE_INSTANTIATE_FOR_ROWS(...) \
  template void ::vae::ops::cuda_for_rows<__VA_ARGS__>(const __VA_ARGS__&, int64_t, void*)
