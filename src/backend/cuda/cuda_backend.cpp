// The CUDA backend: cuBLASLt for the linear layers (bias and bias gradient fused into the GEMM
// epilogue where cuBLASLt supports the shape, our kernels otherwise), and the fused kernels of
// kernels/*.cu for everything the VAE adds. All work is queued on one stream; nothing here
// allocates after construction except the GEMM plan cache on a shape's first use.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "backend/backend.hpp"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launchers.hpp"
#include "backend/cuda/lt_matmul.hpp"

namespace vae {
namespace {

constexpr size_t kLtWorkspaceBytes = size_t(32) << 20;

class CudaBackend final : public Backend {
 public:
  CudaBackend() {
    // A blocking stream: it orders itself with the synchronous copies Tensor makes on the legacy
    // default stream, so host reads see finished results.
    VAE_CUDA_CHECK(cudaStreamCreate(&stream_));
    VAE_CUBLAS_CHECK(cublasLtCreate(&lt_handle_));
    VAE_CUDA_CHECK(cudaMalloc(&workspace_, kLtWorkspaceBytes));
    VAE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&norm_partials_), cuda::kAdamNormBlocks * sizeof(double)));
    lt_ = std::make_unique<cuda::LtMatmul>(lt_handle_, workspace_, kLtWorkspaceBytes);
  }
  ~CudaBackend() override {
    lt_.reset();
    VAE_CUDA_CHECK_NOTHROW(cudaStreamSynchronize(stream_));
    VAE_CUDA_CHECK_NOTHROW(cudaFree(norm_partials_));
    VAE_CUDA_CHECK_NOTHROW(cudaFree(workspace_));
    cublasLtDestroy(lt_handle_);
    VAE_CUDA_CHECK_NOTHROW(cudaStreamDestroy(stream_));
  }

  Device device() const override { return Device::CUDA; }
  void set_options(const BackendOptions& o) override { options_ = o; }
  void synchronize() override { VAE_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  // Row-major y[rows,out] = x w^T + b is column-major y^T[out,rows] = (w viewed as [in,out])^T x^T.
  void linear_forward(const float* x, const float* w, const float* b, float* y, int rows, int in, int out) override {
    if (options_.fused_epilogues &&
        lt_->run(stream_, true, false, out, rows, in, w, in, x, in, y, out, CUBLASLT_EPILOGUE_BIAS,
                 const_cast<float*>(b), options_.tf32))
      return;
    gemm(true, false, out, rows, in, w, in, x, in, y, out);
    cuda::launch_bias_add(b, y, rows, out, stream_);
  }

  // dW (column-major [in,out]) = x^T[in,rows] dy[rows,out]; db = sum over rows of dy (BGRADB reduces
  // B over k = rows); dx (column-major [in,rows]) = (w as [in,out]) dy^T.
  void linear_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int rows,
                       int in, int out) override {
    if (!(options_.fused_epilogues &&
          lt_->run(stream_, false, true, in, out, rows, x, in, dy, out, dw, in, CUBLASLT_EPILOGUE_BGRADB, db,
                   options_.tf32))) {
      gemm(false, true, in, out, rows, x, in, dy, out, dw, in);
      cuda::launch_bias_grad(dy, db, rows, out, stream_);
    }
    if (dx) gemm(false, false, in, rows, out, w, in, dy, out, dx, in);
  }

  void activation_forward(math::Act act, float slope, const float* x, float* y, int64_t n) override {
    cuda::launch_activation_forward(act, slope, x, y, n, stream_);
  }
  void activation_backward(math::Act act, float slope, const float* x, const float* dy, float* dx, int64_t n) override {
    cuda::launch_activation_backward(act, slope, x, dy, dx, n, stream_);
  }
  void latent_sample_kl_forward(const LatentArgs& a, const float* h, float* z, float* kl_sample, float* kl_dim) override {
    cuda::launch_latent_sample_kl_forward(a, h, z, kl_sample, kl_dim, stream_);
  }
  void latent_sample_kl_backward(const LatentArgs& a, const float* h, const float* dz, float kl_weight, float* dh) override {
    cuda::launch_latent_sample_kl_backward(a, h, dz, kl_weight, dh, stream_);
  }
  void bernoulli_nll(const float* logits, const float* x, float* nll, float* dlogits, int rows, int d,
                     float grad_scale) override {
    cuda::launch_bernoulli_nll(logits, x, nll, dlogits, rows, d, grad_scale, stream_);
  }
  void gaussian_nll(const float* mean, const float* x, const float* log_sigma_raw, float fixed_log_sigma, float* nll,
                    float* dmean, float* dlog_sigma, int rows, int d, float grad_scale) override {
    cuda::launch_gaussian_nll(mean, x, log_sigma_raw, fixed_log_sigma, nll, dmean, dlog_sigma, rows, d, grad_scale,
                              stream_);
  }
  void loss_reduce(const float* nll, const float* kl, int rows, float beta, float* out) override {
    cuda::launch_loss_reduce(nll, kl, rows, beta, out, stream_);
  }
  void accumulate_scaled(const float* src, int n, float scale, float* dst) override {
    cuda::launch_accumulate_scaled(src, n, scale, dst, stream_);
  }
  void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamArgs& a,
                 float* grad_norm_out) override {
    cuda::launch_adam_step(p, g, m, v, n, a, norm_partials_, grad_norm_out, stream_);
  }
  void gather_pixels(const uint8_t* images, const int32_t* index, int rows, int d, bool binarize, uint64_t seed,
                     uint32_t stream, uint64_t step, float* x) override {
    cuda::launch_gather_pixels(images, index, rows, d, binarize, seed, stream, step, x, stream_);
  }
  void latent_importance_sample(const float* h, float* z, float* log_pz_minus_qz, int rows, int k, int latent,
                                uint64_t seed, int64_t row0, int64_t sample0) override {
    cuda::launch_latent_importance_sample(h, z, log_pz_minus_qz, rows, k, latent, seed, row0, sample0, stream_);
  }
  void logsumexp_accumulate(const float* log_pz_minus_qz, const float* nll, int rows, int k, float* running_max,
                            float* running_sum) override {
    cuda::launch_logsumexp_accumulate(log_pz_minus_qz, nll, rows, k, running_max, running_sum, stream_);
  }
  void sigmoid(const float* x, float* y, int64_t n) override { cuda::launch_sigmoid(x, y, n, stream_); }
  void clamp01(const float* x, float* y, int64_t n) override { cuda::launch_clamp01(x, y, n, stream_); }
  void normal_fill(float* z, int rows, int cols, float scale, uint64_t seed, uint32_t stream, uint64_t step) override {
    cuda::launch_normal_fill(z, rows, cols, scale, seed, stream, step, stream_);
  }
  void fill(float* x, int64_t n, float value) override { cuda::launch_fill(x, n, value, stream_); }

 private:
  // The unfused GEMM: no epilogue; a shape cuBLASLt cannot run at all is an error.
  void gemm(bool ta, bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc) {
    if (!lt_->run(stream_, ta, tb, m, n, k, a, lda, b, ldb, c, ldc, CUBLASLT_EPILOGUE_DEFAULT, nullptr, options_.tf32))
      throw Error("cuBLASLt has no algorithm for a " + std::to_string(m) + "x" + std::to_string(n) + "x" +
                  std::to_string(k) + " float GEMM on this GPU");
  }

  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_handle_ = nullptr;
  void* workspace_ = nullptr;
  double* norm_partials_ = nullptr;
  std::unique_ptr<cuda::LtMatmul> lt_;
  BackendOptions options_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<CudaBackend>(); }

}  // namespace vae
