#include "graph/layers.hpp"

#include <algorithm>
#include <cmath>

#include "activation.cuh"
#include "channel_bias.cuh"
#include "gate.cuh"
#include "logvar_clamp.cuh"
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

namespace {
// params[offset, offset + count) ~ U(-bound, bound) from Philox stream (tensor_index, 0, i/4), one
// stream per tensor in initialisation order.
void fill_uniform(std::vector<float>& params, int64_t offset, int64_t count, double bound, uint64_t seed,
                  uint32_t& tensor_index) {
  const uint32_t index = tensor_index++;
  for (int64_t i = 0; i < count; i += 4) {
    const Philox4 r = philox_block(seed, kStreamInit, index, 0, static_cast<uint64_t>(i) >> 2);
    for (int lane = 0; lane < 4 && i + lane < count; ++lane)
      params[static_cast<size_t>(offset + i + lane)] = static_cast<float>(bound * (2.0 * philox_uniform(r.v[lane]) - 1.0));
  }
}

// Weight and bias bounds of a layer with these fans (PyTorch's defaults for Torch).
std::pair<double, double> init_bounds(InitScheme scheme, double fan_in, double fan_out) {
  switch (scheme) {
    case InitScheme::Torch: return {1.0 / std::sqrt(fan_in), 1.0 / std::sqrt(fan_in)};
    case InitScheme::Kaiming: return {std::sqrt(6.0 / fan_in), 0.0};
    case InitScheme::Xavier: return {std::sqrt(6.0 / (fan_in + fan_out)), 0.0};
  }
  return {0.0, 0.0};
}
}  // namespace

void Linear::initialize(std::vector<float>& params, InitScheme scheme, uint64_t seed, uint32_t& tensor_index) const {
  const auto [weight_bound, bias_bound] = init_bounds(scheme, in_, out_);
  fill_uniform(params, weight_offset_, static_cast<int64_t>(in_) * out_, weight_bound, seed, tensor_index);
  fill_uniform(params, bias_offset_, out_, bias_bound, seed, tensor_index);
}

void Linear::forward(Backend& be, const float* x, float* y, int rows, Workspace /*ws*/) {
  be.linear_forward(x, w_, b_, y, rows, in_, out_);
}

void Linear::backward(Backend& be, const float* x, const float* dy, float* dx, int rows, Workspace /*ws*/) {
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
    case Activation::Gated:
      throw Error("the gated activation is a layer of doubled width and a Gate, not an element-wise activation "
                  "(build_networks builds it; a bug in vae if this is reached)");
  }
  return math::Act::Identity;
}
}  // namespace

ActivationLayer::ActivationLayer(Activation act, float slope, Shape shape)
    : Module(shape, shape), act_(to_math(act)), slope_(slope) {}

void ActivationLayer::forward(Backend& be, const float* x, float* y, int rows, Workspace /*ws*/) {
  ops::activation_forward(be, act_, slope_, x, y, rows * in_features());
}

void ActivationLayer::backward(Backend& be, const float* x, const float* dy, float* dx, int rows, Workspace /*ws*/) {
  if (dx) ops::activation_backward(be, act_, slope_, x, dy, dx, rows * in_features());
}

namespace {
Shape halved(const Shape& in) {
  if (in.empty() || in[0] < 2 || in[0] % 2 != 0)
    throw Error("Gate: the input's first dimension holds the values and their gates, so it must be even; got " +
                to_string(in));
  Shape out = in;
  out[0] /= 2;
  return out;
}
}  // namespace

Gate::Gate(const Shape& in) : Module(in, halved(in)) {}

void Gate::forward(Backend& be, const float* x, float* y, int rows, Workspace /*ws*/) {
  ops::gate_forward(be, x, y, rows, out_features());
}

void Gate::backward(Backend& be, const float* x, const float* dy, float* dx, int rows, Workspace /*ws*/) {
  if (dx) ops::gate_backward(be, x, dy, dx, rows, out_features());
}

LogvarClamp::LogvarClamp(int latent, float lo, float hi, bool soft, int64_t width)
    : Module({width ? width : 2 * int64_t(latent)}, {width ? width : 2 * int64_t(latent)}),
      latent_(latent),
      lo_(lo),
      hi_(hi),
      soft_(soft) {
  if (in_features() < 2 * int64_t(latent))
    throw Error("LogvarClamp: a row of " + std::to_string(in_features()) + " is narrower than the head of " +
                std::to_string(2 * latent));
  if (!(lo < hi)) throw Error("LogvarClamp: the log-variance range needs lo < hi, got [" + std::to_string(lo) + ", " +
                              std::to_string(hi) + "]");
}

void LogvarClamp::forward(Backend& be, const float* x, float* y, int rows, Workspace /*ws*/) {
  ops::logvar_clamp_forward(be, x, y, rows, latent_, ops::LogvarBounds<float>{lo_, hi_, soft_}, in_features());
}

void LogvarClamp::backward(Backend& be, const float* x, const float* dy, float* dx, int rows, Workspace /*ws*/) {
  if (dx) ops::logvar_clamp_backward(be, x, dy, dx, rows, latent_, ops::LogvarBounds<float>{lo_, hi_, soft_}, in_features());
}

namespace {
Shape chw(const Shape& in, const char* who) {
  if (in.size() != 3 || in[0] < 1 || in[1] < 1 || in[2] < 1)
    throw Error(std::string(who) + ": expects a per-sample input of shape [channels, height, width], got " + to_string(in));
  return in;
}
void check_conv_args(const char* who, int out_channels, int kernel, int stride, int padding) {
  if (out_channels < 1 || kernel < 1 || stride < 1 || padding < 0)
    throw Error(std::string(who) + ": channels, kernel and stride must be >= 1 and padding >= 0, got " +
                std::to_string(out_channels) + " channels, kernel " + std::to_string(kernel) + ", stride " +
                std::to_string(stride) + ", padding " + std::to_string(padding));
}
Shape conv_out_shape(const Shape& in, int out_channels, int kernel, int stride, int padding) {
  check_conv_args("Conv2d", out_channels, kernel, stride, padding);
  const Shape s = chw(in, "Conv2d");
  if (s[1] + 2 * padding < kernel || s[2] + 2 * padding < kernel)
    throw Error("Conv2d: a " + std::to_string(kernel) + "x" + std::to_string(kernel) + " kernel does not fit the input " +
                to_string(in) + " with padding " + std::to_string(padding));
  return {out_channels, conv_output_size(static_cast<int>(s[1]), kernel, stride, padding),
          conv_output_size(static_cast<int>(s[2]), kernel, stride, padding)};
}
Shape conv_transpose_out_shape(const Shape& in, int out_channels, int kernel, int stride, int padding, int output_padding) {
  check_conv_args("ConvTranspose2d", out_channels, kernel, stride, padding);
  const Shape s = chw(in, "ConvTranspose2d");
  if (output_padding < 0 || output_padding >= stride)
    throw Error("ConvTranspose2d: output_padding must be in [0, stride), got " + std::to_string(output_padding));
  const int oh = conv_transpose_output_size(static_cast<int>(s[1]), kernel, stride, padding, output_padding);
  const int ow = conv_transpose_output_size(static_cast<int>(s[2]), kernel, stride, padding, output_padding);
  if (oh < 1 || ow < 1)
    throw Error("ConvTranspose2d: input " + to_string(in) + " with kernel " + std::to_string(kernel) + ", stride " +
                std::to_string(stride) + " and padding " + std::to_string(padding) + " gives no output");
  return {out_channels, oh, ow};
}
}  // namespace

Conv2d::Conv2d(const Shape& in, int out_channels, int kernel, int stride, int padding)
    : Module(in, conv_out_shape(in, out_channels, kernel, stride, padding)),
      in_c_(static_cast<int>(in[0])), out_c_(out_channels), kernel_(kernel), stride_(stride), padding_(padding) {}

ConvGeometry Conv2d::geometry(int rows) const {
  return {rows, in_c_, static_cast<int>(in_shape()[1]), static_cast<int>(in_shape()[2]), out_c_, kernel_, kernel_,
          stride_, padding_};
}

int64_t Conv2d::layout(int64_t offset) {
  weight_offset_ = align_params(offset);
  bias_offset_ = align_params(weight_offset_ + static_cast<int64_t>(out_c_) * in_c_ * kernel_ * kernel_);
  return bias_offset_ + out_c_;
}

void Conv2d::bind(float* params, float* grads) {
  w_ = params + weight_offset_;
  b_ = params + bias_offset_;
  dw_ = grads + weight_offset_;
  db_ = grads + bias_offset_;
}

void Conv2d::param_slices(const std::string& prefix, std::vector<ParamSlice>& out) const {
  out.push_back({prefix + "weight", weight_offset_, {out_c_, in_c_, kernel_, kernel_}});
  out.push_back({prefix + "bias", bias_offset_, {out_c_}});
}

void Conv2d::initialize(std::vector<float>& params, InitScheme scheme, uint64_t seed, uint32_t& tensor_index) const {
  // PyTorch's fans for a conv weight [out, in, k, k]: in*k*k and out*k*k.
  const double area = static_cast<double>(kernel_) * kernel_;
  const auto [weight_bound, bias_bound] = init_bounds(scheme, in_c_ * area, out_c_ * area);
  fill_uniform(params, weight_offset_, static_cast<int64_t>(out_c_) * in_c_ * kernel_ * kernel_, weight_bound, seed,
               tensor_index);
  fill_uniform(params, bias_offset_, out_c_, bias_bound, seed, tensor_index);
}

size_t Conv2d::workspace_bytes(Backend& be, int rows) const { return be.conv_workspace_bytes(geometry(rows)); }

void Conv2d::forward(Backend& be, const float* x, float* y, int rows, Workspace ws) {
  be.conv_forward(geometry(rows), x, w_, b_, y, ws);
}

void Conv2d::backward(Backend& be, const float* x, const float* dy, float* dx, int rows, Workspace ws) {
  const ConvGeometry g = geometry(rows);
  be.conv_backward_filter(g, x, dy, dw_, db_, ws);
  if (dx) be.conv_backward_data(g, dy, w_, dx, ws);
}

ConvTranspose2d::ConvTranspose2d(const Shape& in, int out_channels, int kernel, int stride, int padding,
                                 int output_padding)
    : Module(in, conv_transpose_out_shape(in, out_channels, kernel, stride, padding, output_padding)),
      in_c_(static_cast<int>(in[0])), out_c_(out_channels), kernel_(kernel), stride_(stride), padding_(padding) {}

ConvGeometry ConvTranspose2d::adjoint_geometry(int rows) const {
  return {rows, out_c_, static_cast<int>(out_shape()[1]), static_cast<int>(out_shape()[2]), in_c_, kernel_, kernel_,
          stride_, padding_};
}

int64_t ConvTranspose2d::layout(int64_t offset) {
  weight_offset_ = align_params(offset);
  bias_offset_ = align_params(weight_offset_ + static_cast<int64_t>(in_c_) * out_c_ * kernel_ * kernel_);
  return bias_offset_ + out_c_;
}

void ConvTranspose2d::bind(float* params, float* grads) {
  w_ = params + weight_offset_;
  b_ = params + bias_offset_;
  dw_ = grads + weight_offset_;
  db_ = grads + bias_offset_;
}

void ConvTranspose2d::param_slices(const std::string& prefix, std::vector<ParamSlice>& out) const {
  out.push_back({prefix + "weight", weight_offset_, {in_c_, out_c_, kernel_, kernel_}});
  out.push_back({prefix + "bias", bias_offset_, {out_c_}});
}

void ConvTranspose2d::initialize(std::vector<float>& params, InitScheme scheme, uint64_t seed,
                                 uint32_t& tensor_index) const {
  // PyTorch takes a transposed conv's fans from its weight [in, out, k, k] as for any conv weight:
  // fan_in = out*k*k (dimension 1), fan_out = in*k*k.
  const double area = static_cast<double>(kernel_) * kernel_;
  const auto [weight_bound, bias_bound] = init_bounds(scheme, out_c_ * area, in_c_ * area);
  fill_uniform(params, weight_offset_, static_cast<int64_t>(in_c_) * out_c_ * kernel_ * kernel_, weight_bound, seed,
               tensor_index);
  fill_uniform(params, bias_offset_, out_c_, bias_bound, seed, tensor_index);
}

size_t ConvTranspose2d::workspace_bytes(Backend& be, int rows) const {
  return be.conv_workspace_bytes(adjoint_geometry(rows));
}

void ConvTranspose2d::forward(Backend& be, const float* x, float* y, int rows, Workspace ws) {
  const ConvGeometry g = adjoint_geometry(rows);
  be.conv_backward_data(g, x, w_, y, ws);
  ops::channel_bias_add(be, b_, y, rows, out_c_, g.h * g.w);
}

void ConvTranspose2d::backward(Backend& be, const float* x, const float* dy, float* dx, int rows, Workspace ws) {
  const ConvGeometry g = adjoint_geometry(rows);
  // The adjoint conv reads dy (shaped like its input) and x (shaped like its output).
  be.conv_backward_filter(g, dy, x, dw_, nullptr, ws);
  ops::channel_bias_grad(be, dy, db_, rows, out_c_, g.h * g.w);
  if (dx) be.conv_forward(g, dy, w_, nullptr, dx, ws);
}

Reshape::Reshape(const Shape& in, const Shape& out) : Module(in, out) {
  if (shape_numel(in) != shape_numel(out))
    throw Error("Reshape: cannot view " + to_string(in) + " (" + std::to_string(shape_numel(in)) + " values) as " +
                to_string(out) + " (" + std::to_string(shape_numel(out)) + " values)");
}

std::vector<bool> fuse_linear_relu(const std::vector<std::unique_ptr<Module>>& modules) {
  std::vector<bool> fused(modules.size(), false);
  for (size_t i = 0; i + 1 < modules.size(); ++i) {
    const auto* act = dynamic_cast<const ActivationLayer*>(modules[i + 1].get());
    if (act && act->act() == math::Act::ReLU && dynamic_cast<const Linear*>(modules[i].get()))
      fused[i] = true;
  }
  return fused;
}

void Sequential::add(std::unique_ptr<Module> m) {
  const size_t index = modules_.size();
  if (index == 0 && m->is_view())
    throw Error(name_ + ": a " + m->kind() + " cannot be the first module (it has no memory of its own to give)");
  if (index > 0 && modules_.back()->out_shape() != m->in_shape())
    throw Error(name_ + ": module " + std::to_string(index) + " (" + m->kind() + ") takes per-sample input " +
                to_string(m->in_shape()) + " but module " + std::to_string(index - 1) + " (" + modules_.back()->kind() +
                ") gives " + to_string(modules_.back()->out_shape()) +
                (m->in_shape().size() != modules_.back()->out_shape().size() ? "; put a Flatten or Reshape between them"
                                                                           : ""));
  modules_.push_back(std::move(m));
  relu_after_ = fuse_linear_relu(modules_);
  mask_written_.assign(modules_.size(), false);
  capacity_ = 0;
}

int64_t Sequential::layout(int64_t offset) {
  for (auto& m : modules_) offset = m->layout(offset);
  return offset;
}

void Sequential::bind(float* params, float* grads) {
  for (auto& m : modules_) m->bind(params, grads);
}

void Sequential::param_slices(const std::string& prefix, std::vector<ParamSlice>& out) const {
  for (size_t i = 0; i < modules_.size(); ++i) modules_[i]->param_slices(prefix + std::to_string(i) + ".", out);
}

void Sequential::initialize(std::vector<float>& params, InitScheme scheme, uint64_t seed, uint32_t& tensor_index) const {
  for (const auto& m : modules_) m->initialize(params, scheme, seed, tensor_index);
}

void Sequential::prepare(int rows, Backend& be) {
  if (rows <= capacity_) return;
  const Device device = be.device();
  outputs_.clear();
  masks_.assign(modules_.size(), Tensor());
  int64_t widest = in_features();
  size_t workspace = 0;
  for (size_t i = 0; i < modules_.size(); ++i) {
    const int64_t out = modules_[i]->out_features();
    // A fused pair's pre-activation buffer and a view's output are never written: a 1-element
    // placeholder keeps indices aligned.
    const bool unwritten = relu_after_[i] || modules_[i]->is_view();
    outputs_.emplace_back(unwritten ? Shape{1} : Shape{rows, out}, device);
    widest = std::max(widest, out);
    const size_t mask_bytes = relu_after_[i] ? be.relu_mask_bytes(rows, static_cast<int>(out)) : 0;
    if (mask_bytes > 0) masks_[i] = Tensor(Shape{static_cast<int64_t>((mask_bytes + 3) / 4)}, device);
    workspace = std::max(workspace, modules_[i]->workspace_bytes(be, rows));
  }
  grad_a_ = Tensor(Shape{rows, widest}, device);
  grad_b_ = Tensor(Shape{rows, widest}, device);
  workspace_ = workspace > 0 ? Tensor(Shape{static_cast<int64_t>((workspace + 3) / 4)}, device) : Tensor();
  capacity_ = rows;
  ++generation_;
}

const float* Sequential::output_of(size_t i, const float* x) const {
  for (;; --i) {
    if (!modules_[i]->is_view()) return outputs_[i].data();
    if (i == 0) return x;
  }
}

Tensor Sequential::output_view(int rows) const {
  size_t i = modules_.size() - 1;
  while (modules_[i]->is_view()) --i;  // the first module is never a view
  return outputs_[i].view(0, {rows, out_features()});
}

const float* Sequential::forward(Backend& be, const float* x, int rows) {
  if (rows > capacity_) throw Error(name_ + ": batch of " + std::to_string(rows) + " exceeds prepared " +
                                    std::to_string(capacity_));
  const Workspace ws = workspace();
  const float* in = x;
  for (size_t i = 0; i < modules_.size(); ++i) {
    if (modules_[i]->is_view()) continue;  // the next module reads the same memory
    if (relu_after_[i]) {
      float* y = outputs_[i + 1].data();
      mask_written_[i] = static_cast<Linear&>(*modules_[i]).forward_relu(
          be, in, y, masks_[i].defined() ? masks_[i].data() : nullptr, rows);
      in = y;
      ++i;  // the ReLU ran inside the pair
      continue;
    }
    modules_[i]->forward(be, in, outputs_[i].data(), rows, ws);
    in = outputs_[i].data();
  }
  return in;
}

void Sequential::backward(Backend& be, const float* x, const float* dy, float* dx, int rows) {
  // Gradients ping-pong between two buffers; the first module writes straight into dx.
  // pre_done: upstream is already the gradient of a fused pair's pre-activation, taken through its
  // ReLU by the linear layer above, which also wrote the pair's bias gradient.
  const Workspace ws = workspace();
  float* buffers[2] = {grad_a_.data(), grad_b_.data()};
  const float* upstream = dy;
  bool pre_done = false;
  auto spare = [&] { return upstream == buffers[0] ? buffers[1] : buffers[0]; };
  for (size_t i = modules_.size(); i-- > 0;) {
    if (modules_[i]->is_view()) continue;  // the gradient has the same memory layout on both sides
    const float* in = i == 0 ? x : output_of(i - 1, x);
    float* out = i == 0 ? dx : spare();
    if (i >= 1 && relu_after_[i - 1]) {
      // The ReLU of a fused pair: unless done above, take the gradient through it using its output.
      if (!pre_done) {
        const float* a = outputs_[i].data();
        ops::activation_backward(be, math::Act::ReLU, 0.0f, a, upstream, out, rows * modules_[i]->out_features());
        upstream = out;
      }
      continue;  // pre_done carries to the pair's linear layer: its bias gradient may be written already
    }
    auto* linear = dynamic_cast<Linear*>(modules_[i].get());
    if (linear && i >= 2 && relu_after_[i - 2]) {
      // Weights here, then the input gradient straight through the ReLU below into its pair's
      // pre-activation, with that pair's bias gradient, in one GEMM on CUDA (DRELU_BGRAD).
      linear->backward_parts(be, in, upstream, nullptr, !pre_done, rows);
      float* dpre = spare();
      linear->input_backward_through_relu(be, upstream, outputs_[i - 1].data(),
                                          mask_written_[i - 2] ? masks_[i - 2].data() : nullptr, dpre,
                                          static_cast<Linear&>(*modules_[i - 2]), rows);
      upstream = dpre;
      pre_done = true;
      continue;
    }
    if (linear) linear->backward_parts(be, in, upstream, out, !pre_done, rows);
    else modules_[i]->backward(be, in, upstream, out, rows, ws);
    pre_done = false;
    upstream = out;
  }
}

}  // namespace vae
