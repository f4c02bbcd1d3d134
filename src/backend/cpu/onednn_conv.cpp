#include "backend/cpu/onednn_conv.hpp"

#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "vae/error.hpp"

namespace vae::cpu {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

constexpr size_t kAlign = 64;  // the blocked copies and the scratchpad start on cache lines
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::string describe(const ConvGeometry& g) {
  return std::to_string(g.n) + "x" + std::to_string(g.c) + "x" + std::to_string(g.h) + "x" + std::to_string(g.w) +
         " -> " + std::to_string(g.k) + " channels, kernel " + std::to_string(g.kh) + "x" + std::to_string(g.kw) +
         ", stride " + std::to_string(g.stride) + ", padding " + std::to_string(g.pad);
}

const char* op_name(OneDnnConv::Op op) {
  switch (op) {
    case OneDnnConv::Op::Forward:
    case OneDnnConv::Op::ForwardBias: return "conv_forward";
    case OneDnnConv::Op::BackwardData: return "conv_backward_data";
    default: return "conv_backward_filter";
  }
}

}  // namespace

struct OneDnnConv::Engine {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
};

// One operand of a primitive: the caller's plain buffer and, when the primitive wants another
// layout, its copy in the workspace with the reorder between them (before the primitive for an
// input, after it for an output).
struct Operand {
  int arg = 0;
  bool input = true;
  memory user, inner;
  dnnl::reorder reorder;
  bool reordered = false;
  size_t offset = 0;
};

struct OneDnnConv::Entry {
  dnnl::primitive primitive;
  std::vector<Operand> operands;  // in the order of the buffers run() is given
  memory scratchpad;
  size_t scratchpad_offset = 0;
  size_t bytes = 0;  // the workspace: blocked copies, then the scratchpad
  std::unordered_map<int, memory> args;
  std::string implementation;
};

OneDnnConv::OneDnnConv() : engine_(std::make_unique<Engine>()) {}
OneDnnConv::~OneDnnConv() = default;

OneDnnConv::Entry& OneDnnConv::entry(Op op, const ConvGeometry& g) {
  const Key key{op, g.n, g.c, g.h, g.w, g.k, g.kh, g.kw, g.stride, g.pad};
  if (auto it = cache_.find(key); it != cache_.end()) return *it->second;
  g.check(op_name(op));
  const dnnl::engine& eng = engine_->engine;
  const memory::dims src_dims{g.n, g.c, g.h, g.w}, weight_dims{g.k, g.c, g.kh, g.kw}, bias_dims{g.k},
      dst_dims{g.n, g.k, g.oh(), g.ow()}, strides{g.stride, g.stride}, padding{g.pad, g.pad};
  // The caller's layouts, and "any" for the primitive to choose its own.
  const memory::desc src(src_dims, dt::f32, tag::nchw), weights(weight_dims, dt::f32, tag::oihw),
      bias(bias_dims, dt::f32, tag::x), dst(dst_dims, dt::f32, tag::nchw);
  const memory::desc src_any(src_dims, dt::f32, tag::any), weights_any(weight_dims, dt::f32, tag::any),
      dst_any(dst_dims, dt::f32, tag::any);
  const bool with_bias = op == Op::ForwardBias || op == Op::BackwardWeightsBias;
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);

  auto e = std::make_unique<Entry>();
  auto add = [&](int arg, const memory::desc& user_md, const memory::desc& inner_md, bool input) {
    Operand o;
    o.arg = arg;
    o.input = input;
    o.user = memory(user_md, eng, DNNL_MEMORY_NONE);
    if (inner_md == user_md) {
      o.inner = o.user;
    } else {
      o.inner = memory(inner_md, eng, DNNL_MEMORY_NONE);
      o.reorder = input ? dnnl::reorder(o.user, o.inner) : dnnl::reorder(o.inner, o.user);
      o.reordered = true;
      o.offset = e->bytes;
      e->bytes += align_up(inner_md.get_size());
    }
    e->args[arg] = o.inner;
    e->operands.push_back(std::move(o));
  };
  memory::desc scratchpad;
  try {
    using fwd = dnnl::convolution_forward;
    // The forward primitive descriptor is also the backward passes' hint (oneDNN's protocol).
    const fwd::desc forward_desc =
        with_bias ? fwd::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src_any,
                              weights_any, bias, dst_any, strides, padding, padding)
                  : fwd::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src_any,
                              weights_any, dst_any, strides, padding, padding);
    const fwd::primitive_desc forward_pd(forward_desc, attr, eng);
    if (op == Op::Forward || op == Op::ForwardBias) {
      add(DNNL_ARG_SRC, src, forward_pd.src_desc(), true);
      add(DNNL_ARG_WEIGHTS, weights, forward_pd.weights_desc(), true);
      if (with_bias) add(DNNL_ARG_BIAS, bias, forward_pd.bias_desc(), true);
      add(DNNL_ARG_DST, dst, forward_pd.dst_desc(), false);
      e->primitive = fwd(forward_pd);
      e->implementation = forward_pd.impl_info_str();
      scratchpad = forward_pd.scratchpad_desc();
    } else if (op == Op::BackwardData) {
      using bwd = dnnl::convolution_backward_data;
      const bwd::primitive_desc pd(
          bwd::desc(dnnl::algorithm::convolution_direct, src_any, weights_any, dst_any, strides, padding, padding), attr,
          eng, forward_pd);
      add(DNNL_ARG_DIFF_DST, dst, pd.diff_dst_desc(), true);
      add(DNNL_ARG_WEIGHTS, weights, pd.weights_desc(), true);
      add(DNNL_ARG_DIFF_SRC, src, pd.diff_src_desc(), false);
      e->primitive = bwd(pd);
      e->implementation = pd.impl_info_str();
      scratchpad = pd.scratchpad_desc();
    } else {
      using bwd = dnnl::convolution_backward_weights;
      const bwd::desc desc = with_bias ? bwd::desc(dnnl::algorithm::convolution_direct, src_any, weights_any, bias,
                                                   dst_any, strides, padding, padding)
                                       : bwd::desc(dnnl::algorithm::convolution_direct, src_any, weights_any, dst_any,
                                                   strides, padding, padding);
      const bwd::primitive_desc pd(desc, attr, eng, forward_pd);
      add(DNNL_ARG_SRC, src, pd.src_desc(), true);
      add(DNNL_ARG_DIFF_DST, dst, pd.diff_dst_desc(), true);
      add(DNNL_ARG_DIFF_WEIGHTS, weights, pd.diff_weights_desc(), false);
      if (with_bias) add(DNNL_ARG_DIFF_BIAS, bias, pd.diff_bias_desc(), false);
      e->primitive = bwd(pd);
      e->implementation = pd.impl_info_str();
      scratchpad = pd.scratchpad_desc();
    }
  } catch (const dnnl::error& err) {
    throw Error(std::string("oneDNN could not make a ") + op_name(op) + " for " + describe(g) + ": " + err.what());
  }
  if (scratchpad.get_size() > 0) {
    e->scratchpad = memory(scratchpad, eng, DNNL_MEMORY_NONE);
    e->scratchpad_offset = e->bytes;
    e->bytes += align_up(scratchpad.get_size());
    e->args[DNNL_ARG_SCRATCHPAD] = e->scratchpad;
  }
  return *cache_.emplace(key, std::move(e)).first->second;
}

size_t OneDnnConv::workspace_bytes(Op op, const ConvGeometry& g) {
  // The caller's workspace may start anywhere: kAlign more lets run() start it on a cache line.
  return entry(op, g).bytes + kAlign;
}

std::string OneDnnConv::implementation(Op op, const ConvGeometry& g) { return entry(op, g).implementation; }

void OneDnnConv::run(Entry& e, const void* const* buffers, Workspace ws, const char* who) {
  if (e.bytes > 0 && (!ws.data || ws.bytes < e.bytes + kAlign))
    throw Error(std::string(who) + ": the workspace holds " + std::to_string(ws.bytes) + " bytes, and oneDNN's " +
                e.implementation + " convolution needs " + std::to_string(e.bytes + kAlign) +
                " (size it with conv_workspace_bytes for the largest batch, as Sequential::prepare does)");
  auto* base = reinterpret_cast<char*>(align_up(reinterpret_cast<uintptr_t>(ws.data)));
  for (size_t i = 0; i < e.operands.size(); ++i) {
    Operand& o = e.operands[i];
    o.user.set_data_handle(const_cast<void*>(buffers[i]));
    if (o.reordered) o.inner.set_data_handle(base + o.offset);
  }
  if (e.scratchpad) e.scratchpad.set_data_handle(base + e.scratchpad_offset);
  dnnl::stream& stream = engine_->stream;
  for (Operand& o : e.operands)
    if (o.reordered && o.input) o.reorder.execute(stream, o.user, o.inner);
  e.primitive.execute(stream, e.args);
  for (Operand& o : e.operands)
    if (o.reordered && !o.input) o.reorder.execute(stream, o.inner, o.user);
  stream.wait();
}

void OneDnnConv::forward(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
                         Workspace ws) {
  Entry& e = entry(b ? Op::ForwardBias : Op::Forward, g);
  const void* with_bias[] = {x, w, b, y};
  const void* without[] = {x, w, y};
  run(e, b ? with_bias : without, ws, "conv_forward");
}

void OneDnnConv::backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx, Workspace ws) {
  const void* buffers[] = {dy, w, dx};
  run(entry(Op::BackwardData, g), buffers, ws, "conv_backward_data");
}

void OneDnnConv::backward_weights(const ConvGeometry& g, const float* x, const float* dy, float* dw, float* db,
                                  Workspace ws) {
  Entry& e = entry(db ? Op::BackwardWeightsBias : Op::BackwardWeights, g);
  const void* with_bias[] = {x, dy, dw, db};
  const void* without[] = {x, dy, dw};
  run(e, db ? with_bias : without, ws, "conv_backward_filter");
}

}  // namespace vae::cpu
