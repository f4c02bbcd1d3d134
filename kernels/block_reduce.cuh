// Deterministic block-wide sums: a fixed tree of warp shuffles, so the same inputs in the same
// threads give the same bits on every run (no atomics). Requires blockDim.x a multiple of 32.
#pragma once

#include <cuda_runtime.h>

namespace vae {

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// The sum over the block, valid in thread 0. Every thread of the block must call it.
template <class T>
__device__ T block_sum(T v) {
  __shared__ T partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : T(0);
    v = warp_sum(v);
  }
  __syncthreads();  // partial may be reused by the next call
  return v;
}

}  // namespace vae
