#include "backend/cpu/onednn_matmul.hpp"

#include <oneapi/dnnl/dnnl.hpp>

#include <string>
#include <unordered_map>

#include "vae/error.hpp"

namespace vae::cpu {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

struct OneDnnMatmul::Engine {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
};

struct OneDnnMatmul::Entry {
  dnnl::matmul primitive;
  memory src, weights, bias, dst;
  std::unordered_map<int, memory> args;
};

OneDnnMatmul::OneDnnMatmul() : engine_(std::make_unique<Engine>()) {}
OneDnnMatmul::~OneDnnMatmul() = default;

OneDnnMatmul::Entry& OneDnnMatmul::entry(Kind kind, int rows, int in, int out) {
  const Key key{kind, rows, in, out};
  if (auto it = cache_.find(key); it != cache_.end()) return *it->second;
  const dnnl::engine& eng = engine_->engine;
  const memory::dim M = rows, K = in, N = out;
  // Row-major descriptors; a transposed operand is the same buffer read through swapped strides.
  memory::desc src, weights, dst, bias;
  switch (kind) {
    case Kind::InputGrad:  // dx[M,K] = dy[M,N] W[N,K]
      src = memory::desc({M, N}, dt::f32, tag::ab);
      weights = memory::desc({N, K}, dt::f32, tag::ab);
      dst = memory::desc({M, K}, dt::f32, tag::ab);
      break;
    case Kind::WeightGrad:  // dw[N,K] = dy^T[N,M] x[M,K]
      src = memory::desc({N, M}, dt::f32, memory::dims{1, N});
      weights = memory::desc({M, K}, dt::f32, tag::ab);
      dst = memory::desc({N, K}, dt::f32, tag::ab);
      break;
    default:  // y[M,N] = x[M,K] W^T[K,N] + b[1,N]
      src = memory::desc({M, K}, dt::f32, tag::ab);
      weights = memory::desc({K, N}, dt::f32, tag::ba);
      dst = memory::desc({M, N}, dt::f32, tag::ab);
      if (kind == Kind::ForwardBias || kind == Kind::ForwardBiasRelu) bias = memory::desc({1, N}, dt::f32, tag::ab);
      break;
  }
  dnnl::primitive_attr attr;
  if (kind == Kind::ForwardRelu || kind == Kind::ForwardBiasRelu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    attr.set_post_ops(ops);
  }
  auto e = std::make_unique<Entry>();
  try {
    const dnnl::matmul::primitive_desc pd = bias.is_zero() ? dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, dst), attr, eng)
                                                           : dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, bias, dst), attr, eng);
    e->primitive = dnnl::matmul(pd);
  } catch (const dnnl::error& err) {
    throw Error("oneDNN could not make a matmul of " + std::to_string(rows) + "x" + std::to_string(in) + "x" +
                std::to_string(out) + ": " + err.what());
  }
  e->src = memory(src, eng, DNNL_MEMORY_NONE);
  e->weights = memory(weights, eng, DNNL_MEMORY_NONE);
  e->dst = memory(dst, eng, DNNL_MEMORY_NONE);
  e->args = {{DNNL_ARG_SRC, e->src}, {DNNL_ARG_WEIGHTS, e->weights}, {DNNL_ARG_DST, e->dst}};
  if (!bias.is_zero()) {
    e->bias = memory(bias, eng, DNNL_MEMORY_NONE);
    e->args.emplace(DNNL_ARG_BIAS, e->bias);
  }
  return *cache_.emplace(key, std::move(e)).first->second;
}

namespace {

void run(dnnl::stream& stream, dnnl::matmul& p, std::unordered_map<int, memory>& args) {
  p.execute(stream, args);
  stream.wait();
}

}  // namespace

void OneDnnMatmul::forward(const float* x, const float* w, const float* b, float* y, int rows, int in, int out, bool relu) {
  const Kind kind = b ? (relu ? Kind::ForwardBiasRelu : Kind::ForwardBias) : (relu ? Kind::ForwardRelu : Kind::Forward);
  Entry& e = entry(kind, rows, in, out);
  e.src.set_data_handle(const_cast<float*>(x));
  e.weights.set_data_handle(const_cast<float*>(w));
  if (b) e.bias.set_data_handle(const_cast<float*>(b));
  e.dst.set_data_handle(y);
  run(engine_->stream, e.primitive, e.args);
}

void OneDnnMatmul::input_grad(const float* dy, const float* w, float* dx, int rows, int in, int out) {
  Entry& e = entry(Kind::InputGrad, rows, in, out);
  e.src.set_data_handle(const_cast<float*>(dy));
  e.weights.set_data_handle(const_cast<float*>(w));
  e.dst.set_data_handle(dx);
  run(engine_->stream, e.primitive, e.args);
}

void OneDnnMatmul::weight_grad(const float* dy, const float* x, float* dw, int rows, int in, int out) {
  Entry& e = entry(Kind::WeightGrad, rows, in, out);
  e.src.set_data_handle(const_cast<float*>(dy));
  e.weights.set_data_handle(const_cast<float*>(x));
  e.dst.set_data_handle(dw);
  run(engine_->stream, e.primitive, e.args);
}

}  // namespace vae::cpu
