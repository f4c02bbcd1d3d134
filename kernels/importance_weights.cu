// Importance sampling for the k-sample bound on log p(x) (Burda et al.).
//   latent_importance_sample: for data row b and sample j (row b*k + j), eps from Philox counter
//     (u/4, row0 + b, sample0 + j, kStreamImportance); z = mu + sigma * eps                 [rows*k, L]
//     log_pz_minus_qz = sum_u -z^2/2 + eps^2/2 + lv/2  (log N(z;0,I) - log N(z;mu,sigma^2))  [rows*k]
//     Bytes: reads 8L per data row per sample (from cache), writes 4L + 4 per sample.
//   logsumexp_accumulate: per data row, folds w_j = log_pz_minus_qz - nll over the chunk into a
//     running (max, sum) so memory does not grow with k. Reads 8k bytes per row, writes 8. A row
//     whose log-weights are all -inf so far keeps (-inf, 0): log p(x) = -inf, never NaN.
// One thread per sample row / data row, sequential over L / k: deterministic.
// CPU twins: cpu::latent_importance_sample, cpu::logsumexp_accumulate.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launchers.hpp"
#include "launch.cuh"
#include "philox.cuh"
#include "vae_math.cuh"

namespace vae::cuda {
namespace {

__global__ void importance_sample_kernel(const float* __restrict__ h, float* __restrict__ z,
                                         float* __restrict__ log_pz_minus_qz, int rows, int k, int latent,
                                         uint64_t seed, int64_t row0, int64_t sample0) {
  const int64_t n = int64_t(rows) * k;
  for (int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; row < n; row += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = row / k, j = row % k;
    const float* mu = h + b * 2 * latent;
    float acc = 0.0f;
    for (int c0 = 0; c0 < latent; c0 += 4) {
      float eps4[4];
      philox_normals(philox_block(seed, kStreamImportance, row0 + b, sample0 + j, c0 >> 2), eps4);
#pragma unroll
      for (int lane = 0; lane < 4; ++lane) {
        const int u = c0 + lane;
        if (u >= latent) break;
        const float eps = eps4[lane];
        const float lv = math::soft_clamp(mu[latent + u], math::kLogvarMin, math::kLogvarMax);
        const float zu = mu[u] + hd::exp(0.5f * lv) * eps;
        z[row * latent + u] = zu;
        acc += -0.5f * zu * zu + 0.5f * eps * eps + 0.5f * lv;
      }
    }
    log_pz_minus_qz[row] = acc;
  }
}

__global__ void logsumexp_accumulate_kernel(const float* __restrict__ lpq, const float* __restrict__ nll, int rows,
                                            int k, float* __restrict__ running_max, float* __restrict__ running_sum) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= rows) return;
  const float* a = lpq + int64_t(b) * k;
  const float* c = nll + int64_t(b) * k;
  const float old_max = running_max[b];
  float m = old_max;
  for (int j = 0; j < k; ++j) m = fmaxf(m, a[j] - c[j]);
  // Every weight so far is zero (log-weight -inf): the sum stays 0, its log -inf (not exp(-inf + inf)).
  if (m == -INFINITY) {
    running_sum[b] = 0.0f;
    return;
  }
  float s = old_max == -INFINITY ? 0.0f : running_sum[b] * hd::exp(old_max - m);
  for (int j = 0; j < k; ++j) s += hd::exp(a[j] - c[j] - m);
  running_max[b] = m;
  running_sum[b] = s;
}

}  // namespace

void launch_latent_importance_sample(const float* h, float* z, float* log_pz_minus_qz, int rows, int k, int latent,
                                     uint64_t seed, int64_t row0, int64_t sample0, cudaStream_t s) {
  require(rows >= 1 && k >= 1 && latent >= 1 && h && z && log_pz_minus_qz, "latent_importance_sample",
          "empty shape or null pointer");
  importance_sample_kernel<<<grid_for(int64_t(rows) * k), kThreads, 0, s>>>(h, z, log_pz_minus_qz, rows, k, latent,
                                                                            seed, row0, sample0);
  VAE_CUDA_CHECK_LAUNCH();
}

void launch_logsumexp_accumulate(const float* log_pz_minus_qz, const float* nll, int rows, int k, float* running_max,
                                 float* running_sum, cudaStream_t s) {
  require(rows >= 1 && k >= 1 && log_pz_minus_qz && nll && running_max && running_sum, "logsumexp_accumulate",
          "empty shape or null pointer");
  logsumexp_accumulate_kernel<<<(rows + kThreads - 1) / kThreads, kThreads, 0, s>>>(log_pz_minus_qz, nll, rows, k,
                                                                                   running_max, running_sum);
  VAE_CUDA_CHECK_LAUNCH();
}

}  // namespace vae::cuda
