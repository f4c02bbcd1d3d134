// 2-D convolutions through cuDNN 9's convolution API (forward, backward data, backward filter).
//
// Why this API and not the graph API: each of our three calls is a single convolution node, which
// the legacy API expresses with four descriptors and one call, with cuDNN's own heuristic choosing
// the algorithm; the graph API needs an operation graph, engine heuristics, engine configs and an
// execution plan per call, several hundred lines that no GPU has yet checked here. The legacy API is
// marked deprecated in 9.x (warnings only with CUDNN_WARN_DEPRECATED) but is shipped and supported in
// every 9.x release. Moving to the graph API is the step that buys conv+bias+activation fusion;
// it belongs with a GPU that can verify it.
//
// Plans (descriptors, the algorithm of each direction and its workspace) are made once per
// geometry and TF32 setting, in workspace_bytes() (called from prepare), and cached. Only
// deterministic algorithms are chosen: the same inputs give the same bits on the same GPU.
// VAE_LOG_CONV_PLANS=1 prints each plan as it is made.
#pragma once

#include <cudnn.h>
#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <tuple>

#include "backend/backend.hpp"

namespace vae::cuda {

class CudnnConv {
 public:
  explicit CudnnConv(cudaStream_t stream);
  ~CudnnConv();
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;

  size_t workspace_bytes(const ConvGeometry& g, bool tf32);
  void forward(const ConvGeometry& g, bool tf32, const float* x, const float* w, float* y, void* workspace);
  void backward_data(const ConvGeometry& g, bool tf32, const float* dy, const float* w, float* dx, void* workspace);
  void backward_filter(const ConvGeometry& g, bool tf32, const float* x, const float* dy, float* dw, void* workspace);

 private:
  struct Plan;
  Plan& plan(const ConvGeometry& g, bool tf32);

  cudnnHandle_t handle_ = nullptr;
  std::map<std::tuple<int, int, int, int, int, int, int, int, int, bool>, std::unique_ptr<Plan>> plans_;
};

}  // namespace vae::cuda
