// Layers with forward and backward, and Sequential. Layers own no parameter memory: they hold
// views (offsets) into the model's flat parameter and gradient buffers. Sequential owns the
// activation buffers, sized in prepare(rows), so forward/backward allocate nothing. Sequential runs
// each Linear followed by ReLU as one fused pair (Backend::linear_relu_forward and
// linear_relu_input_backward): one cuBLASLt GEMM each way on CUDA, the same bits as apart on the CPU.
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

class Layer {
 public:
  virtual ~Layer() = default;
  virtual int in_features() const = 0;
  virtual int out_features() const = 0;
  // Reserves this layer's parameters at offset in the flat buffer; returns the next free offset.
  virtual int64_t layout(int64_t offset) { return offset; }
  virtual void bind(float* /*params*/, float* /*grads*/) {}
  virtual void param_slices(const std::string& /*prefix*/, std::vector<ParamSlice>& /*out*/) const {}
  // Fills this layer's slice of the host parameter vector; tensor_index keys its Philox stream.
  virtual void initialize(std::vector<float>& /*params*/, InitScheme /*scheme*/, uint64_t /*seed*/,
                          uint32_t& /*tensor_index*/) const {}
  virtual void forward(Backend& be, const float* x, float* y, int rows) = 0;
  // dx may be null (first layer): then no input gradient is computed.
  virtual void backward(Backend& be, const float* x, const float* dy, float* dx, int rows) = 0;
};

class Linear final : public Layer {
 public:
  Linear(int in, int out) : in_(in), out_(out) {}
  int in_features() const override { return in_; }
  int out_features() const override { return out_; }
  int64_t layout(int64_t offset) override;
  void bind(float* params, float* grads) override;
  void param_slices(const std::string& prefix, std::vector<ParamSlice>& out) const override;
  void initialize(std::vector<float>& params, InitScheme scheme, uint64_t seed, uint32_t& tensor_index) const override;
  void forward(Backend& be, const float* x, float* y, int rows) override;
  void backward(Backend& be, const float* x, const float* dy, float* dx, int rows) override;

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

class ActivationLayer final : public Layer {
 public:
  ActivationLayer(Activation act, float slope, int width);
  math::Act act() const { return act_; }
  int in_features() const override { return width_; }
  int out_features() const override { return width_; }
  void forward(Backend& be, const float* x, float* y, int rows) override;
  void backward(Backend& be, const float* x, const float* dy, float* dx, int rows) override;

 private:
  math::Act act_;
  float slope_;
  int width_;
};

class Sequential {
 public:
  void add(std::unique_ptr<Layer> layer);
  int in_features() const { return layers_.front()->in_features(); }
  int out_features() const { return layers_.back()->out_features(); }
  int64_t layout(int64_t offset);
  void bind(float* params, float* grads);
  void param_slices(const std::string& prefix, std::vector<ParamSlice>& out) const;
  void initialize(std::vector<float>& params, InitScheme scheme, uint64_t seed, uint32_t& tensor_index) const;
  // Makes room for batches of up to rows rows (grows, never shrinks), including the ReLU bit-masks
  // that be keeps for fused Linear+ReLU pairs.
  void prepare(int rows, Backend& be);
  int capacity() const { return capacity_; }
  // Counts the times prepare() reallocated: work recorded with the old buffers is then stale.
  uint64_t generation() const { return generation_; }
  // Returns the last layer's output [rows, out_features()], valid until the next forward.
  const float* forward(Backend& be, const float* x, int rows);
  // Needs the activations of the forward pass on the same x. dx may be null.
  void backward(Backend& be, const float* x, const float* dy, float* dx, int rows);
  // The last forward's output as a tensor view [rows, out_features()].
  Tensor output_view(int rows) const { return outputs_.back().view(0, {rows, out_features()}); }

 private:
  std::vector<std::unique_ptr<Layer>> layers_;
  // relu_after_[i]: layer i is a Linear and layer i+1 a ReLU. The pair runs as one fused GEMM: its
  // output lands in outputs_[i+1] and outputs_[i] (the pre-activation) is never written; ReLU's
  // derivative is read off its output instead. masks_[i] holds the pair's bit-mask when the backend
  // keeps one, mask_written_[i] whether the last forward wrote it.
  std::vector<bool> relu_after_, mask_written_;
  std::vector<Tensor> masks_;
  std::vector<Tensor> outputs_;
  Tensor grad_a_, grad_b_;
  int capacity_ = 0;
  uint64_t generation_ = 0;
};

// Parameter offsets are rounded up to this many floats (64 bytes) so every tensor starts aligned.
constexpr int64_t kParamAlignment = 16;
inline int64_t align_params(int64_t offset) { return (offset + kParamAlignment - 1) / kParamAlignment * kParamAlignment; }

}  // namespace vae
