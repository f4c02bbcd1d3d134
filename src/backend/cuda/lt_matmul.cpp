#include "backend/cuda/lt_matmul.hpp"

#include "backend/cuda/cuda_check.hpp"

namespace vae::cuda {

LtMatmul::~LtMatmul() {
  for (auto& [key, p] : plans_) {
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.c) cublasLtMatrixLayoutDestroy(p.c);
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  }
}

LtMatmul::Plan& LtMatmul::plan(const Key& key) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  const auto [ta, tb, m, n, k, lda, ldb, ldc, epi, mask_ld, tf32] = key;
  Plan p;
  VAE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasLtEpilogue_t epilogue = static_cast<cublasLtEpilogue_t>(epi);
  VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
  VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
  VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
  if (mask_ld > 0)
    VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &mask_ld, sizeof mask_ld));
  // Stored shapes: A is m x k (or k x m when transposed), B is k x n (or n x k).
  VAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_32F, ta ? k : m, ta ? m : k, lda));
  VAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_32F, tb ? n : k, tb ? k : n, ldb));
  VAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, m, n, ldc));
  cublasLtMatmulPreference_t pref = nullptr;
  VAE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  VAE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_,
                                                        sizeof workspace_bytes_));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  // NOT_SUPPORTED here means "no algorithm for this epilogue and shape": the caller falls back.
  if (status != CUBLAS_STATUS_NOT_SUPPORTED) VAE_CUBLAS_CHECK(status);
  p.usable = status == CUBLAS_STATUS_SUCCESS && found > 0;
  if (p.usable) p.algo = result.algo;
  return plans_.emplace(key, p).first->second;
}

bool LtMatmul::run(cudaStream_t stream, bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
                   const float* b, int ldb, float* c, int ldc, const Epilogue& epilogue, bool tf32) {
  const bool masked = epilogue.relu_mask != nullptr;
  Plan& p = plan(Key{trans_a, trans_b, m, n, k, lda, ldb, ldc, static_cast<int>(epilogue.kind),
                     masked ? epilogue.mask_ld : 0, tf32});
  if (!p.usable) return false;
  // Pointers are per call (the plan is shared by every layer of this shape); a captured graph
  // keeps the values set here.
  if (epilogue.bias)
    VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &epilogue.bias,
                                                    sizeof epilogue.bias));
  if (masked)
    VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                    &epilogue.relu_mask, sizeof epilogue.relu_mask));
  const float alpha = 1.0f, beta = 0.0f;
  VAE_CUBLAS_CHECK(cublasLtMatmul(handle_, p.desc, &alpha, a, p.a, b, p.b, &beta, c, p.c, c, p.c, &p.algo, workspace_,
                                  workspace_bytes_, stream));
  return true;
}

}  // namespace vae::cuda
