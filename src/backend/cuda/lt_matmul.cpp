#include "backend/cuda/lt_matmul.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "backend/algorithm_choice.hpp"
#include "backend/cuda/cuda_check.hpp"

namespace vae::cuda {
namespace {

const char* epilogue_name(cublasLtEpilogue_t e) {
  switch (e) {
    case CUBLASLT_EPILOGUE_DEFAULT: return "none";
    case CUBLASLT_EPILOGUE_BIAS: return "BIAS";
    case CUBLASLT_EPILOGUE_RELU_BIAS: return "RELU_BIAS";
    case CUBLASLT_EPILOGUE_RELU_AUX_BIAS: return "RELU_AUX_BIAS";
    case CUBLASLT_EPILOGUE_DRELU_BGRAD: return "DRELU_BGRAD";
    case CUBLASLT_EPILOGUE_BGRADB: return "BGRADB";
    default: return "other";
  }
}

void destroy(cublasLtMatmulDesc_t& desc, cublasLtMatrixLayout_t& a, cublasLtMatrixLayout_t& b,
             cublasLtMatrixLayout_t& c) {
  if (a) cublasLtMatrixLayoutDestroy(a);
  if (b) cublasLtMatrixLayoutDestroy(b);
  if (c) cublasLtMatrixLayoutDestroy(c);
  if (desc) cublasLtMatmulDescDestroy(desc);
  desc = nullptr;
  a = b = c = nullptr;
}

}  // namespace

LtMatmul::LtMatmul(cublasLtHandle_t handle, void* workspace, size_t workspace_bytes)
    : handle_(handle), workspace_(workspace), workspace_bytes_(workspace_bytes) {
  const char* log = std::getenv("VAE_LOG_GEMM_PLANS");
  log_plans_ = log && std::strcmp(log, "0") != 0 && *log != '\0';
}

LtMatmul::~LtMatmul() {
  for (auto& [key, p] : plans_) destroy(p.desc, p.a, p.b, p.c);
}

void LtMatmul::set_epilogue_pointers(Plan& p, const Epilogue& epilogue) {
  if (epilogue.bias)
    VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &epilogue.bias,
                                                    sizeof epilogue.bias));
  if (epilogue.relu_mask)
    VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                    &epilogue.relu_mask, sizeof epilogue.relu_mask));
}

LtMatmul::Plan& LtMatmul::plan(const Key& key, const Epilogue& epilogue) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  const auto [ta, tb, m, n, k, lda, ldb, ldc, epi, mask_ld, tf32, align_a, align_b, align_c] = key;
  Plan p;
  cublasLtMatmulPreference_t pref = nullptr;
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
  int found = 0;
  try {
    VAE_CUBLAS_CHECK(
        cublasLtMatmulDescCreate(&p.desc, tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasLtEpilogue_t kind = static_cast<cublasLtEpilogue_t>(epi);
    VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    VAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &kind, sizeof kind));
    if (mask_ld > 0)
      VAE_CUBLAS_CHECK(
          cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &mask_ld, sizeof mask_ld));
    // The heuristic reads the epilogue's pointers to learn their alignment, so they are set before it.
    set_epilogue_pointers(p, epilogue);
    // Stored shapes: A is m x k (or k x m when transposed), B is k x n (or n x k).
    VAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_32F, ta ? k : m, ta ? m : k, lda));
    VAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_32F, tb ? n : k, tb ? k : n, ldb));
    VAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, m, n, ldc));
    VAE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    VAE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                          &workspace_bytes_, sizeof workspace_bytes_));
    const uint32_t alignment[3] = {static_cast<uint32_t>(align_a), static_cast<uint32_t>(align_b),
                                   static_cast<uint32_t>(align_c)};
    VAE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                          &alignment[0], sizeof alignment[0]));
    VAE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                          &alignment[1], sizeof alignment[1]));
    VAE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                          &alignment[2], sizeof alignment[2]));
    VAE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                          &alignment[2], sizeof alignment[2]));
    cublasLtMatmulHeuristicResult_t results[kHeuristicAlgorithms] = {};
    status = cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.a, p.b, p.c, p.c, pref, kHeuristicAlgorithms, results,
                                            &found);
    cublasLtMatmulPreferenceDestroy(pref);
    pref = nullptr;
    // A plain product must have an algorithm: any status but NOT_SUPPORTED is an error. For an
    // epilogue, any failure means "not fused here": the caller's unfused path computes the same thing.
    if (kind == CUBLASLT_EPILOGUE_DEFAULT && status != CUBLAS_STATUS_NOT_SUPPORTED) VAE_CUBLAS_CHECK(status);
    if (status == CUBLAS_STATUS_SUCCESS)
      for (int i = 0; i < found && i < kHeuristicAlgorithms; ++i)
        if (results[i].state == CUBLAS_STATUS_SUCCESS && results[i].workspaceSize <= workspace_bytes_)
          p.algos.push_back(results[i].algo);
  } catch (...) {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    destroy(p.desc, p.a, p.b, p.c);
    throw;
  }
  if (log_plans_)
    std::fprintf(stderr,
                 "vae: GEMM plan m=%d n=%d k=%d op(A)=%c op(B)=%c %s epilogue=%s align A/B/C=%d/%d/%d: %s (%s, "
                 "%zu algorithms)\n",
                 m, n, k, ta ? 'T' : 'N', tb ? 'T' : 'N', tf32 ? "tf32" : "fp32",
                 epilogue_name(static_cast<cublasLtEpilogue_t>(epi)), align_a, align_b, align_c,
                 p.usable() ? "cuBLASLt" : "no algorithm, unfused path", cublasLtGetStatusName(status), p.algos.size());
  return plans_.emplace(key, p).first->second;
}

bool LtMatmul::run(cudaStream_t stream, bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
                   const float* b, int ldb, float* c, int ldc, const Epilogue& epilogue, bool tf32) {
  const bool fused = epilogue.kind != CUBLASLT_EPILOGUE_DEFAULT;
  if (fused && epilogue.bias && pointer_alignment(epilogue.bias) < kMinEpilogueVectorAlignment) return false;
  const bool masked = epilogue.relu_mask != nullptr;
  Plan& p = plan(Key{trans_a, trans_b, m, n, k, lda, ldb, ldc, static_cast<int>(epilogue.kind),
                     masked ? epilogue.mask_ld : 0, tf32, pointer_alignment(a), pointer_alignment(b),
                     pointer_alignment(c)},
                 epilogue);
  if (!p.usable()) return false;
  // Pointers are per call (the plan is shared by every layer of this shape); a captured graph
  // keeps the values set here.
  set_epilogue_pointers(p, epilogue);
  const float alpha = 1.0f, beta = 0.0f;
  const int refused_before = p.next;
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
  // An algorithm refused at launch (checked on the host: nothing was queued) is passed over for good.
  const int ran = first_accepted(p.next, static_cast<int>(p.algos.size()), [&](int i) {
    status = cublasLtMatmul(handle_, p.desc, &alpha, a, p.a, b, p.b, &beta, c, p.c, c, p.c, &p.algos[size_t(i)],
                            workspace_, workspace_bytes_, stream);
    return status != CUBLAS_STATUS_NOT_SUPPORTED;
  });
  if (log_plans_ && p.next != refused_before)
    std::fprintf(stderr, "vae: GEMM m=%d n=%d k=%d epilogue=%s: algorithms %d..%d refused at launch; %s\n", m, n, k,
                 epilogue_name(epilogue.kind), refused_before + 1, p.next,
                 ran >= 0 ? ("algorithm " + std::to_string(ran + 1) + " of " + std::to_string(p.algos.size()) +
                             " ran and is kept").c_str()
                          : (fused ? "none left: unfused path from now on" : "none left"));
  if (ran < 0) {
    if (fused) return false;  // the caller's unfused path computes the same thing
    throw Error("cuBLASLt refused every one of the " + std::to_string(p.algos.size()) +
                " algorithms its heuristic offered for the GEMM m=" + std::to_string(m) + " n=" + std::to_string(n) +
                " k=" + std::to_string(k) + " (NOT_SUPPORTED at launch); run with VAE_LOG_GEMM_PLANS=1 to see the " +
                "plans, try --strict-fp32, or run with --device cpu");
  }
  VAE_CUBLAS_CHECK(status);
  return true;
}

}  // namespace vae::cuda
