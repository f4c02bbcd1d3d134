#include "backend/cuda/cudnn_conv.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "backend/cuda/cuda_check.hpp"

namespace vae::cuda {
namespace {

[[noreturn]] void throw_cudnn(cudnnStatus_t status, const char* expr, const char* file, int line) {
  throw Error(std::string("cuDNN error ") + cudnnGetErrorString(status) + " in " + expr + " at " + file + ":" +
              std::to_string(line) +
              "; check that cuDNN 9 is installed for this CUDA (libcudnn.so.9 on the library path), or run with "
              "--device cpu");
}

#define VAE_CUDNN_CHECK(expr)                                                                          \
  do {                                                                                                 \
    const cudnnStatus_t vae_status_ = (expr);                                                          \
    if (vae_status_ != CUDNN_STATUS_SUCCESS) throw_cudnn(vae_status_, #expr, __FILE__, __LINE__);      \
  } while (0)

std::string describe(const ConvGeometry& g) {
  return std::to_string(g.n) + "x" + std::to_string(g.c) + "x" + std::to_string(g.h) + "x" + std::to_string(g.w) +
         " * " + std::to_string(g.k) + "x" + std::to_string(g.c) + "x" + std::to_string(g.kh) + "x" +
         std::to_string(g.kw) + " stride " + std::to_string(g.stride) + " pad " + std::to_string(g.pad);
}

// The first candidate (cuDNN orders them fastest first by its heuristic) that ran, is deterministic
// and uses the requested math. Throws when there is none.
template <class Perf>
const Perf& choose(const Perf* perf, int returned, cudnnMathType_t math, const char* direction, const ConvGeometry& g) {
  for (int i = 0; i < returned; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].determinism == CUDNN_DETERMINISTIC &&
        (math == CUDNN_DEFAULT_MATH || perf[i].mathType == math))
      return perf[i];
  throw Error(std::string("cuDNN offers no deterministic ") + direction + " algorithm for the convolution " +
              describe(g) + " on this GPU; try another batch size or kernel, or run with --device cpu");
}

}  // namespace

struct CudnnConv::Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t bwd_data{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter{};
  cudnnMathType_t fwd_math{}, bwd_data_math{}, bwd_filter_math{};
  size_t fwd_bytes = 0, bwd_data_bytes = 0, bwd_filter_bytes = 0;

  ~Plan() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
};

CudnnConv::CudnnConv(cudaStream_t stream) {
  VAE_CUDNN_CHECK(cudnnCreate(&handle_));
  const cudnnStatus_t status = cudnnSetStream(handle_, stream);
  if (status != CUDNN_STATUS_SUCCESS) {
    cudnnDestroy(handle_);
    throw_cudnn(status, "cudnnSetStream", __FILE__, __LINE__);
  }
}

CudnnConv::~CudnnConv() {
  plans_.clear();
  if (handle_) cudnnDestroy(handle_);
}

CudnnConv::Plan& CudnnConv::plan(const ConvGeometry& g, bool tf32) {
  const auto key = std::make_tuple(g.n, g.c, g.h, g.w, g.k, g.kh, g.kw, g.stride, g.pad, tf32);
  if (auto it = plans_.find(key); it != plans_.end()) return *it->second;
  g.check("conv (cuDNN)");
  auto p = std::make_unique<Plan>();
  VAE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->x));
  VAE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->y));
  VAE_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w));
  VAE_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->conv));
  VAE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g.n, g.c, g.h, g.w));
  VAE_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, g.k, g.c, g.kh, g.kw));
  VAE_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p->conv, g.pad, g.pad, g.stride, g.stride, 1, 1,
                                                  CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  // TF32 off means strict FP32 (FMA math), as for the GEMMs; on lets cuDNN use TF32 tensor cores.
  const cudnnMathType_t math = tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
  VAE_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, math));
  int n = 0, c = 0, h = 0, w = 0;
  VAE_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &n, &c, &h, &w));
  if (n != g.n || c != g.k || h != g.oh() || w != g.ow())
    throw Error("cuDNN computes a " + std::to_string(h) + "x" + std::to_string(w) + " output for the convolution " +
                describe(g) + " where " + std::to_string(g.oh()) + "x" + std::to_string(g.ow()) + " was expected");
  VAE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w));

  int returned = 0;
  cudnnConvolutionFwdAlgoPerf_t fwd[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  VAE_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle_, p->x, p->w, p->conv, p->y,
                                                         CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, fwd));
  const auto& f = choose(fwd, returned, math, "forward", g);
  p->fwd = f.algo;
  p->fwd_math = f.mathType;
  VAE_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->fwd_math));
  VAE_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle_, p->x, p->w, p->conv, p->y, p->fwd, &p->fwd_bytes));

  cudnnConvolutionBwdDataAlgoPerf_t bd[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
  VAE_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, math));
  VAE_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle_, p->w, p->y, p->conv, p->x,
                                                              CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, bd));
  const auto& d = choose(bd, returned, math, "backward-data", g);
  p->bwd_data = d.algo;
  p->bwd_data_math = d.mathType;
  VAE_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->bwd_data_math));
  VAE_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(handle_, p->w, p->y, p->conv, p->x, p->bwd_data,
                                                               &p->bwd_data_bytes));

  cudnnConvolutionBwdFilterAlgoPerf_t bf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
  VAE_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, math));
  VAE_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle_, p->x, p->y, p->conv, p->w,
                                                                CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, bf));
  const auto& fl = choose(bf, returned, math, "backward-filter", g);
  p->bwd_filter = fl.algo;
  p->bwd_filter_math = fl.mathType;
  VAE_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->bwd_filter_math));
  VAE_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(handle_, p->x, p->y, p->conv, p->w, p->bwd_filter,
                                                                 &p->bwd_filter_bytes));
  if (const char* log = std::getenv("VAE_LOG_CONV_PLANS"); log && *log && std::string(log) != "0")
    std::fprintf(stderr, "vae: cuDNN plan %s tf32=%d: forward algo %d (%zu B), backward-data algo %d (%zu B), "
                         "backward-filter algo %d (%zu B)\n",
                 describe(g).c_str(), tf32 ? 1 : 0, static_cast<int>(p->fwd), p->fwd_bytes,
                 static_cast<int>(p->bwd_data), p->bwd_data_bytes, static_cast<int>(p->bwd_filter), p->bwd_filter_bytes);
  return *plans_.emplace(key, std::move(p)).first->second;
}

size_t CudnnConv::workspace_bytes(const ConvGeometry& g, bool tf32) {
  const Plan& p = plan(g, tf32);
  return std::max({p.fwd_bytes, p.bwd_data_bytes, p.bwd_filter_bytes, size_t(1)});
}

// The math type lives in the shared convolution descriptor, so each call sets its own before it runs
// (a host-side descriptor update: nothing is queued, nothing is recorded).
void CudnnConv::forward(const ConvGeometry& g, bool tf32, const float* x, const float* w, float* y, void* workspace) {
  Plan& p = plan(g, tf32);
  const float one = 1.0f, zero = 0.0f;
  VAE_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.fwd_math));
  VAE_CUDNN_CHECK(cudnnConvolutionForward(handle_, &one, p.x, x, p.w, w, p.conv, p.fwd, workspace, p.fwd_bytes, &zero,
                                          p.y, y));
}

void CudnnConv::backward_data(const ConvGeometry& g, bool tf32, const float* dy, const float* w, float* dx,
                              void* workspace) {
  Plan& p = plan(g, tf32);
  const float one = 1.0f, zero = 0.0f;
  VAE_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_data_math));
  VAE_CUDNN_CHECK(cudnnConvolutionBackwardData(handle_, &one, p.w, w, p.y, dy, p.conv, p.bwd_data, workspace,
                                               p.bwd_data_bytes, &zero, p.x, dx));
}

void CudnnConv::backward_filter(const ConvGeometry& g, bool tf32, const float* x, const float* dy, float* dw,
                                void* workspace) {
  Plan& p = plan(g, tf32);
  const float one = 1.0f, zero = 0.0f;
  VAE_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_filter_math));
  VAE_CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle_, &one, p.x, x, p.y, dy, p.conv, p.bwd_filter, workspace,
                                                 p.bwd_filter_bytes, &zero, p.w, dw));
}

}  // namespace vae::cuda
