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
// Plans (descriptors, and for each direction the usable algorithms in cuDNN's order with the
// workspace each needs) are made once per geometry and TF32 setting, in workspace_bytes() (called
// from prepare) or at the first call, and cached. Only deterministic algorithms with the math the
// run asked for are kept (backend/algorithm_choice.hpp): the same inputs give the same bits on the
// same GPU. workspace_bytes() asks for what the first (fastest) of each direction needs; each call
// runs the first whose workspace fits what the caller has, which may be less for this batch size
// than for the one the workspace was sized for, and throws when none fits.
// VAE_LOG_CONV_PLANS=1 prints each plan as it is made and each fallback to a later algorithm.
#pragma once

#include <cudnn.h>
#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <tuple>

#include "backend/algorithm_choice.hpp"
#include "backend/backend.hpp"

namespace vae::cuda {

class CudnnConv {
 public:
  explicit CudnnConv(cudaStream_t stream);
  ~CudnnConv();
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;

  size_t workspace_bytes(const ConvGeometry& g, bool tf32);
  void forward(const ConvGeometry& g, bool tf32, const float* x, const float* w, float* y, Workspace ws);
  void backward_data(const ConvGeometry& g, bool tf32, const float* dy, const float* w, float* dx, Workspace ws);
  void backward_filter(const ConvGeometry& g, bool tf32, const float* x, const float* dy, float* dw, Workspace ws);

 private:
  struct Plan;
  struct Direction;
  Plan& plan(const ConvGeometry& g, bool tf32);
  // The algorithm of one direction for the caller's workspace (its math type set on the plan's
  // descriptor); throws when none of the usable ones fits.
  const ConvCandidate& pick(Plan& p, Direction& d, const ConvGeometry& g, Workspace ws);

  cudnnHandle_t handle_ = nullptr;
  std::map<std::tuple<int, int, int, int, int, int, int, int, int, bool>, std::unique_ptr<Plan>> plans_;
};

}  // namespace vae::cuda
