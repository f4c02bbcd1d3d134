#include "graph/layers.hpp"

#include <algorithm>
#include <cmath>

#include "philox.cuh"
#include "vae/error.hpp"

namespace vae {

int64_t Linear::layout(int64_t offset) {
  weight_offset_ = align_params(offset);
  bias_offset_ = align_params(weight_offset_ + static_cast<int64_t>(in_) * out_);
  return bias_offset_ + out_;
}

void Linear::bind(float* params, float* grads) {
  w_ = params + weight_offset_;
  b_ = params + bias_offset_;
  dw_ = grads + weight_offset_;
  db_ = grads + bias_offset_;
}

void Linear::param_slices(const std::string& prefix, std::vector<ParamSlice>& out) const {
  out.push_back({prefix + "weight", weight_offset_, {out_, in_}});
  out.push_back({prefix + "bias", bias_offset_, {out_}});
}

void Linear::initialize(std::vector<float>& params, InitScheme scheme, uint64_t seed, uint32_t& tensor_index) const {
  const double fan_in = in_, fan_out = out_;
  double weight_bound = 0, bias_bound = 0;
  switch (scheme) {
    case InitScheme::Torch: weight_bound = bias_bound = 1.0 / std::sqrt(fan_in); break;
    case InitScheme::Kaiming: weight_bound = std::sqrt(6.0 / fan_in); break;
    case InitScheme::Xavier: weight_bound = std::sqrt(6.0 / (fan_in + fan_out)); break;
  }
  auto fill_uniform = [&](int64_t offset, int64_t count, double bound) {
    const uint32_t index = tensor_index++;
    for (int64_t i = 0; i < count; i += 4) {
      const Philox4 r = philox_block(seed, kStreamInit, index, 0, static_cast<uint64_t>(i) >> 2);
      for (int lane = 0; lane < 4 && i + lane < count; ++lane)
        params[static_cast<size_t>(offset + i + lane)] =
            static_cast<float>(bound * (2.0 * philox_uniform(r.v[lane]) - 1.0));
    }
  };
  fill_uniform(weight_offset_, static_cast<int64_t>(in_) * out_, weight_bound);
  fill_uniform(bias_offset_, out_, bias_bound);
}

void Linear::forward(Backend& be, const float* x, float* y, int rows) {
  be.linear_forward(x, w_, b_, y, rows, in_, out_);
}

void Linear::backward(Backend& be, const float* x, const float* dy, float* dx, int rows) {
  backward_parts(be, x, dy, dx, true, rows);
}

bool Linear::forward_relu(Backend& be, const float* x, float* y, void* relu_mask, int rows) {
  return be.linear_relu_forward(x, w_, b_, y, relu_mask, rows, in_, out_);
}

void Linear::backward_parts(Backend& be, const float* x, const float* dy, float* dx, bool with_bias, int rows) {
  be.linear_backward(x, w_, dy, dx, dw_, with_bias ? db_ : nullptr, rows, in_, out_);
}

void Linear::input_backward_through_relu(Backend& be, const float* dy, const float* a, const void* relu_mask,
                                         float* dpre, Linear& below, int rows) {
  be.linear_relu_input_backward(w_, dy, a, relu_mask, dpre, below.db_, rows, in_, out_);
}

namespace {
math::Act to_math(Activation a) {
  switch (a) {
    case Activation::ReLU: return math::Act::ReLU;
    case Activation::LeakyReLU: return math::Act::LeakyReLU;
    case Activation::Tanh: return math::Act::Tanh;
    case Activation::SiLU: return math::Act::SiLU;
  }
  return math::Act::Identity;
}
}  // namespace

ActivationLayer::ActivationLayer(Activation act, float slope, int width)
    : act_(to_math(act)), slope_(slope), width_(width) {}

void ActivationLayer::forward(Backend& be, const float* x, float* y, int rows) {
  be.activation_forward(act_, slope_, x, y, static_cast<int64_t>(rows) * width_);
}

void ActivationLayer::backward(Backend& be, const float* x, const float* dy, float* dx, int rows) {
  if (dx) be.activation_backward(act_, slope_, x, dy, dx, static_cast<int64_t>(rows) * width_);
}

void Sequential::add(std::unique_ptr<Layer> layer) {
  if (!layers_.empty() && layers_.back()->out_features() != layer->in_features())
    throw Error("Sequential: layer of " + std::to_string(layer->in_features()) + " inputs after one of " +
                std::to_string(layers_.back()->out_features()) + " outputs");
  const auto* act = dynamic_cast<const ActivationLayer*>(layer.get());
  const bool relu_after_linear = act && act->act() == math::Act::ReLU && !layers_.empty() &&
                                 dynamic_cast<const Linear*>(layers_.back().get()) != nullptr;
  layers_.push_back(std::move(layer));
  relu_after_.resize(layers_.size(), false);
  if (relu_after_linear) relu_after_[layers_.size() - 2] = true;
  mask_written_.assign(layers_.size(), false);
  capacity_ = 0;
}

int64_t Sequential::layout(int64_t offset) {
  for (auto& l : layers_) offset = l->layout(offset);
  return offset;
}

void Sequential::bind(float* params, float* grads) {
  for (auto& l : layers_) l->bind(params, grads);
}

void Sequential::param_slices(const std::string& prefix, std::vector<ParamSlice>& out) const {
  for (size_t i = 0; i < layers_.size(); ++i) layers_[i]->param_slices(prefix + std::to_string(i) + ".", out);
}

void Sequential::initialize(std::vector<float>& params, InitScheme scheme, uint64_t seed, uint32_t& tensor_index) const {
  for (const auto& l : layers_) l->initialize(params, scheme, seed, tensor_index);
}

void Sequential::prepare(int rows, Backend& be) {
  if (rows <= capacity_) return;
  const Device device = be.device();
  outputs_.clear();
  masks_.assign(layers_.size(), Tensor());
  int widest = in_features();
  for (size_t i = 0; i < layers_.size(); ++i) {
    const int out = layers_[i]->out_features();
    // A fused pair's pre-activation buffer is never written: a 1-element placeholder keeps indices aligned.
    outputs_.emplace_back(relu_after_[i] ? Shape{1} : Shape{rows, out}, device);
    widest = std::max(widest, out);
    const size_t mask_bytes = relu_after_[i] ? be.relu_mask_bytes(rows, out) : 0;
    if (mask_bytes > 0) masks_[i] = Tensor(Shape{static_cast<int64_t>((mask_bytes + 3) / 4)}, device);
  }
  grad_a_ = Tensor(Shape{rows, widest}, device);
  grad_b_ = Tensor(Shape{rows, widest}, device);
  capacity_ = rows;
  ++generation_;
}

const float* Sequential::forward(Backend& be, const float* x, int rows) {
  if (rows > capacity_) throw Error("Sequential::forward: batch of " + std::to_string(rows) + " exceeds prepared " +
                                    std::to_string(capacity_));
  const float* in = x;
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (relu_after_[i]) {
      float* y = outputs_[i + 1].data();
      mask_written_[i] = static_cast<Linear&>(*layers_[i]).forward_relu(
          be, in, y, masks_[i].defined() ? masks_[i].data() : nullptr, rows);
      in = y;
      ++i;  // the ReLU ran inside the pair
      continue;
    }
    layers_[i]->forward(be, in, outputs_[i].data(), rows);
    in = outputs_[i].data();
  }
  return in;
}

void Sequential::backward(Backend& be, const float* x, const float* dy, float* dx, int rows) {
  // Gradients ping-pong between two buffers; the first layer writes straight into dx.
  // pre_done: upstream is already the gradient of a fused pair's pre-activation, taken through its
  // ReLU by the linear layer above, which also wrote the pair's bias gradient.
  float* buffers[2] = {grad_a_.data(), grad_b_.data()};
  const float* upstream = dy;
  bool pre_done = false;
  auto spare = [&] { return upstream == buffers[0] ? buffers[1] : buffers[0]; };
  for (size_t i = layers_.size(); i-- > 0;) {
    const float* in = i == 0 ? x : outputs_[i - 1].data();
    float* out = i == 0 ? dx : spare();
    if (i >= 1 && relu_after_[i - 1]) {
      // The ReLU of a fused pair: unless done above, take the gradient through it using its output.
      if (!pre_done) {
        const float* a = outputs_[i].data();
        be.activation_backward(math::Act::ReLU, 0.0f, a, upstream, out,
                               static_cast<int64_t>(rows) * layers_[i]->out_features());
        upstream = out;
      }
      continue;  // pre_done carries to the pair's linear layer: its bias gradient may be written already
    }
    auto* linear = dynamic_cast<Linear*>(layers_[i].get());
    if (linear && i >= 2 && relu_after_[i - 2]) {
      // Weights here, then the input gradient straight through the ReLU below into its pair's
      // pre-activation, with that pair's bias gradient, in one GEMM on CUDA (DRELU_BGRAD).
      linear->backward_parts(be, in, upstream, nullptr, !pre_done, rows);
      float* dpre = spare();
      linear->input_backward_through_relu(be, upstream, outputs_[i - 1].data(),
                                          mask_written_[i - 2] ? masks_[i - 2].data() : nullptr, dpre,
                                          static_cast<Linear&>(*layers_[i - 2]), rows);
      upstream = dpre;
      pre_done = true;
      continue;
    }
    if (linear) linear->backward_parts(be, in, upstream, out, !pre_done, rows);
    else layers_[i]->backward(be, in, upstream, out, rows);
    pre_done = false;
    upstream = out;
  }
}

}  // namespace vae
