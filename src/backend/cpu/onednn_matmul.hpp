// oneDNN's matmul primitive for the CPU backend's linear layers (Debian's libdnnl, built with the
// same OpenMP runtime as ours): JIT kernels chosen for the host's instruction set at run time, with
// the bias and a ReLU fused into the forward GEMM as post-ops. Each shape's primitive, its memory
// objects and its argument map are made on its first call and cached, so that later calls (every
// step after the first) allocate nothing: a step stays recordable and allocation-free.
// Determinism: oneDNN 2.6 on the CPU runs a primitive the same way for the same shape, instruction
// set and thread count (its reductions over K go through per-thread buffers summed in a fixed
// order); Threads/EndToEnd same-bits tests hold us to it.
#pragma once

#include <map>
#include <memory>
#include <tuple>

namespace vae::cpu {

class OneDnnMatmul {
 public:
  OneDnnMatmul();
  ~OneDnnMatmul();
  OneDnnMatmul(const OneDnnMatmul&) = delete;
  OneDnnMatmul& operator=(const OneDnnMatmul&) = delete;

  // y[rows,out] = x[rows,in] W[out,in]^T + b[out] (b may be null), then max(0, y) when relu.
  void forward(const float* x, const float* w, const float* b, float* y, int rows, int in, int out, bool relu);
  // dx[rows,in] = dy[rows,out] W[out,in].
  void input_grad(const float* dy, const float* w, float* dx, int rows, int in, int out);
  // dw[out,in] = dy[rows,out]^T x[rows,in].
  void weight_grad(const float* dy, const float* x, float* dw, int rows, int in, int out);

 private:
  struct Entry;
  enum class Kind { Forward, ForwardBias, ForwardRelu, ForwardBiasRelu, InputGrad, WeightGrad };
  using Key = std::tuple<Kind, int, int, int>;
  Entry& entry(Kind kind, int rows, int in, int out);
  struct Engine;
  std::unique_ptr<Engine> engine_;
  std::map<Key, std::unique_ptr<Entry>> cache_;
};

}  // namespace vae::cpu
