// Column-major GEMMs through cuBLASLt, with an optional epilogue (bias add, bias gradient, ReLU
// with its bit-mask, ReLU gradient with bias gradient).
// Plans (descriptors, layouts and the heuristic's algorithms, up to kHeuristicAlgorithms in its
// order) are cached per shape and per pointer alignment, so a training step queries the heuristic
// only on its first run. An algorithm refused at launch (NOT_SUPPORTED, found on the host before
// anything is queued) is passed over for good and the next one runs (backend/algorithm_choice.hpp's
// first_accepted). run() returns false when cuBLASLt has no algorithm left for an epilogue at that
// (shape, alignment); the caller then takes the unfused path. A plain product with none is an error.
// VAE_LOG_GEMM_PLANS=1 in the environment prints each plan as it is made (to stderr): which
// epilogues were fused and which fell back, and why, on the GPU at hand.
#pragma once

#include <cublasLt.h>

#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

namespace vae::cuda {

// What runs after the product. bias is the bias (BIAS, RELU_*BIAS) or the bias-gradient output
// (BGRADB, DRELU_BGRAD); relu_mask the ReLU bit-mask written by RELU_AUX_BIAS and read by
// DRELU_BGRAD, with mask_ld bits per column (a multiple of 128, at least m).
struct Epilogue {
  cublasLtEpilogue_t kind = CUBLASLT_EPILOGUE_DEFAULT;
  void* bias = nullptr;
  void* relu_mask = nullptr;
  int64_t mask_ld = 0;
};

// Bits per column of a ReLU bit-mask for an output with m rows (cuBLASLt: divisible by 128).
inline int64_t relu_mask_ld(int m) { return (int64_t(m) + 127) / 128 * 128; }

// The largest power of two, at most 256, that divides the address: what cuBLASLt's heuristic must
// be told (it assumes 256 unless told less, and may then pick a kernel the pointer cannot feed).
inline int pointer_alignment(const void* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  int alignment = 256;
  while (alignment > 1 && address % static_cast<uintptr_t>(alignment) != 0) alignment /= 2;
  return alignment;
}

// Bias and bias-gradient vectors below this alignment go to the unfused path: epilogues have been
// seen to fault on 8-byte-aligned bias vectors (Marian NMT's notes on A100). Ours are 64-byte aligned.
constexpr int kMinEpilogueVectorAlignment = 16;

class LtMatmul {
 public:
  LtMatmul(cublasLtHandle_t handle, void* workspace, size_t workspace_bytes);
  ~LtMatmul();
  LtMatmul(const LtMatmul&) = delete;
  LtMatmul& operator=(const LtMatmul&) = delete;

  // C[m, n] = op(A)[m, k] op(B)[k, n], all column-major, beta = 0, then the epilogue. Bias lengths:
  // m for BIAS, RELU_*BIAS and DRELU_BGRAD (a sum over n), n for BGRADB (a sum over k).
  bool run(cudaStream_t stream, bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
           const float* b, int ldb, float* c, int ldc, const Epilogue& epilogue, bool tf32);

 private:
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    std::vector<cublasLtMatmulAlgo_t> algos;  // the heuristic's, fastest first
    int next = 0;                             // algos before it were refused at launch
    bool usable() const { return next < static_cast<int>(algos.size()); }
  };
  static constexpr int kHeuristicAlgorithms = 8;
  // (trans_a, trans_b, m, n, k, lda, ldb, ldc, epilogue, mask_ld, tf32, alignment of a, b, c)
  using Key = std::tuple<bool, bool, int, int, int, int, int, int, int, int64_t, bool, int, int, int>;
  Plan& plan(const Key& key, const Epilogue& epilogue);
  void set_epilogue_pointers(Plan& p, const Epilogue& epilogue);

  cublasLtHandle_t handle_;
  void* workspace_;
  size_t workspace_bytes_;
  bool log_plans_ = false;
  std::map<Key, Plan> plans_;
};

}  // namespace vae::cuda
