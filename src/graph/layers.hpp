// Shaped modules (Linear, Conv2d, ConvTranspose2d, activations, Flatten/Reshape) and Sequential.
// Modules own no parameter memory: they hold views (offsets) into the model's flat parameter and
// gradient buffers. Sequential owns the activation buffers and the workspace, sized in prepare(rows),
// so forward/backward allocate nothing. A fusion pass pairs each Linear followed by ReLU into one
// backend call (one cuBLASLt GEMM each way on CUDA, the same bits as apart on the CPU).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "vae/config.hpp"
#include "vae/tensor.hpp"

namespace vae {

struct ParamSlice {
  std::string name;
  int64_t offset = 0;  // into the flat buffer, in floats
  Shape shape;
};

// A module of the network: per-sample input and output shapes ([F] or [C, H, W]; a batch adds a
// leading row dimension), the parameters it declares in the flat buffers, the workspace it needs for
// a batch, and forward and backward over batches of `rows` samples in backend memory.
class Module {
 public:
  Module(Shape in, Shape out) : in_shape_(std::move(in)), out_shape_(std::move(out)) {}
  virtual ~Module() = default;
  virtual std::string kind() const = 0;  // "Linear", "Conv2d", ... (messages and checkpoints)
  const Shape& in_shape() const { return in_shape_; }
  const Shape& out_shape() const { return out_shape_; }
  int64_t in_features() const { return shape_numel(in_shape_); }
  int64_t out_features() const { return shape_numel(out_shape_); }
  // A view module (Flatten, Reshape) changes only the shape: its output is its input's memory, and
  // the gradient passes through untouched. Sequential allocates nothing for it and never calls it.
  virtual bool is_view() const { return false; }
  // Reserves this module's parameters at offset in the flat buffer; returns the next free offset.
  virtual int64_t layout(int64_t offset) { return offset; }
  virtual void bind(float* /*params*/, float* /*grads*/) {}
  virtual void param_slices(const std::string& /*prefix*/, std::vector<ParamSlice>& /*out*/) const {}
  // Fills this module's slice of the host parameter vector; tensor_index keys its Philox stream.
  virtual void initialize(std::vector<float>& /*params*/, InitScheme /*scheme*/, uint64_t /*seed*/,
                          uint32_t& /*tensor_index*/) const {}
  // Bytes of backend scratch memory forward and backward need for batches of `rows` (cuDNN's
  // workspace, the CPU's im2col columns). Asked in prepare; the memory is shared by all modules.
  virtual size_t workspace_bytes(Backend& /*be*/, int /*rows*/) const { return 0; }
  virtual void forward(Backend& be, const float* x, float* y, int rows, Workspace ws) = 0;
  // dx may be null (first module): then no input gradient is computed. Parameter gradients are overwritten.
  virtual void backward(Backend& be, const float* x, const float* dy, float* dx, int rows, Workspace ws) = 0;

 private:
  Shape in_shape_, out_shape_;
};

class Linear final : public Module {
 public:
  Linear(int in, int out) : Module({in}, {out}), in_(in), out_(out) {}
  std::string kind() const override { return "Linear"; }
  int64_t layout(int64_t offset) override;
  void bind(float* params, float* grads) override;
  void param_slices(const std::string& prefix, std::vector<ParamSlice>& out) const override;
  void initialize(std::vector<float>& params, InitScheme scheme, uint64_t seed, uint32_t& tensor_index) const override;
  void forward(Backend& be, const float* x, float* y, int rows, Workspace ws) override;
  void backward(Backend& be, const float* x, const float* dy, float* dx, int rows, Workspace ws) override;

  // This layer followed by ReLU in one backend call; returns whether relu_mask was written.
  bool forward_relu(Backend& be, const float* x, float* y, void* relu_mask, int rows);
  // dW, db (unless with_bias is false: the bias gradient was already written) and dx (when non-null).
  void backward_parts(Backend& be, const float* x, const float* dy, float* dx, bool with_bias, int rows);
  // The input gradient taken through the ReLU below (whose output a is this layer's input) into that
  // ReLU's pre-activation, dpre, with the bias gradient of `below`, the linear layer under the ReLU.
  void input_backward_through_relu(Backend& be, const float* dy, const float* a, const void* relu_mask, float* dpre,
                                   Linear& below, int rows);

 private:
  int in_, out_;
  int64_t weight_offset_ = 0, bias_offset_ = 0;
  float *w_ = nullptr, *b_ = nullptr, *dw_ = nullptr, *db_ = nullptr;
};

// An element-wise activation over any per-sample shape.
class ActivationLayer final : public Module {
 public:
  ActivationLayer(Activation act, float slope, Shape shape);
  std::string kind() const override { return "Activation"; }
  math::Act act() const { return act_; }
  void forward(Backend& be, const float* x, float* y, int rows, Workspace ws) override;
  void backward(Backend& be, const float* x, const float* dy, float* dx, int rows, Workspace ws) override;

 private:
  math::Act act_;
  float slope_;
};

// The gate of a gated layer (kernels/gate.cuh): the layer before it gives twice the outputs, the
// second half gating the first, h = a * sigmoid(g). Per sample [2w] -> [w], or [2c, H, W] -> [c, H, W]
// after a convolution (the same memory: the first c channels are a). vae_vampprior's GatedDense and
// GatedConv2d are a Linear or Conv2d of doubled width followed by this module.
class Gate final : public Module {
 public:
  explicit Gate(const Shape& in);
  std::string kind() const override { return "Gate"; }
  void forward(Backend& be, const float* x, float* y, int rows, Workspace ws) override;
  void backward(Backend& be, const float* x, const float* dy, float* dx, int rows, Workspace ws) override;
};

// The encoder head's log-variance held in a range (kernels/logvar_clamp.cuh): [W] -> [W], columns
// L..2L-1 clamped hard (vae_vampprior's Hardtanh) or softly (tanh), the rest passing through (mu, and
// a hierarchy's bottom-up heads after the top's: width W > 2L).
class LogvarClamp final : public Module {
 public:
  LogvarClamp(int latent, float lo, float hi, bool soft, int64_t width = 0);
  std::string kind() const override { return "LogvarClamp"; }
  void forward(Backend& be, const float* x, float* y, int rows, Workspace ws) override;
  void backward(Backend& be, const float* x, const float* dy, float* dx, int rows, Workspace ws) override;

 private:
  int latent_;  // the row is in_features() wide
  float lo_, hi_;
  bool soft_;
};

// A 2-D convolution over NCHW (PyTorch's Conv2d: weight [out, in, k, k], bias [out]), square kernel,
// one stride and zero padding for both axes. Input [C, H, W], output [out, (H+2p-k)/s+1, (W+2p-k)/s+1].
class Conv2d final : public Module {
 public:
  Conv2d(const Shape& in, int out_channels, int kernel, int stride, int padding);
  std::string kind() const override { return "Conv2d"; }
  int64_t layout(int64_t offset) override;
  void bind(float* params, float* grads) override;
  void param_slices(const std::string& prefix, std::vector<ParamSlice>& out) const override;
  void initialize(std::vector<float>& params, InitScheme scheme, uint64_t seed, uint32_t& tensor_index) const override;
  size_t workspace_bytes(Backend& be, int rows) const override;
  void forward(Backend& be, const float* x, float* y, int rows, Workspace ws) override;
  void backward(Backend& be, const float* x, const float* dy, float* dx, int rows, Workspace ws) override;

 private:
  ConvGeometry geometry(int rows) const;
  int in_c_, out_c_, kernel_, stride_, padding_;
  int64_t weight_offset_ = 0, bias_offset_ = 0;
  float *w_ = nullptr, *b_ = nullptr, *dw_ = nullptr, *db_ = nullptr;
};

// The transposed convolution (PyTorch's ConvTranspose2d: weight [in, out, k, k], bias [out]): the
// adjoint of a Conv2d from the output shape to the input shape, so its forward is that conv's
// backward-data pass. Input [C, H, W], output [out, (H-1)s - 2p + k + output_padding, ...], with
// output_padding below the stride.
class ConvTranspose2d final : public Module {
 public:
  ConvTranspose2d(const Shape& in, int out_channels, int kernel, int stride, int padding, int output_padding);
  std::string kind() const override { return "ConvTranspose2d"; }
  int64_t layout(int64_t offset) override;
  void bind(float* params, float* grads) override;
  void param_slices(const std::string& prefix, std::vector<ParamSlice>& out) const override;
  void initialize(std::vector<float>& params, InitScheme scheme, uint64_t seed, uint32_t& tensor_index) const override;
  size_t workspace_bytes(Backend& be, int rows) const override;
  void forward(Backend& be, const float* x, float* y, int rows, Workspace ws) override;
  void backward(Backend& be, const float* x, const float* dy, float* dx, int rows, Workspace ws) override;

 private:
  // The convolution this layer is the adjoint of: from the output [out, OH, OW] to the input [in, H, W].
  ConvGeometry adjoint_geometry(int rows) const;
  int in_c_, out_c_, kernel_, stride_, padding_;
  int64_t weight_offset_ = 0, bias_offset_ = 0;
  float *w_ = nullptr, *b_ = nullptr, *dw_ = nullptr, *db_ = nullptr;
};

// Views: the same floats under another per-sample shape.
class Flatten final : public Module {
 public:
  explicit Flatten(const Shape& in) : Module(in, {shape_numel(in)}) {}
  std::string kind() const override { return "Flatten"; }
  bool is_view() const override { return true; }
  void forward(Backend&, const float*, float*, int, Workspace) override {}
  void backward(Backend&, const float*, const float*, float*, int, Workspace) override {}
};

class Reshape final : public Module {
 public:
  Reshape(const Shape& in, const Shape& out);
  std::string kind() const override { return "Reshape"; }
  bool is_view() const override { return true; }
  void forward(Backend&, const float*, float*, int, Workspace) override {}
  void backward(Backend&, const float*, const float*, float*, int, Workspace) override {}
};

// The output size of a convolution, or of its transpose, along one axis.
inline int conv_output_size(int in, int kernel, int stride, int padding) { return (in + 2 * padding - kernel) / stride + 1; }
inline int conv_transpose_output_size(int in, int kernel, int stride, int padding, int output_padding) {
  return (in - 1) * stride - 2 * padding + kernel + output_padding;
}

// The fusion pass: fused[i] says module i runs together with module i+1. One pattern today, Linear
// then ReLU, which runs as one GEMM with a ReLU epilogue (Backend::linear_relu_forward) and whose
// backward takes the ReLU inside the next Linear's input gradient (linear_relu_input_backward). A
// new fusion (conv + bias + activation) is another pattern here, not a special case in Sequential.
std::vector<bool> fuse_linear_relu(const std::vector<std::unique_ptr<Module>>& modules);

// Modules in order, each one's input shape the previous one's output shape. Sequential owns the
// activation buffers and the shared workspace, sized in prepare(rows), so forward/backward allocate nothing.
class Sequential {
 public:
  explicit Sequential(std::string name = "network") : name_(std::move(name)) {}
  // Throws, naming this network, the module and both shapes, when m's input shape is not the
  // previous module's output shape (or when a view module would come first).
  void add(std::unique_ptr<Module> m);
  bool empty() const { return modules_.empty(); }
  size_t size() const { return modules_.size(); }
  const Module& module(size_t i) const { return *modules_.at(i); }
  const Shape& in_shape() const { return modules_.front()->in_shape(); }
  const Shape& out_shape() const { return modules_.back()->out_shape(); }
  int64_t in_features() const { return modules_.front()->in_features(); }
  int64_t out_features() const { return modules_.back()->out_features(); }
  int64_t layout(int64_t offset);
  void bind(float* params, float* grads);
  void param_slices(const std::string& prefix, std::vector<ParamSlice>& out) const;
  void initialize(std::vector<float>& params, InitScheme scheme, uint64_t seed, uint32_t& tensor_index) const;
  // Makes room for batches of up to rows rows (grows, never shrinks): activations, the ReLU
  // bit-masks the backend keeps for fused pairs, and the workspace the modules asked for.
  void prepare(int rows, Backend& be);
  int capacity() const { return capacity_; }
  // Counts the times prepare() reallocated: work recorded with the old buffers is then stale.
  uint64_t generation() const { return generation_; }
  // Returns the last module's output [rows, out_features()], valid until the next forward.
  const float* forward(Backend& be, const float* x, int rows);
  // Needs the activations of the forward pass on the same x. dx may be null.
  void backward(Backend& be, const float* x, const float* dy, float* dx, int rows);
  // The last forward's output as a tensor view [rows, out_features()].
  Tensor output_view(int rows) const;

 private:
  // Module i's output in the last forward (for a view, its input's memory).
  const float* output_of(size_t i, const float* x) const;
  // The shared workspace with its real size (every convolution call is told it).
  Workspace workspace() {
    return workspace_.defined() ? Workspace{workspace_.data(), static_cast<size_t>(workspace_.numel()) * sizeof(float)}
                                : Workspace{};
  }

  std::string name_;
  std::vector<std::unique_ptr<Module>> modules_;
  // relu_after_[i]: the fusion pass paired module i (a Linear) with module i+1 (a ReLU). The pair's
  // output lands in outputs_[i+1]; outputs_[i] (the pre-activation) is never written, and ReLU's
  // derivative is read off its output instead. masks_[i] holds the pair's bit-mask when the backend
  // keeps one, mask_written_[i] whether the last forward wrote it.
  std::vector<bool> relu_after_, mask_written_;
  std::vector<Tensor> masks_;
  std::vector<Tensor> outputs_;
  Tensor grad_a_, grad_b_, workspace_;
  int capacity_ = 0;
  uint64_t generation_ = 0;
};

// Parameter offsets are rounded up to this many floats (64 bytes) so every tensor starts aligned.
constexpr int64_t kParamAlignment = 16;
inline int64_t align_params(int64_t offset) { return (offset + kParamAlignment - 1) / kParamAlignment * kParamAlignment; }

}  // namespace vae
