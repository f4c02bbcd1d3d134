// Column-major GEMMs through cuBLASLt, with an optional epilogue (bias add, bias gradient).
// Plans (descriptors, layouts and the heuristic's algorithm) are cached per shape, so a training
// step queries the heuristic only on its first run. run() returns false when cuBLASLt has no
// algorithm for the (shape, epilogue) pair; the caller then takes the unfused path.
#pragma once

#include <cublasLt.h>

#include <map>
#include <tuple>

namespace vae::cuda {

class LtMatmul {
 public:
  LtMatmul(cublasLtHandle_t handle, void* workspace, size_t workspace_bytes)
      : handle_(handle), workspace_(workspace), workspace_bytes_(workspace_bytes) {}
  ~LtMatmul();
  LtMatmul(const LtMatmul&) = delete;
  LtMatmul& operator=(const LtMatmul&) = delete;

  // C[m, n] = op(A)[m, k] op(B)[k, n], all column-major, beta = 0. epilogue_pointer is the bias
  // (CUBLASLT_EPILOGUE_BIAS, length m) or the bias gradient output (BGRADB, length n).
  bool run(cudaStream_t stream, bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
           const float* b, int ldb, float* c, int ldc, cublasLtEpilogue_t epilogue, void* epilogue_pointer, bool tf32);

 private:
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool usable = false;
  };
  using Key = std::tuple<bool, bool, int, int, int, int, int, int, int, bool>;
  Plan& plan(const Key& key);

  cublasLtHandle_t handle_;
  void* workspace_;
  size_t workspace_bytes_;
  std::map<Key, Plan> plans_;
};

}  // namespace vae::cuda
