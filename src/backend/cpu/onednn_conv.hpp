// oneDNN's convolution primitives for the CPU backend (Debian's libdnnl 2.6, the same OpenMP runtime
// as ours): JIT direct convolutions chosen for the host's instruction set at run time. Those kernels
// want channel-blocked layouts (nChw8c on AVX2, nChw16c on AVX-512), so each call reorders its
// operands from our NCHW/OIHW buffers into blocked copies in the caller's workspace, runs the
// primitive there and reorders the result back, as PyTorch's CPU convolution does. Where oneDNN
// picks plain layouts for a shape (its GEMM-based convolution, or a 1-channel input) nothing is
// copied. Each (operation, geometry)'s primitive and reorders are made on first use and cached;
// the workspace (blocked copies + oneDNN's scratchpad, handed to it as user memory) is sized by
// workspace_bytes, so a call after the first allocates nothing and a step stays recordable.
// Determinism: oneDNN 2.6 on the CPU runs a primitive the same way for the same shape, instruction
// set and thread count (the weight gradient's reduction over the batch goes through per-thread
// buffers added in a fixed order); the backend's same-bits tests hold us to it.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "backend/backend.hpp"

namespace vae::cpu {

class OneDnnConv {
 public:
  enum class Op { Forward, ForwardBias, BackwardData, BackwardWeights, BackwardWeightsBias };

  OneDnnConv();
  ~OneDnnConv();
  OneDnnConv(const OneDnnConv&) = delete;
  OneDnnConv& operator=(const OneDnnConv&) = delete;

  // The workspace one call of `op` on g needs (its blocked copies and oneDNN's scratchpad).
  size_t workspace_bytes(Op op, const ConvGeometry& g);
  // oneDNN's name for the implementation it chose for op on g ("jit:avx2", "gemm:jit", ...).
  std::string implementation(Op op, const ConvGeometry& g);

  // The Backend's conv_forward / conv_backward_data / conv_backward_filter (backend.hpp), b and db
  // may be null. Throws vae::Error when ws holds less than workspace_bytes.
  void forward(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y, Workspace ws);
  void backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx, Workspace ws);
  void backward_weights(const ConvGeometry& g, const float* x, const float* dy, float* dw, float* db, Workspace ws);

 private:
  struct Entry;
  struct Engine;
  using Key = std::tuple<Op, int, int, int, int, int, int, int, int, int>;
  Entry& entry(Op op, const ConvGeometry& g);
  void run(Entry& e, const void* const* buffers, Workspace ws, const char* who);
  std::unique_ptr<Engine> engine_;
  std::map<Key, std::unique_ptr<Entry>> cache_;
};

}  // namespace vae::cpu
