// The CUDA backend: cuBLASLt for the linear layers (bias, ReLU, bias gradient and ReLU gradient
// fused into the GEMM epilogue where cuBLASLt supports the shape, our kernels otherwise), and the
// fused kernels of kernels/*.cu for everything the VAE adds. All work is queued on one stream; nothing here
// allocates after construction except the GEMM plan cache on a shape's first use.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <exception>
#include <string>

#include "backend/backend.hpp"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cudnn_conv.hpp"
#include "backend/cuda/launchers.hpp"
#include "backend/cuda/lt_matmul.hpp"
#include "backend/recording_guard.hpp"
#include "channel_bias.cuh"

namespace vae {
namespace {

constexpr size_t kLtWorkspaceBytes = size_t(32) << 20;

// A CUDA graph instantiated from one capture; replay() launches it on the backend's stream.
class CudaGraphWork final : public RecordedWork {
 public:
  CudaGraphWork(cudaGraphExec_t exec, cudaStream_t stream) : exec_(exec), stream_(stream) {}
  ~CudaGraphWork() override { VAE_CUDA_CHECK_NOTHROW(cudaGraphExecDestroy(exec_)); }
  CudaGraphWork(const CudaGraphWork&) = delete;
  CudaGraphWork& operator=(const CudaGraphWork&) = delete;
  void replay() override { VAE_CUDA_CHECK(cudaGraphLaunch(exec_, stream_)); }

 private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
};

// Device-to-host copies into pinned memory, completion tracked by an event: the host looks at the
// event instead of waiting on the stream, so reading metrics never stalls the queue of steps.
class CudaReadback final : public HostReadback {
 public:
  CudaReadback(int n, cudaStream_t stream) : bytes_(sizeof(float) * static_cast<size_t>(n)), stream_(stream) {
    VAE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host_), bytes_));
    const cudaError_t status = cudaEventCreateWithFlags(&done_, cudaEventDisableTiming);
    if (status != cudaSuccess) {
      cudaFreeHost(host_);
      VAE_CUDA_CHECK(status);
    }
  }
  ~CudaReadback() override {
    VAE_CUDA_CHECK_NOTHROW(cudaEventSynchronize(done_));
    VAE_CUDA_CHECK_NOTHROW(cudaEventDestroy(done_));
    VAE_CUDA_CHECK_NOTHROW(cudaFreeHost(host_));
  }
  CudaReadback(const CudaReadback&) = delete;
  CudaReadback& operator=(const CudaReadback&) = delete;

  void start(const float* src) override {
    VAE_CUDA_CHECK(cudaMemcpyAsync(host_, src, bytes_, cudaMemcpyDeviceToHost, stream_));
    VAE_CUDA_CHECK(cudaEventRecord(done_, stream_));
  }
  bool ready() override {
    const cudaError_t status = cudaEventQuery(done_);
    if (status == cudaErrorNotReady) return false;
    VAE_CUDA_CHECK(status);
    return true;
  }
  const float* wait() override {
    VAE_CUDA_CHECK(cudaEventSynchronize(done_));
    return host_;
  }

 private:
  size_t bytes_;
  cudaStream_t stream_;
  float* host_ = nullptr;
  cudaEvent_t done_ = nullptr;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend() {
    // A failure part-way (no GPU memory for the workspace, say) releases what was already made.
    try {
      // A blocking stream: it orders itself with the synchronous copies Tensor makes on the legacy
      // default stream, so host reads see finished results.
      VAE_CUDA_CHECK(cudaStreamCreate(&stream_));
      VAE_CUBLAS_CHECK(cublasLtCreate(&lt_handle_));
      VAE_CUDA_CHECK(cudaMalloc(&workspace_, kLtWorkspaceBytes));
      static_assert(cuda::kAdamFusedBlocks >= cuda::kAdamNormBlocks);
      VAE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&adam_.partials), cuda::kAdamFusedBlocks * sizeof(double)));
      VAE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&adam_.blocks_done), sizeof(unsigned)));
      VAE_CUDA_CHECK(cudaMemset(adam_.blocks_done, 0, sizeof(unsigned)));
      lt_ = std::make_unique<cuda::LtMatmul>(lt_handle_, workspace_, kLtWorkspaceBytes);
      conv_ = std::make_unique<cuda::CudnnConv>(stream_);
    } catch (...) {
      release();
      throw;
    }
  }
  ~CudaBackend() override { release(); }

  Device device() const override { return Device::CUDA; }
  void* native_stream() override { return stream_; }
  void set_options(const BackendOptions& o) override { options_ = o; }

  // Thread-local capture mode: a call from this thread that could touch the stream implicitly (an
  // allocation, a synchronous copy on the legacy stream) fails the capture instead of being
  // recorded wrongly. The capture is always ended, even when enqueue throws, so the stream stays usable.
  std::unique_ptr<RecordedWork> capture(std::function<void()> enqueue) override {
    VAE_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    std::string failure;
    try {
      RecordingScope recording;
      enqueue();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
    if (failure.empty() && (ended != cudaSuccess || graph == nullptr))
      failure = std::string("cudaStreamEndCapture: ") + cudaGetErrorName(ended) + " (" + cudaGetErrorString(ended) + ")";
    if (!failure.empty()) {
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();  // the capture's error is reported here, not by the next call
      // The recording guard's messages already say what to do; CUDA's own do not.
      const bool advised = failure.find("--no-cuda-graph") != std::string::npos;
      throw Error("recording the training step as a CUDA graph failed: " + failure +
                  (advised ? "" : "; train without the graph (--no-cuda-graph, or cuda_graph: false in the config) "
                                  "and report this"));
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    VAE_CUDA_CHECK(instantiated);
    return std::make_unique<CudaGraphWork>(exec, stream_);
  }
  void select_step(const StepScalars* table, int64_t count, int64_t* cursor, StepScalars* current) override {
    cuda::launch_select_step(table, count, cursor, current, stream_);
  }

  // Row-major y[rows,out] = x w^T + b is column-major y^T[out,rows] = (w viewed as [in,out])^T x^T.
  void linear_forward(const float* x, const float* w, const float* b, float* y, int rows, int in, int out) override {
    if (options_.fused_epilogues &&
        lt_->run(stream_, true, false, out, rows, in, w, in, x, in, y, out, {CUBLASLT_EPILOGUE_BIAS, const_cast<float*>(b)},
                 options_.tf32))
      return;
    gemm(true, false, out, rows, in, w, in, x, in, y, out);
    cuda::launch_bias_add(b, y, rows, out, stream_);
  }

  // dW (column-major [in,out]) = x^T[in,rows] dy[rows,out]; db = sum over rows of dy (BGRADB reduces
  // B over k = rows); dx (column-major [in,rows]) = (w as [in,out]) dy^T.
  void linear_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int rows,
                       int in, int out) override {
    if (!db) {
      gemm(false, true, in, out, rows, x, in, dy, out, dw, in);
    } else if (!(options_.fused_epilogues &&
                 lt_->run(stream_, false, true, in, out, rows, x, in, dy, out, dw, in, {CUBLASLT_EPILOGUE_BGRADB, db},
                          options_.tf32))) {
      gemm(false, true, in, out, rows, x, in, dy, out, dw, in);
      cuda::launch_bias_grad(dy, db, rows, out, stream_);
    }
    if (dx) gemm(false, false, in, rows, out, w, in, dy, out, dx, in);
  }

  // The ReLU bit-mask: one bit per element of the column-major [out, rows] output, columns padded
  // to a multiple of 128 bits as cuBLASLt requires.
  size_t relu_mask_bytes(int rows, int out) const override {
    return static_cast<size_t>(cuda::relu_mask_ld(out) / 8) * static_cast<size_t>(rows);
  }
  // RELU_AUX_BIAS writes the mask the backward pass's DRELU_BGRAD reads; without a mask (or an
  // algorithm for it) the product runs with the bias epilogue or none, then our relu_bias kernel.
  bool linear_relu_forward(const float* x, const float* w, const float* b, float* y, void* relu_mask, int rows, int in,
                           int out) override {
    const auto bias = const_cast<float*>(b);
    if (options_.fused_epilogues && relu_mask &&
        lt_->run(stream_, true, false, out, rows, in, w, in, x, in, y, out,
                 {CUBLASLT_EPILOGUE_RELU_AUX_BIAS, bias, relu_mask, cuda::relu_mask_ld(out)}, options_.tf32))
      return true;
    if (options_.fused_epilogues &&
        lt_->run(stream_, true, false, out, rows, in, w, in, x, in, y, out, {CUBLASLT_EPILOGUE_RELU_BIAS, bias},
                 options_.tf32))
      return false;
    gemm(true, false, out, rows, in, w, in, x, in, y, out);
    cuda::launch_relu_bias(b, y, rows, out, stream_);
    return false;
  }
  // dpre (column-major [in,rows]) = (w as [in,out]) dy^T, masked by DRELU_BGRAD, whose bias gradient
  // (length m = in, summed over the rows) is the layer below's.
  void linear_relu_input_backward(const float* w, const float* dy, const float* a, const void* relu_mask, float* dpre,
                                  float* dbias, int rows, int in, int out) override {
    if (options_.fused_epilogues && relu_mask &&
        lt_->run(stream_, false, false, in, rows, out, w, in, dy, out, dpre, in,
                 {CUBLASLT_EPILOGUE_DRELU_BGRAD, dbias, const_cast<void*>(relu_mask), cuda::relu_mask_ld(in)},
                 options_.tf32))
      return;
    gemm(false, false, in, rows, out, w, in, dy, out, dpre, in);
    cuda::launch_relu_grad_bias_grad(a, dpre, dbias, rows, in, stream_);
  }

  size_t conv_workspace_bytes(const ConvGeometry& g) override { return conv_->workspace_bytes(g, options_.tf32); }
  void conv_forward(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
                    Workspace ws) override {
    conv_->forward(g, options_.tf32, x, w, y, ws);
    if (b) ops::channel_bias_add(*this, b, y, g.n, g.k, g.oh() * g.ow());
  }
  void conv_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx, Workspace ws) override {
    conv_->backward_data(g, options_.tf32, dy, w, dx, ws);
  }
  void conv_backward_filter(const ConvGeometry& g, const float* x, const float* dy, float* dw, float* db,
                            Workspace ws) override {
    conv_->backward_filter(g, options_.tf32, x, dy, dw, ws);
    if (db) ops::channel_bias_grad(*this, dy, db, g.n, g.k, g.oh() * g.ow());
  }
  void loss_reduce(const float* nll, const float* kl, int rows, const StepScalars* step, float* out) override {
    cuda::launch_loss_reduce(nll, kl, rows, step, out, stream_);
  }
  void adam_step(float* p, const float* g, float* m, float* v, int64_t n, float clip_norm, const StepScalars* step,
                 float* grad_norm_out, const StepGuard& guard) override {
    cuda::launch_adam_step(p, g, m, v, n, clip_norm, step, adam_, grad_norm_out, guard, stream_);
  }

 private:
  void wait_idle() override { VAE_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  std::unique_ptr<HostReadback> new_readback(int n) override { return std::make_unique<CudaReadback>(n, stream_); }

  // The unfused GEMM: no epilogue; a shape cuBLASLt cannot run at all is an error.
  void gemm(bool ta, bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc) {
    if (!lt_->run(stream_, ta, tb, m, n, k, a, lda, b, ldb, c, ldc, {}, options_.tf32))
      throw Error("cuBLASLt has no algorithm for a " + std::to_string(m) + "x" + std::to_string(n) + "x" +
                  std::to_string(k) + " float GEMM on this GPU");
  }

  // Frees whatever exists, in reverse order of creation (the constructor's unwinding uses it too).
  void release() noexcept {
    conv_.reset();
    lt_.reset();
    if (stream_) VAE_CUDA_CHECK_NOTHROW(cudaStreamSynchronize(stream_));
    if (adam_.blocks_done) VAE_CUDA_CHECK_NOTHROW(cudaFree(adam_.blocks_done));
    if (adam_.partials) VAE_CUDA_CHECK_NOTHROW(cudaFree(adam_.partials));
    if (workspace_) VAE_CUDA_CHECK_NOTHROW(cudaFree(workspace_));
    if (lt_handle_) cublasLtDestroy(lt_handle_);
    if (stream_) VAE_CUDA_CHECK_NOTHROW(cudaStreamDestroy(stream_));
    adam_ = {};
    workspace_ = nullptr;
    lt_handle_ = nullptr;
    stream_ = nullptr;
  }

  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_handle_ = nullptr;
  void* workspace_ = nullptr;
  cuda::AdamScratch adam_;
  std::unique_ptr<cuda::LtMatmul> lt_;
  std::unique_ptr<cuda::CudnnConv> conv_;
  BackendOptions options_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<CudaBackend>(); }

}  // namespace vae
