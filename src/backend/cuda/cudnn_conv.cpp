#include "backend/cuda/cudnn_conv.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

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

static_assert(static_cast<int>(ConvMath::Default) == CUDNN_DEFAULT_MATH &&
                  static_cast<int>(ConvMath::TensorOp) == CUDNN_TENSOR_OP_MATH &&
                  static_cast<int>(ConvMath::TensorOpAllowConversion) == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION &&
                  static_cast<int>(ConvMath::Fma) == CUDNN_FMA_MATH,
              "ConvMath mirrors cudnnMathType_t");

bool log_plans() {
  const char* log = std::getenv("VAE_LOG_CONV_PLANS");
  return log && *log && std::string(log) != "0";
}

// cuDNN's candidates for one direction, in its order, with the workspace each needs under its own
// math type (asked of cuDNN, not read off the heuristic's estimate), reduced to the usable ones.
// size_of(algo, bytes*) asks the workspace size with the descriptor's math type already set.
template <class Perf, class SizeOf>
std::vector<ConvCandidate> usable(const Perf* perf, int returned, bool tf32, cudnnConvolutionDescriptor_t conv,
                                  SizeOf size_of, const char* direction, const ConvGeometry& g) {
  std::vector<ConvCandidate> offered;
  for (int i = 0; i < returned; ++i) {
    ConvCandidate c;
    c.algo = static_cast<int>(perf[i].algo);
    c.math = static_cast<ConvMath>(perf[i].mathType);
    c.succeeded = perf[i].status == CUDNN_STATUS_SUCCESS;
    c.deterministic = perf[i].determinism == CUDNN_DETERMINISTIC;
    if (c.succeeded && c.deterministic && conv_math_refusal(c.math, tf32).empty()) {
      // An algorithm whose size query fails is not offered (cuDNN would refuse it at the call too).
      c.succeeded = cudnnSetConvolutionMathType(conv, perf[i].mathType) == CUDNN_STATUS_SUCCESS &&
                    size_of(perf[i].algo, &c.workspace_bytes) == CUDNN_STATUS_SUCCESS;
    }
    offered.push_back(c);
  }
  std::vector<ConvCandidate> kept = usable_conv_candidates(offered, tf32);
  if (kept.empty())
    throw Error(std::string("cuDNN offers no deterministic ") + direction + " algorithm with " +
                (tf32 ? "FP32 or TF32" : "strict FP32") + " math for the convolution " + describe(g) +
                " on this GPU (" + std::to_string(returned) + " offered); try another batch size or kernel" +
                (tf32 ? "" : ", or drop --strict-fp32") + ", or run with --device cpu");
  return kept;
}

}  // namespace

// One direction of a plan: its usable algorithms, and the one chosen for the last workspace size.
struct CudnnConv::Direction {
  explicit Direction(const char* what) : name(what) {}
  const char* name;
  std::vector<ConvCandidate> candidates;
  size_t chosen_for = SIZE_MAX;  // the workspace size `chosen` was picked for
  int chosen = -1;
};

struct CudnnConv::Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  Direction fwd{"forward"}, bwd_data{"backward-data"}, bwd_filter{"backward-filter"};

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

  // Each heuristic query runs with the run's math type on the descriptor; each candidate's size with
  // its own. The descriptor's math type is set again before every call (below).
  int returned = 0;
  cudnnConvolutionFwdAlgoPerf_t fwd[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  VAE_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, math));
  VAE_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle_, p->x, p->w, p->conv, p->y,
                                                         CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, fwd));
  p->fwd.candidates = usable(fwd, returned, tf32, p->conv, [&](cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
    return cudnnGetConvolutionForwardWorkspaceSize(handle_, p->x, p->w, p->conv, p->y, algo, bytes);
  }, "forward", g);

  cudnnConvolutionBwdDataAlgoPerf_t bd[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
  VAE_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, math));
  VAE_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle_, p->w, p->y, p->conv, p->x,
                                                              CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, bd));
  p->bwd_data.candidates = usable(bd, returned, tf32, p->conv, [&](cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(handle_, p->w, p->y, p->conv, p->x, algo, bytes);
  }, "backward-data", g);

  cudnnConvolutionBwdFilterAlgoPerf_t bf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
  VAE_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, math));
  VAE_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle_, p->x, p->y, p->conv, p->w,
                                                                CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, bf));
  p->bwd_filter.candidates = usable(bf, returned, tf32, p->conv,
                                    [&](cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle_, p->x, p->y, p->conv, p->w, algo, bytes);
  }, "backward-filter", g);
  if (log_plans()) {
    std::string line = "vae: cuDNN plan " + describe(g) + " tf32=" + (tf32 ? "1" : "0") + ":";
    for (const Direction* d : {&p->fwd, &p->bwd_data, &p->bwd_filter}) {
      line += std::string(" ") + d->name + " algos";
      for (const ConvCandidate& c : d->candidates)
        line += " " + std::to_string(c.algo) + "/math" + std::to_string(static_cast<int>(c.math)) + "/" +
                std::to_string(c.workspace_bytes) + "B";
      line += ";";
    }
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  return *plans_.emplace(key, std::move(p)).first->second;
}

size_t CudnnConv::workspace_bytes(const ConvGeometry& g, bool tf32) {
  const Plan& p = plan(g, tf32);
  return std::max({p.fwd.candidates.front().workspace_bytes, p.bwd_data.candidates.front().workspace_bytes,
                   p.bwd_filter.candidates.front().workspace_bytes, size_t(1)});
}

const ConvCandidate& CudnnConv::pick(Plan& p, Direction& d, const ConvGeometry& g, Workspace ws) {
  const size_t available = ws.data ? ws.bytes : 0;
  if (d.chosen_for != available) {
    const ConvCandidate* c = first_fitting(d.candidates, available);
    if (!c) {
      size_t least = SIZE_MAX;
      for (const ConvCandidate& k : d.candidates) least = std::min(least, k.workspace_bytes);
      throw Error(std::string("cuDNN: no deterministic ") + d.name + " algorithm for the convolution " + describe(g) +
                  " fits its " + std::to_string(available) + "-byte workspace (the smallest needs " +
                  std::to_string(least) + "); the workspace is sized in prepare for the largest batch, so a " +
                  "batch larger than the one prepared reached this call: report it, or run with --device cpu");
    }
    const int index = static_cast<int>(c - d.candidates.data());
    if (log_plans() && index != d.chosen)
      std::fprintf(stderr, "vae: cuDNN %s %s: algo %d (%zu B, choice %d of %zu) for a %zu-byte workspace\n", d.name,
                   describe(g).c_str(), c->algo, c->workspace_bytes, index + 1, d.candidates.size(), available);
    d.chosen = index;
    d.chosen_for = available;
  }
  const ConvCandidate& c = d.candidates[static_cast<size_t>(d.chosen)];
  // The math type lives in the shared convolution descriptor, so each call sets its own before it
  // runs (a host-side descriptor update: nothing is queued, nothing is recorded).
  VAE_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, static_cast<cudnnMathType_t>(c.math)));
  return c;
}

void CudnnConv::forward(const ConvGeometry& g, bool tf32, const float* x, const float* w, float* y, Workspace ws) {
  Plan& p = plan(g, tf32);
  const ConvCandidate& c = pick(p, p.fwd, g, ws);
  const float one = 1.0f, zero = 0.0f;
  VAE_CUDNN_CHECK(cudnnConvolutionForward(handle_, &one, p.x, x, p.w, w, p.conv,
                                          static_cast<cudnnConvolutionFwdAlgo_t>(c.algo), ws.data, c.workspace_bytes,
                                          &zero, p.y, y));
}

void CudnnConv::backward_data(const ConvGeometry& g, bool tf32, const float* dy, const float* w, float* dx,
                              Workspace ws) {
  Plan& p = plan(g, tf32);
  const ConvCandidate& c = pick(p, p.bwd_data, g, ws);
  const float one = 1.0f, zero = 0.0f;
  VAE_CUDNN_CHECK(cudnnConvolutionBackwardData(handle_, &one, p.w, w, p.y, dy, p.conv,
                                               static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo), ws.data,
                                               c.workspace_bytes, &zero, p.x, dx));
}

void CudnnConv::backward_filter(const ConvGeometry& g, bool tf32, const float* x, const float* dy, float* dw,
                                Workspace ws) {
  Plan& p = plan(g, tf32);
  const ConvCandidate& c = pick(p, p.bwd_filter, g, ws);
  const float one = 1.0f, zero = 0.0f;
  VAE_CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle_, &one, p.x, x, p.y, dy, p.conv,
                                                 static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo), ws.data,
                                                 c.workspace_bytes, &zero, p.w, dw));
}

}  // namespace vae::cuda
