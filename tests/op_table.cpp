// The rows of the op table (op_table.hpp): every operation, its shapes per mode, input ranges,
// bounds, bytes and FLOPs. Parity bounds for FP32 sums grow like sqrt(terms) * eps * |terms|.
#include <cmath>
#include <limits>

#include "activation.cuh"
#include "bernoulli_nll.cuh"
#include "channel_bias.cuh"
#include "condition.cuh"
#include "elbo_objective.cuh"
#include "elementwise.cuh"
#include "flow.cuh"
#include "gather_pixels.cuh"
#include "gaussian_kl.cuh"
#include "gaussian_nll.cuh"
#include "gaussian_posterior.cuh"
#include "importance_sample.cuh"
#include "iwae_objective.cuh"
#include "latent_sample_kl.cuh"
#include "discretized_logistic_nll.cuh"
#include "dmol_nll.cuh"
#include "columns.cuh"
#include "gate.cuh"
#include "pixel_sample.cuh"
#include "gaussian_pair_kl.cuh"
#include "label_gaussian_prior.cuh"
#include "logistic_nll.cuh"
#include "logvar_clamp.cuh"
#include "mog_prior.cuh"
#include "op_table.hpp"
#include "philox.cuh"
#include "rows.cuh"
#include "softmax_xent.cuh"
#include "standard_normal_prior.cuh"
#include "test_util.hpp"

namespace vae::optable {
namespace {

template <class V>
const V& pick(Mode m, const V& gradient, const V& parity, const V& bench) {
  return m == Mode::Gradient ? gradient : m == Mode::Parity ? parity : bench;
}

std::string dims(std::initializer_list<std::pair<const char*, int64_t>> d) {
  std::string s;
  for (const auto& [k, v] : d) s += (s.empty() ? "" : " ") + std::string(k) + "=" + std::to_string(v);
  return s;
}

template <class T>
using scalar_of = std::remove_cv_t<std::remove_pointer_t<decltype(std::declval<T&>().out(0))>>;

// The bound of a sum of `terms` products in TF32, training's default precision on CUDA. TF32 keeps
// 10 of FP32's 23 mantissa bits: each operand is within 2^-10 of itself (relative; rounded or
// truncated), so each product of two is within 2^-9. Over a reduction those errors take random
// signs, so the sum's error is about 2^-9 sqrt(terms) times the products' size; atol allows 1.5
// times that (some 8 standard deviations for uniform operands), rtol 2^-9 of the result for
// products that share a sign. The accumulation itself is FP32, as is the bias an epilogue adds.
Bound tf32_bound(double terms, double product_size) {
  const double u = std::ldexp(1.0, -9);
  return {1.5 * u * std::sqrt(terms) * product_size, u};
}

// ---------------------------------------------------------------- linear layers (cuBLASLt / BLAS)

void add_linear(std::vector<Case>& out, Mode mode) {
  struct S { int rows, in, out; };
  const std::vector<S> grad{{1, 1, 1}, {3, 5, 7}, {4, 13, 2}};
  const std::vector<S> parity{{1, 1, 1}, {7, 5, 3}, {128, 784, 512}, {257, 33, 65}, {3, 1031, 17}};
  const std::vector<S> bench{{128, 784, 512}, {4096, 784, 512}};
  for (const S s : pick(mode, grad, parity, bench))
    for (bool tf32 : {false, true})
      for (bool fused : {true, false}) {
        if (mode == Mode::Gradient && !fused) continue;  // one CPU numerics
        if (tf32 && mode != Mode::Parity) continue;      // precision is CUDA's business
        Case c;
        c.op = "linear";
        c.shape = dims({{"rows", s.rows}, {"in", s.in}, {"out", s.out}}) + (fused ? " fused" : " unfused") +
                  (tf32 ? " tf32" : "");
        c.options = {tf32, fused};
        const double tf = 2e-6 * std::sqrt(double(s.in)), tb = 2e-6 * std::sqrt(double(std::max(s.rows, s.out))),
                     tr = 2e-6 * std::sqrt(double(s.rows));
        c.inputs = {{"x", int64_t(s.rows) * s.in, Draw::Uniform, -1, 1, true},
                    {"w", int64_t(s.out) * s.in, Draw::Uniform, -1, 1, true},
                    {"b", s.out, Draw::Uniform, -1, 1, true}};
        c.outputs = {{"y", int64_t(s.rows) * s.out, {tf, 1e-5}}};
        c.grads = {{0, {tb, 1e-5}}, {1, {tr, 1e-5}}, {2, {tr, 1e-5}}};
        if (tf32) {
          // x and W exact quarters, b odd 32nds: every product and partial sum of the forward is exact
          // in TF32 and FP32 whatever the order, so y must match exactly (test::quarters). The
          // backward reads the random upstream dy (|dy| <= 1), which TF32 rounds: its bounds follow
          // the reduction lengths (out for dx, rows for dW and db) and |W|, |x| <= 1/2.
          c.inputs[0].draw = c.inputs[1].draw = Draw::Quarters;
          c.inputs[2].draw = Draw::Odd32nds;
          c.outputs[0].parity = {0, 0};
          c.grads = {{0, tf32_bound(s.out, 0.5)}, {1, tf32_bound(s.rows, 0.5)}, {2, tf32_bound(s.rows, 1.0)}};
        }
        c.bytes = 4.0 * (2.0 * s.rows * s.in + 2.0 * s.in * s.out + 2.0 * s.rows * s.out + 2 * s.out) +
                  4.0 * s.rows * s.out;
        c.flops = 6.0 * s.rows * s.in * s.out;
        const int rows = s.rows, in = s.in, o = s.out;
        set_body(c, [=](auto& be, auto& io) {
          be.linear_forward(io.in(0), io.in(1), io.in(2), io.out(0), rows, in, o);
          if (io.backward())
            be.linear_backward(io.in(0), io.in(1), io.up(0), io.grad(0), io.grad(1), io.grad(2), rows, in, o);
        });
        out.push_back(std::move(c));
      }
}

// The fused pair Linear -> ReLU -> Linear as Sequential runs it: linear_relu_forward, the upper
// layer's forward, then linear_relu_input_backward (the upper layer's input gradient through the ReLU,
// with the lower layer's bias gradient) and the lower layer's weight and input gradients. On CUDA:
// RELU_AUX_BIAS + DRELU_BGRAD (mask), RELU_BIAS with our relu_grad_bias_grad (no mask), and unfused;
// hidden widths 1, 3, 129 and 200 put the mask's 128-bit column padding to work. Inputs are exact
// quarters with odd-32nd biases (test::quarters): the same ReLU pattern on both backends.
void add_linear_relu(std::vector<Case>& out, Mode mode) {
  struct S { int rows, in, hidden, out; };
  const std::vector<S> grad{{1, 1, 1, 1}, {3, 5, 7, 2}, {4, 9, 6, 5}};
  const std::vector<S> parity{{1, 1, 1, 1}, {7, 5, 3, 2}, {128, 784, 512, 256}, {257, 33, 129, 65}, {3, 1031, 200, 17}};
  const std::vector<S> bench{{128, 784, 512, 256}, {4096, 784, 512, 256}};
  enum Variant { Mask, NoMask, Unfused };
  for (const S s : pick(mode, grad, parity, bench))
    for (bool tf32 : {false, true})
    for (Variant v : {Mask, NoMask, Unfused}) {
      if (mode == Mode::Gradient && v != Unfused) continue;
      if (mode == Mode::Bench && v == NoMask) continue;
      if (tf32 && mode != Mode::Parity) continue;
      Case c;
      c.op = "linear_relu";
      c.shape = dims({{"rows", s.rows}, {"in", s.in}, {"hidden", s.hidden}, {"out", s.out}}) +
                (v == Mask ? " fused+mask" : v == NoMask ? " fused" : " unfused") + (tf32 ? " tf32" : "");
      c.options = {tf32, v != Unfused};
      const int64_t nx = int64_t(s.rows) * s.in, ny = int64_t(s.rows) * s.hidden, nz = int64_t(s.rows) * s.out;
      c.inputs = {{"x", nx, Draw::Quarters, 0, 0, true},
                  {"w", int64_t(s.hidden) * s.in, Draw::Quarters, 0, 0, true},
                  {"b", s.hidden, Draw::Odd32nds, 0, 0, true},
                  {"v", int64_t(s.out) * s.hidden},
                  {"c", s.out}};
      const double sh = std::sqrt(double(s.hidden)), so = std::sqrt(double(s.out)), sr = std::sqrt(double(s.rows));
      OutputSpec y{"y", ny, {0, 0}};  // exact: every pre-activation is a sum of exact quarters
      y.in_objective = false;
      OutputSpec dpre{"dpre", ny, {2e-6 * so, 1e-5}};
      dpre.in_objective = false;
      // z sums hidden terms of |y v| up to about sqrt(in) / 8.
      c.outputs = {y, {"z", nz, {2e-6 * sh * (1 + std::sqrt(double(s.in)) / 8), 1e-5}}, dpre};
      c.grads = {{0, {2e-6 * sh * so, 1e-5}}, {1, {2e-6 * sr * so, 1e-5}}, {2, {2e-6 * sr * so, 1e-5}}};
      if (tf32) {
        // y stays exact (quarters and odd 32nds are exact in TF32: the ReLU pattern and the mask are
        // the CPU's). z sums hidden products of y (size about 1 + sqrt(in)/8) and v (|v| <= 1); dpre
        // sums out products of the upstream and v, so its entries are about sqrt(out); dx sums
        // hidden products of dpre and W (|W| <= 1/2), dW and the lower bias's gradient rows of them.
        c.outputs[1].parity = tf32_bound(s.hidden, 1 + std::sqrt(double(s.in)) / 8);
        c.outputs[2].parity = tf32_bound(s.out, 1.0);
        c.grads = {{0, tf32_bound(s.hidden, 0.5 * so)}, {1, tf32_bound(s.rows, 0.5 * so)}, {2, tf32_bound(s.rows, so)}};
      }
      c.bytes = 4.0 * (nx + 2.0 * s.hidden * s.in + 3.0 * ny + 2.0 * nz + int64_t(s.out) * s.hidden) + 4.0 * nx;
      c.flops = 2.0 * s.rows * (3.0 * s.in * s.hidden + 2.0 * s.hidden * s.out);
      const S sh_ = s;
      const bool with_mask = v == Mask;
      set_body(c, [=](auto& be, auto& io) {
        const size_t mask_bytes = with_mask ? be.relu_mask_bytes(sh_.rows, sh_.hidden) : 0;
        void* mask = mask_bytes ? io.scratch(mask_bytes) : nullptr;
        const bool wrote = be.linear_relu_forward(io.in(0), io.in(1), io.in(2), io.out(0), mask, sh_.rows, sh_.in, sh_.hidden);
        be.linear_forward(io.out(0), io.in(3), io.in(4), io.out(1), sh_.rows, sh_.hidden, sh_.out);
        if (!io.backward()) return;
        be.linear_relu_input_backward(io.in(3), io.up(1), io.out(0), wrote ? mask : nullptr, io.out(2), io.grad(2),
                                      sh_.rows, sh_.hidden, sh_.out);
        be.linear_backward(io.in(0), io.in(1), io.out(2), io.grad(0), io.grad(1), nullptr, sh_.rows, sh_.in, sh_.hidden);
      });
      out.push_back(std::move(c));
    }
}

// ------------------------------------------------------------------- convolution (cuDNN / im2col)

void add_conv(std::vector<Case>& out, Mode mode) {
  // n, c, h, w, k, kernel, stride, pad: odd and non-square, stride 1-3, padding 0-2, 1x1.
  const std::vector<ConvGeometry> grad{{2, 3, 7, 5, 4, 3, 3, 1, 1}, {1, 1, 6, 11, 2, 3, 3, 2, 0}, {2, 2, 5, 5, 3, 2, 2, 2, 1}};
  const std::vector<ConvGeometry> parity{{2, 3, 7, 5, 4, 3, 3, 1, 1}, {3, 2, 9, 9, 5, 4, 4, 2, 1},
                                         {1, 1, 6, 11, 2, 3, 3, 2, 0}, {2, 5, 8, 7, 3, 5, 5, 3, 2},
                                         {2, 4, 1, 1, 3, 1, 1, 1, 0}, {128, 32, 14, 14, 64, 4, 4, 2, 1}};
  const std::vector<ConvGeometry> bench{{128, 32, 14, 14, 64, 4, 4, 2, 1}, {1024, 32, 14, 14, 64, 4, 4, 2, 1}};
  for (const ConvGeometry g : pick(mode, grad, parity, bench))
    for (bool tf32 : {false, true}) {
      if (tf32 && mode != Mode::Parity) continue;
      Case c;
      c.op = "conv";
      c.shape = dims({{"n", g.n}, {"c", g.c}, {"h", g.h}, {"w", g.w}, {"k", g.k}, {"kernel", g.kh}, {"stride", g.stride},
                      {"pad", g.pad}}) + (tf32 ? " tf32" : "");
      c.options = {tf32, true};
      const int64_t nx = int64_t(g.n) * g.c * g.h * g.w, ny = int64_t(g.n) * g.k * g.oh() * g.ow(),
                    nw = int64_t(g.k) * g.c * g.kh * g.kw;
      c.inputs = {{"x", nx, Draw::Uniform, -1, 1, true}, {"w", nw, Draw::Uniform, -1, 1, true}, {"b", g.k, Draw::Uniform, -1, 1, true}};
      const double atol = tf32 ? 2e-2 : 1e-5, rtol = tf32 ? 1e-2 : 1e-5;
      const double terms = double(ny) / g.k * g.n;  // positions summed into each filter gradient
      c.outputs = {{"y", ny, {atol, rtol}}};
      c.grads = {{0, {atol, rtol}}, {1, {atol * std::sqrt(terms), rtol}}, {2, {1e-5 * std::sqrt(terms), 1e-5}}};
      c.bytes = 4.0 * (3.0 * nx + 2.0 * ny + 3.0 * nw);
      c.flops = 6.0 * double(ny) * g.c * g.kh * g.kw;
      set_body(c, [=](auto& be, auto& io) {
        const size_t bytes = be.conv_workspace_bytes(g);
        const Workspace ws{io.scratch(bytes), bytes};
        be.conv_forward(g, io.in(0), io.in(1), io.in(2), io.out(0), ws);
        if (!io.backward()) return;
        be.conv_backward_data(g, io.up(0), io.in(1), io.grad(0), ws);
        be.conv_backward_filter(g, io.in(0), io.up(0), io.grad(1), io.grad(2), ws);
      });
      out.push_back(std::move(c));
    }
}

// y[n, c, :] += b[c] and its gradient db[c] = sum over n and hw of dy.
void add_channel_bias(std::vector<Case>& out, Mode mode) {
  struct S { int n, c, hw; };
  const std::vector<S> grad{{1, 1, 1}, {3, 5, 7}};
  const std::vector<S> parity{{1, 1, 1}, {3, 5, 7}, {129, 33, 49}};
  const std::vector<S> bench{{128, 64, 49}, {1024, 32, 196}};
  for (const S s : pick(mode, grad, parity, bench)) {
    Case c;
    c.op = "channel_bias";
    c.shape = dims({{"n", s.n}, {"c", s.c}, {"hw", s.hw}});
    const int64_t ny = int64_t(s.n) * s.c * s.hw;
    c.inputs = {{"b", s.c, Draw::Uniform, -1, 1, true}};
    OutputSpec y{"y", ny, {1e-6, 1e-6}};
    y.accumulates = true;
    y.init = Draw::Uniform;
    c.outputs = {y};
    c.grads = {{0, {1e-5 * std::sqrt(double(s.n) * s.hw), 1e-5}}};
    c.bytes = 4.0 * 3 * ny;
    set_body(c, [=](auto& be, auto& io) {
      ops::channel_bias_add(be, io.in(0), io.out(0), s.n, s.c, s.hw);
      if (io.backward()) ops::channel_bias_grad(be, io.up(0), io.grad(0), s.n, s.c, s.hw);
    });
    out.push_back(std::move(c));
  }
}

void add_activations(std::vector<Case>& out, Mode mode) {
  const std::vector<int64_t> grad{37}, parity{1, 7, 4099, 100003}, bench{128 * 512, 4096 * 512};
  for (math::Act act : {math::Act::ReLU, math::Act::LeakyReLU, math::Act::Tanh, math::Act::SiLU})
    for (int64_t n : pick(mode, grad, parity, bench)) {
      if (mode == Mode::Bench && act != math::Act::ReLU) continue;
      Case c;
      c.op = "activation";
      c.shape = std::string(act == math::Act::ReLU ? "relu" : act == math::Act::LeakyReLU ? "leaky_relu"
                                                            : act == math::Act::Tanh ? "tanh" : "silu") +
                " n=" + std::to_string(n);
      const double range = mode == Mode::Gradient ? 3 : 6;
      c.inputs = {{"x", n, Draw::AwayFromZero, -range, range, true}};
      c.outputs = {{"y", n, {1e-6, 4e-6}}};
      c.grads = {{0, {1e-6, 4e-6}}};
      c.bytes = 20.0 * n;
      set_body(c, [=](auto& be, auto& io) {
        ops::activation_forward(be, act, 0.01f, io.in(0), io.out(0), n);
        if (io.backward()) ops::activation_backward(be, act, 0.01f, io.in(0), io.up(0), io.grad(0), n);
      });
      out.push_back(std::move(c));
    }
}

// The gated layer's gate, h = a * sigmoid(g) over rows of [a | g]; and the bounded log-variance of
// the encoder head, hard (kept off its two kinks) and soft.
void add_gate_and_logvar_clamp(std::vector<Case>& out, Mode mode) {
  struct S { int rows; int64_t width; };
  const std::vector<S> grad{{3, 5}, {1, 1}};
  const std::vector<S> parity{{1, 1}, {7, 33}, {128, 300}, {5, 4099}};
  const std::vector<S> bench{{128, 300}, {4096, 300}};
  for (const S s : pick(mode, grad, parity, bench)) {
    Case c;
    c.op = "gate";
    c.shape = dims({{"rows", s.rows}, {"width", int(s.width)}});
    const int64_t n = int64_t(s.rows) * s.width;
    const double r = mode == Mode::Gradient ? 3 : 12;
    c.inputs = {{"pre", 2 * n, Draw::Uniform, -r, r, true}};
    c.outputs = {{"h", n, {1e-6, 4e-6}}};
    c.grads = {{0, {1e-6, 4e-6}}};
    c.bytes = 4.0 * (3 * n) + 4.0 * (5 * n);
    set_body(c, [=](auto& be, auto& io) {
      ops::gate_forward(be, io.in(0), io.out(0), s.rows, s.width);
      if (io.backward()) ops::gate_backward(be, io.in(0), io.up(0), io.grad(0), s.rows, s.width);
    });
    out.push_back(std::move(c));
  }
  // width > 2L: a hierarchy's encoder output, the top's head then the lower levels' (passed through).
  struct L { int rows, latent; int64_t width; };
  const std::vector<L> lgrad{{3, 4, 8}, {1, 1, 2}, {2, 2, 7}};
  const std::vector<L> lparity{{1, 1, 2}, {7, 33, 66}, {128, 40, 80}, {9, 40, 163}};
  const std::vector<L> lbench{{128, 40, 80}, {4096, 40, 80}};
  for (const L s : pick(mode, lgrad, lparity, lbench))
    for (bool soft : {false, true}) {
      if (mode == Mode::Bench && soft) continue;
      Case c;
      c.op = "logvar_clamp";
      c.shape = dims({{"rows", s.rows}, {"latent", s.latent}, {"width", int(s.width)}}) + (soft ? " soft" : " hard");
      const int64_t n = int64_t(s.rows) * s.width;
      // Range [-6, 2] with raw values from -9 to 5: both sides of both ends. The hard clamp's
      // finite differences must not straddle its kinks: values within 0.05 of an end move off it.
      c.inputs = {{"h", n, Draw::Uniform, -9, 5, true, [](std::vector<double>& v) {
                     for (double& x : v)
                       for (double end : {-6.0, 2.0})
                         if (std::fabs(x - end) < 0.05) x = end + (x < end ? -0.05 : 0.05);
                   }}};
      c.outputs = {{"y", n, {1e-6, 4e-6}}};
      c.grads = {{0, {1e-6, 4e-6}}};
      c.bytes = 4.0 * (2 * n) + 4.0 * (3 * n);
      set_body(c, [=](auto& be, auto& io) {
        using T = scalar_of<decltype(io)>;
        const ops::LogvarBounds<T> bounds{T(-6), T(2), soft};
        ops::logvar_clamp_forward(be, io.in(0), io.out(0), s.rows, s.latent, bounds, s.width);
        if (io.backward())
          ops::logvar_clamp_backward(be, io.in(0), io.up(0), io.grad(0), s.rows, s.latent, bounds, s.width);
      });
      out.push_back(std::move(c));
    }
}

// ------------------------------------------------------------------------------ the latent block

// The fused (Gaussian posterior, N(0, I), ELBO) path with the analytic KL. J = <z, R> + w sum kl.
void add_latent_sample_kl(std::vector<Case>& out, Mode mode) {
  struct S { int rows, latent; };
  const std::vector<S> grad{{3, 5}, {1, 1}};
  const std::vector<S> parity{{1, 1}, {1, 33}, {7, 3}, {128, 32}, {257, 33}, {7, 1}};
  const std::vector<S> bench{{128, 32}, {4096, 32}};
  for (const S s : pick(mode, grad, parity, bench))
    for (float eps_scale : {1.0f, 0.0f}) {
      if (mode == Mode::Bench && eps_scale == 0.0f) continue;
      Case c;
      c.op = "latent_sample_kl";
      c.shape = dims({{"rows", s.rows}, {"latent", s.latent}}) + (eps_scale == 0 ? " mean" : " sampled");
      const double w = 0.375;
      const int64_t nh = int64_t(s.rows) * 2 * s.latent, nz = int64_t(s.rows) * s.latent;
      const double r = mode == Mode::Gradient ? 1.5 : 3;
      c.inputs = {{"h", nh, Draw::Uniform, -r, r, true}};
      OutputSpec kl{"kl", s.rows, {1e-5 * s.latent, 1e-5}};
      kl.constant_upstream = true;
      kl.weight = w;
      OutputSpec kl_dim{"kl_dim", s.latent, {1e-5 * s.rows, 1e-5}};
      kl_dim.in_objective = false;
      c.outputs = {{"z", nz, {1e-5, 1e-5}}, kl, kl_dim};
      c.grads = {{0, {1e-5, 1e-5}}};
      c.bytes = 4.0 * (nh * 2 + nz + s.rows + s.latent) + 4.0 * (nh + nz + nh);
      const LatentArgs args{s.rows, s.latent, 99, 4, 10, eps_scale};
      set_body(c, [=](auto& be, auto& io) {
        ops::latent_sample_kl_forward(be, args, io.in(0), io.out(0), io.out(1), io.out(2));
        if (io.backward()) {
          using T = scalar_of<decltype(io)>;
          ops::latent_sample_kl_backward(be, args, io.in(0), io.up(0), ops::GradWeight<T>{T(w)}, io.grad(0));
        }
      });
      out.push_back(std::move(c));
    }
}

// The general path's posterior: z and log q(z|x); J = <z, R> + w sum log q. With k > 1 (the
// importance-sampling form) forward only.
void add_gaussian_posterior(std::vector<Case>& out, Mode mode) {
  struct S { int rows, k, latent; };
  const std::vector<S> grad{{3, 1, 5}, {2, 1, 1}};
  const std::vector<S> parity{{1, 1, 1}, {7, 1, 3}, {128, 1, 32}, {257, 1, 33}, {5, 7, 33}, {3, 64, 32}};
  const std::vector<S> bench{{128, 1, 32}, {4096, 1, 32}, {128, 64, 32}};
  for (const S s : pick(mode, grad, parity, bench))
    for (float eps_scale : {1.0f, 0.0f}) {
      if (eps_scale == 0.0f && (mode == Mode::Bench || s.k > 1)) continue;
      Case c;
      c.op = "gaussian_posterior";
      c.shape = dims({{"rows", s.rows}, {"k", s.k}, {"latent", s.latent}}) + (eps_scale == 0 ? " mean" : " sampled");
      const double w = 0.3125;
      const int64_t nh = int64_t(s.rows) * 2 * s.latent, nz = int64_t(s.rows) * s.k * s.latent;
      c.inputs = {{"h", nh, Draw::Uniform, -2, 2, true}};
      OutputSpec log_q{"log_q", int64_t(s.rows) * s.k, {1e-5 * s.latent, 1e-5}};
      log_q.constant_upstream = true;
      log_q.weight = w;
      c.outputs = {{"z", nz, {1e-5, 1e-5}}, log_q};
      if (s.k == 1) c.grads = {{0, {1e-5, 1e-5}}};
      c.bytes = 4.0 * (nh + nz + s.rows * s.k) + (s.k == 1 ? 4.0 * (nh + nz + nh) : 0.0);
      ops::PosteriorNoise noise;
      noise.seed = 99;
      noise.stream = s.k == 1 ? kStreamLatent : kStreamImportance;
      noise.step = 4;
      noise.row0 = 10;
      noise.eps_scale = eps_scale;
      set_body(c, [=](auto& be, auto& io) {
        ops::gaussian_posterior_sample(be, io.in(0), s.rows, s.k, s.latent, noise, 1.0f, io.out(0), io.out(1));
        if (io.backward() && s.k == 1)
          ops::gaussian_posterior_backward(be, io.in(0), io.up(0), s.rows, s.latent, noise, static_cast<float>(w), io.grad(0));
      }, s.k == 1);
      out.push_back(std::move(c));
    }
  // The moments the latent tools hand out (mu and the clamped log-variance): no gradient.
  if (mode == Mode::Gradient) return;
  for (const S s : pick(mode, grad, parity, bench)) {
    if (s.k > 1) continue;
    Case c;
    c.op = "gaussian_posterior_moments";
    c.shape = dims({{"rows", s.rows}, {"latent", s.latent}});
    const int64_t nh = int64_t(s.rows) * 2 * s.latent, nz = int64_t(s.rows) * s.latent;
    // Uniform on [-40, 30]: both soft-clamp bounds (-30, 20) are crossed.
    c.inputs = {{"h", nh, Draw::Uniform, -40, 30, false}};
    c.outputs = {{"mu", nz, {0, 0}}, {"logvar", nz, {1e-6, 1e-6}}};
    c.bytes = 4.0 * (nh + 2 * nz);
    set_body(c, [=](auto& be, auto& io) {
      ops::gaussian_posterior_moments(be, io.in(0), s.rows, s.latent, io.out(0), io.out(1));
    }, false);
    out.push_back(std::move(c));
  }
}

// The standard normal prior's general path: out += log p(z); J = -w sum log p, whose gradient
// the backward adds to dz.
void add_standard_normal_prior(std::vector<Case>& out, Mode mode) {
  struct S { int rows, latent; };
  const std::vector<S> grad{{3, 5}};
  const std::vector<S> parity{{1, 1}, {7, 3}, {257, 33}};
  const std::vector<S> bench{{128, 32}, {4096, 32}};
  for (const S s : pick(mode, grad, parity, bench)) {
    Case c;
    c.op = "standard_normal_prior";
    c.shape = dims({{"rows", s.rows}, {"latent", s.latent}});
    const double w = 0.1875;
    const int64_t nz = int64_t(s.rows) * s.latent;
    c.inputs = {{"z", nz, Draw::Uniform, -3, 3, true}};
    OutputSpec lp{"log_p", s.rows, {1e-5 * s.latent, 1e-6}};
    lp.accumulates = true;
    lp.init = Draw::Uniform;
    lp.constant_upstream = true;
    lp.weight = -w;
    c.outputs = {lp};
    c.grads = {{0, {1e-6, 1e-6}, true}};
    c.bytes = 4.0 * (nz + 2 * s.rows) + 12.0 * nz;
    set_body(c, [=](auto& be, auto& io) {
      ops::standard_normal_log_prob(be, io.in(0), s.rows, s.latent, 1.0f, io.out(0));
      if (io.backward()) {
        using T = scalar_of<decltype(io)>;
        ops::standard_normal_grad_z(be, io.in(0), s.rows, s.latent, ops::GradWeight<T>{T(w)}, io.grad(0));
      }
    });
    out.push_back(std::move(c));
  }
}

// The mixture-of-Gaussians prior: log-density and responsibilities, the gradient in z and in all
// three parameter tensors (J = -w sum log p), and sampling.
void add_mog_prior(std::vector<Case>& out, Mode mode) {
  struct S { int rows, latent, components; };
  const std::vector<S> grad{{3, 5, 3}, {4, 2, 1}, {2, 1, 4}};
  const std::vector<S> parity{{1, 1, 1}, {7, 5, 3}, {128, 32, 10}, {129, 33, 7}, {3, 2, 64}};
  const std::vector<S> bench{{128, 32, 10}, {4096, 32, 10}, {128, 32, 100}};
  for (const S s : pick(mode, grad, parity, bench)) {
    const int K = s.components, L = s.latent;
    const int64_t nz = int64_t(s.rows) * L, nkl = int64_t(K) * L;
    Case c;
    c.op = "mog_prior";
    c.shape = dims({{"rows", s.rows}, {"latent", L}, {"components", K}});
    const double w = 0.25;
    c.inputs = {{"logits", K, Draw::Uniform, -1, 1, true},
                {"means", nkl, Draw::Uniform, -1, 1, true},
                {"raw_logvar", nkl, Draw::Uniform, -1, 1, true},
                {"z", nz, Draw::Uniform, -2, 2, true}};
    OutputSpec lp{"log_p", s.rows, {1e-5 * L, 1e-5}};
    lp.accumulates = true;
    lp.init = Draw::Uniform;
    lp.constant_upstream = true;
    lp.weight = -w;
    OutputSpec resp{"resp", int64_t(s.rows) * K, {1e-5, 1e-4}};
    resp.in_objective = false;
    c.outputs = {lp, resp};
    const double sr = std::sqrt(double(s.rows));
    c.grads = {{0, {1e-5 * sr, 1e-4}}, {1, {1e-5 * sr, 1e-4}}, {2, {1e-5 * sr, 1e-4}}, {3, {1e-5, 1e-4}, true}};
    c.bytes = 4.0 * (nz + s.rows + int64_t(s.rows) * K) * 3 + 4.0 * nkl * 4;
    c.flops = 12.0 * s.rows * nkl;
    set_body(c, [=](auto& be, auto& io) {
      using T = scalar_of<decltype(io)>;
      const ops::MogParams<T> p{io.in(0), io.in(1), io.in(2), K, L};
      T* table = static_cast<T*>(io.scratch(sizeof(T) * ops::mog_table_size(K, L)));
      ops::mog_log_prob(be, p, io.in(3), s.rows, T(1), io.out(1), io.out(0), table);
      if (io.backward())
        ops::mog_backward(be, p, io.in(3), io.out(1), s.rows, ops::PriorGradWeights<T>::uniform(T(w), nullptr), io.grad(3),
                          io.grad(0), io.grad(1), io.grad(2), table);
    });
    out.push_back(std::move(c));
    if (mode == Mode::Gradient) continue;
    // Sampling: the component choice and the draw (not differentiable).
    Case sc;
    sc.op = "mog_sample";
    sc.shape = dims({{"rows", s.rows}, {"latent", L}, {"components", K}});
    sc.inputs = {{"logits", K, Draw::Uniform, -2, 2}, {"means", nkl, Draw::Uniform, -1, 1}, {"raw_logvar", nkl, Draw::Uniform, -2, 1}};
    sc.outputs = {{"z", nz, {1e-5, 1e-5}}};
    sc.bytes = 4.0 * nz + 8.0 * nkl;
    set_body(sc, [=](auto& be, auto& io) {
      using T = scalar_of<decltype(io)>;
      T* table = static_cast<T*>(io.scratch(sizeof(T) * ops::mog_table_size(K, L)));
      ops::mog_sample(be, ops::MogParams<T>{io.in(0), io.in(1), io.in(2), K, L}, s.rows, T(0.8), 17, io.out(0), table);
    }, false);
    out.push_back(std::move(sc));
  }
}


// The importance-weighted bound's posterior backward: k samples per row, each with its own weight
// of log q (the upstream of log_q, random), summed into the row's dh; and its doubly-reparameterised
// form, checked against J = <z, R> + sum_i R_i log q(z_i(h); h_fixed) with h_fixed a copy of h held
// still (gaussian_log_density), which is exactly what DReG differentiates.
void add_posterior_k(std::vector<Case>& out, Mode mode) {
  struct S { int rows, k, latent; };
  const std::vector<S> grad{{2, 3, 5}, {1, 2, 1}, {3, 1, 4}};
  const std::vector<S> parity{{1, 1, 1}, {7, 5, 3}, {128, 5, 32}, {33, 7, 33}};
  const std::vector<S> bench{{128, 5, 32}, {128, 50, 32}};
  for (const S s : pick(mode, grad, parity, bench))
    for (bool dreg : {false, true}) {
      Case c;
      c.op = dreg ? "posterior_dreg" : "posterior_k";
      c.shape = dims({{"rows", s.rows}, {"k", s.k}, {"latent", s.latent}});
      const int64_t nh = int64_t(s.rows) * 2 * s.latent, nz = int64_t(s.rows) * s.k * s.latent, ns = int64_t(s.rows) * s.k;
      c.inputs = {{"h", nh, Draw::Uniform, -1.5, 1.5, true}};
      if (dreg) {
        InputSpec fixed{"h_fixed", nh};
        fixed.copy_of = 0;
        c.inputs.push_back(fixed);
      }
      OutputSpec log_q{"log_q", ns, {1e-5 * s.latent, 1e-5}};
      if (dreg) {
        log_q.accumulates = true;
        log_q.init = Draw::Zero;
      }
      c.outputs = {{"z", nz, {1e-5, 1e-5}}, log_q};
      c.grads = {{0, {1e-5 * s.k, 1e-5}}};
      c.bytes = 4.0 * (nh + nz + ns) * 2 + 4.0 * (nz + ns);
      ops::PosteriorNoise noise;
      noise.seed = 99;
      noise.step = 4;
      noise.step_scale = static_cast<uint64_t>(s.k);
      noise.row0 = 10;
      set_body(c, [=](auto& be, auto& io) {
        using T = scalar_of<decltype(io)>;
        if (dreg) {
          ops::gaussian_posterior_sample(be, io.in(0), s.rows, s.k, s.latent, noise, T(1), io.out(0), static_cast<T*>(nullptr));
          ops::gaussian_log_density(be, io.in(1), io.out(0), s.rows, s.k, s.latent, T(1), io.out(1));
        } else {
          ops::gaussian_posterior_sample(be, io.in(0), s.rows, s.k, s.latent, noise, T(1), io.out(0), io.out(1));
        }
        if (io.backward())
          ops::gaussian_posterior_backward(be, io.in(0), io.up(0), s.rows, s.k, s.latent, noise,
                                           ops::GradWeight<T>{T(0), nullptr, io.up(1)}, dreg, io.grad(0));
      });
      out.push_back(std::move(c));
    }
}

// A Gaussian's log-density at given points with its backward in both the head and the points (a
// hierarchy's conditional prior in the importance-weighted bound): J = sum_i R_i log N(z_i; h_b),
// k points per head; the density adds into a drawn output, the gradients into drawn ones.
void add_gaussian_log_density(std::vector<Case>& out, Mode mode) {
  struct S { int rows, k, latent; };
  const std::vector<S> grad{{2, 3, 5}, {1, 1, 1}, {3, 1, 4}};
  const std::vector<S> parity{{1, 1, 1}, {7, 5, 3}, {128, 5, 40}, {33, 7, 33}};
  const std::vector<S> bench{{128, 5, 40}, {640, 1, 40}};
  for (const S s : pick(mode, grad, parity, bench)) {
    Case c;
    c.op = "gaussian_log_density";
    c.shape = dims({{"rows", s.rows}, {"k", s.k}, {"latent", s.latent}});
    const int64_t nh = int64_t(s.rows) * 2 * s.latent, nz = int64_t(s.rows) * s.k * s.latent, ns = int64_t(s.rows) * s.k;
    c.inputs = {{"h", nh, Draw::Uniform, -1.5, 1.5, true}, {"z", nz, Draw::Uniform, -3, 3, true}};
    OutputSpec log_p{"log_p", ns, {1e-5 * s.latent, 1e-5}};
    log_p.accumulates = true;
    log_p.init = Draw::Uniform;
    c.outputs = {log_p};
    c.grads = {{0, {1e-5 * s.k, 1e-5}, true}, {1, {1e-5, 1e-5}, true}};
    c.bytes = 4.0 * (nh + nz + 2 * ns) + 4.0 * (nh * 2 + nz * 2 + ns);
    set_body(c, [=](auto& be, auto& io) {
      using T = scalar_of<decltype(io)>;
      ops::gaussian_log_density(be, io.in(0), io.in(1), s.rows, s.k, s.latent, T(1), io.out(0));
      if (io.backward())
        ops::gaussian_log_density_backward(be, io.in(0), io.in(1), s.rows, s.k, s.latent,
                                           ops::GradWeight<T>{T(0), nullptr, io.up(0)}, io.grad(0), io.grad(1));
    });
    out.push_back(std::move(c));
  }
}

// The analytic KL per dimension (free bits by group): J = <kl_dim, R>, which is
// sum_r sum_u R_u KL_ru, so the backward's per-dimension weights are R.
void add_gaussian_kl(std::vector<Case>& out, Mode mode) {
  struct S { int rows, latent; };
  const std::vector<S> grad{{3, 5}, {1, 1}};
  const std::vector<S> parity{{1, 1}, {7, 3}, {128, 32}, {257, 33}};
  const std::vector<S> bench{{128, 32}, {4096, 32}};
  for (const S s : pick(mode, grad, parity, bench)) {
    Case c;
    c.op = "gaussian_kl";
    c.shape = dims({{"rows", s.rows}, {"latent", s.latent}});
    const int64_t nh = int64_t(s.rows) * 2 * s.latent;
    c.inputs = {{"h", nh, Draw::Uniform, -2, 2, true}};
    OutputSpec kl{"kl", s.rows, {1e-5 * s.latent, 1e-5}};
    kl.in_objective = false;
    c.outputs = {kl, {"kl_dim", s.latent, {1e-5 * s.rows, 1e-5}}};
    c.grads = {{0, {1e-5, 1e-5}, true}};
    c.bytes = 4.0 * nh * 3 + 4.0 * (s.rows + s.latent) + 4.0 * nh;
    set_body(c, [=](auto& be, auto& io) {
      ops::gaussian_kl_forward(be, io.in(0), s.rows, s.latent, io.out(0), io.out(1));
      if (io.backward()) ops::gaussian_kl_backward(be, io.in(0), io.up(1), s.rows, s.latent, io.grad(0));
    });
    out.push_back(std::move(c));
  }
}

// The KL between two Gaussian heads (a hierarchy's level term), both heads differentiable: J from
// the per-dimension sums (weights per dimension, the free bits' form) or from the per-row values
// (weights per row, the importance-weighted or per-step form).
void add_gaussian_pair_kl(std::vector<Case>& out, Mode mode) {
  struct S { int rows, latent; };
  const std::vector<S> grad{{3, 5}, {1, 1}};
  const std::vector<S> parity{{1, 1}, {7, 3}, {128, 40}, {257, 33}};
  const std::vector<S> bench{{128, 40}, {4096, 40}};
  for (const S s : pick(mode, grad, parity, bench))
    for (bool by_dim : {true, false}) {
      if (mode == Mode::Bench && !by_dim) continue;
      Case c;
      c.op = "gaussian_pair_kl";
      c.shape = dims({{"rows", s.rows}, {"latent", s.latent}}) + (by_dim ? " per-dim weights" : " per-row weights");
      const int64_t nh = int64_t(s.rows) * 2 * s.latent;
      c.inputs = {{"hq", nh, Draw::Uniform, -2, 2, true}, {"hp", nh, Draw::Uniform, -2, 2, true}};
      OutputSpec kl{"kl", s.rows, {1e-5 * s.latent, 1e-5}};
      OutputSpec kl_dim{"kl_dim", s.latent, {1e-5 * s.rows, 1e-5}};
      (by_dim ? kl : kl_dim).in_objective = false;
      c.outputs = {kl, kl_dim};
      c.grads = {{0, {1e-5, 1e-5}, true}, {1, {1e-5, 1e-5}, true}};
      c.bytes = 4.0 * nh * 4 + 4.0 * (s.rows + s.latent) + 8.0 * nh * 2;
      set_body(c, [=](auto& be, auto& io) {
        using T = scalar_of<decltype(io)>;
        ops::gaussian_pair_kl_forward(be, io.in(0), io.in(1), s.rows, s.latent, io.out(0), io.out(1));
        if (!io.backward()) return;
        const ops::GradWeight<T> w = by_dim ? ops::GradWeight<T>{T(1)} : ops::GradWeight<T>{T(0), nullptr, io.up(0)};
        ops::gaussian_pair_kl_backward(be, io.in(0), io.in(1), s.rows, s.latent, w, by_dim ? io.up(1) : nullptr,
                                       io.grad(0), io.grad(1));
      });
      out.push_back(std::move(c));
    }
}

// The mixture's per-row weights (the importance-weighted bound's) and the VampPrior's layout: means
// and log-variances as rows [mu | raw] of the encoder's output at the pseudo-inputs, fixed zero
// logits (no dlogits), J = sum_r R_r (-log p(z_r)) with R random (the backward's per-row weights).
void add_mog_weighted(std::vector<Case>& out, Mode mode) {
  struct S { int rows, latent, components; };
  const std::vector<S> grad{{3, 4, 3}, {2, 1, 2}};
  const std::vector<S> parity{{1, 1, 1}, {7, 5, 3}, {128, 32, 50}, {129, 33, 7}};
  const std::vector<S> bench{{128, 32, 500}, {640, 32, 500}};
  for (const S s : pick(mode, grad, parity, bench))
    for (bool vamp : {false, true}) {
      const int K = s.components, L = s.latent;
      const int64_t nz = int64_t(s.rows) * L, nkl = int64_t(K) * L;
      Case c;
      c.op = vamp ? "vamp_prior" : "mog_prior_weighted";
      c.shape = dims({{"rows", s.rows}, {"latent", L}, {"components", K}});
      if (vamp) c.inputs = {{"logits", K, Draw::Zero}, {"h_pseudo", 2 * nkl, Draw::Uniform, -1, 1, true}};
      else c.inputs = {{"logits", K, Draw::Uniform, -1, 1, true}, {"means", nkl, Draw::Uniform, -1, 1, true},
                       {"raw_logvar", nkl, Draw::Uniform, -1, 1, true}};
      c.inputs.push_back({"z", nz, Draw::Uniform, -2, 2, true});
      const size_t zi = c.inputs.size() - 1;
      OutputSpec lp{"neg_log_p", s.rows, {1e-5 * L, 1e-5}};
      lp.accumulates = true;
      lp.init = Draw::Uniform;
      OutputSpec resp{"resp", int64_t(s.rows) * K, {1e-5, 1e-4}};
      resp.in_objective = false;
      c.outputs = {lp, resp};
      const double sr = std::sqrt(double(s.rows));
      if (vamp) c.grads = {{1, {1e-5 * sr, 1e-4}}, {zi, {1e-5, 1e-4}, true}};
      else c.grads = {{0, {1e-5 * sr, 1e-4}}, {1, {1e-5 * sr, 1e-4}}, {2, {1e-5 * sr, 1e-4}}, {zi, {1e-5, 1e-4}, true}};
      c.bytes = 4.0 * (nz + s.rows + int64_t(s.rows) * K) * 3 + 4.0 * nkl * 4;
      c.flops = 12.0 * s.rows * nkl;
      set_body(c, [=](auto& be, auto& io) {
        using T = scalar_of<decltype(io)>;
        ops::MogParams<T> p{io.in(0), io.in(1), vamp ? io.in(1) + L : io.in(2), K, L};
        if (vamp) p.stride = 2 * L;
        T* table = static_cast<T*>(io.scratch(sizeof(T) * ops::mog_table_size(K, L)));
        ops::mog_log_prob(be, p, io.in(zi), s.rows, T(-1), io.out(1), io.out(0), table);
        if (!io.backward()) return;
        const ops::GradWeight<T> w{T(0), nullptr, io.up(0)};
        if (vamp)
          ops::mog_backward(be, p, io.in(zi), io.out(1), s.rows, {w, w}, io.grad(1), static_cast<T*>(nullptr), io.grad(0),
                            io.grad(0) + L, table);
        else
          ops::mog_backward(be, p, io.in(zi), io.out(1), s.rows, {w, w}, io.grad(3), io.grad(0), io.grad(1), io.grad(2),
                            table);
      });
      out.push_back(std::move(c));
    }
}

// The standard normal prior with per-row weights: J = sum_r R_r (-log p(z_r)).
void add_standard_normal_weighted(std::vector<Case>& out, Mode mode) {
  for (int rows : {3, 129, 4096}) {
    if ((mode == Mode::Gradient) != (rows == 3) && !(mode == Mode::Parity && rows == 129)) continue;
    const int L = 5;
    Case c;
    c.op = "standard_normal_prior_weighted";
    c.shape = dims({{"rows", rows}, {"latent", L}});
    c.inputs = {{"z", int64_t(rows) * L, Draw::Uniform, -3, 3, true}};
    OutputSpec lp{"neg_log_p", rows, {1e-5 * L, 1e-6}};
    lp.accumulates = true;
    lp.init = Draw::Uniform;
    c.outputs = {lp};
    c.grads = {{0, {1e-6, 1e-6}, true}};
    c.bytes = 4.0 * (int64_t(rows) * L * 4 + rows * 3);
    set_body(c, [=](auto& be, auto& io) {
      using T = scalar_of<decltype(io)>;
      ops::standard_normal_log_prob(be, io.in(0), rows, L, T(-1), io.out(0));
      if (io.backward()) ops::standard_normal_grad_z(be, io.in(0), rows, L, ops::GradWeight<T>{T(0), nullptr, io.up(0)}, io.grad(0));
    });
    out.push_back(std::move(c));
  }
}

// The flow layers (flow.cuh): y and logdet (both with random upstreams: the logdet's is the
// backward's per-row weight), the gradient in x and in every parameter tensor.
void add_flow_layers(std::vector<Case>& out, Mode mode) {
  struct S { int rows, latent, hidden; };
  const std::vector<S> grad{{3, 4, 3}, {2, 5, 2}, {2, 2, 1}};
  const std::vector<S> parity{{1, 2, 1}, {7, 5, 3}, {128, 32, 64}, {33, 33, 17}};
  const std::vector<S> bench{{128, 32, 64}, {640, 32, 64}};
  for (const S s : pick(mode, grad, parity, bench)) {
    const int L = s.latent, H = s.hidden, d = L / 2, m2 = 2 * (L - L / 2);
    const int64_t nx = int64_t(s.rows) * L;
    OutputSpec y{"y", nx, {1e-5, 1e-5}};
    OutputSpec logdet{"logdet", s.rows, {1e-5 * L, 1e-5}};
    logdet.accumulates = true;
    logdet.init = Draw::Uniform;
    const double sr = std::sqrt(double(s.rows));
    {
      Case c;
      c.op = "actnorm";
      c.shape = dims({{"rows", s.rows}, {"latent", L}});
      c.inputs = {{"x", nx, Draw::Uniform, -2, 2, true}, {"bias", L, Draw::Uniform, -1, 1, true},
                  {"log_scale", L, Draw::Uniform, -1, 1, true}};
      c.outputs = {y, logdet};
      c.grads = {{0, {1e-5, 1e-5}}, {1, {1e-5 * sr, 1e-5}}, {2, {1e-5 * sr, 1e-5}}};
      c.bytes = 4.0 * nx * 5;
      set_body(c, [=](auto& be, auto& io) {
        using T = scalar_of<decltype(io)>;
        ops::actnorm_forward(be, io.in(0), s.rows, L, io.in(1), io.in(2), io.out(0), io.out(1));
        if (io.backward())
          ops::actnorm_backward(be, static_cast<const T*>(io.out(0)), io.up(0), s.rows, L, io.in(2),
                                ops::GradWeight<T>{T(0), nullptr, io.up(1)}, io.grad(0), io.grad(1), io.grad(2));
      });
      out.push_back(std::move(c));
    }
    {
      Case c;
      c.op = "lu_linear";
      c.shape = dims({{"rows", s.rows}, {"latent", L}});
      c.inputs = {{"x", nx, Draw::Uniform, -2, 2, true}, {"lu", int64_t(L) * L, Draw::Uniform, -0.5, 0.5, true},
                  {"log_scale", L, Draw::Uniform, -0.5, 0.5, true}};
      OutputSpec t{"t", nx, {1e-5 * L, 1e-5}};
      t.in_objective = false;
      c.outputs = {y, logdet, t};
      c.grads = {{0, {1e-5 * L, 1e-5}}, {1, {1e-5 * sr * L, 1e-5}}, {2, {1e-5 * sr * L, 1e-5}}};
      c.bytes = 4.0 * nx * 6 + 8.0 * L * L;
      c.flops = 8.0 * s.rows * L * L;
      set_body(c, [=](auto& be, auto& io) {
        using T = scalar_of<decltype(io)>;
        ops::lu_forward(be, io.in(0), s.rows, L, io.in(1), io.in(2), io.out(0), io.out(2), io.out(1));
        if (!io.backward()) return;
        T* dx = static_cast<T*>(io.scratch(sizeof(T) * nx));
        T* dt = static_cast<T*>(io.scratch(sizeof(T) * nx));
        ops::lu_backward(be, io.in(0), static_cast<const T*>(io.out(2)), io.up(0), s.rows, L, io.in(1), io.in(2),
                         ops::GradWeight<T>{T(0), nullptr, io.up(1)}, dx, dt, io.grad(1), io.grad(2));
        ops::copy_values(be, static_cast<const T*>(dx), nx, io.grad(0));
      });
      out.push_back(std::move(c));
    }
    {
      Case c;
      c.op = "affine_coupling";
      c.shape = dims({{"rows", s.rows}, {"latent", L}, {"hidden", H}});
      c.inputs = {{"x", nx, Draw::Uniform, -2, 2, true},
                  {"w1", int64_t(H) * d, Draw::Uniform, -1, 1, true},
                  {"b1", H, Draw::Odd32nds, -1, 1, true},
                  {"w2", int64_t(m2) * H, Draw::Uniform, -0.5, 0.5, true},
                  {"b2", m2, Draw::Uniform, -0.5, 0.5, true}};
      OutputSpec hp{"hidden", int64_t(s.rows) * H, {1e-5 * L, 1e-5}};
      hp.in_objective = false;
      OutputSpec o{"net", int64_t(s.rows) * m2, {1e-5 * H, 1e-5}};
      o.in_objective = false;
      c.outputs = {y, logdet, hp, o};
      c.grads = {{0, {1e-5 * H, 1e-5}}, {1, {1e-5 * sr, 1e-5}}, {2, {1e-5 * sr, 1e-5}}, {3, {1e-5 * sr, 1e-5}},
                 {4, {1e-5 * sr, 1e-5}}};
      c.bytes = 4.0 * nx * 6 + 4.0 * s.rows * (H + m2) * 4;
      c.flops = 6.0 * s.rows * H * (d + m2);
      set_body(c, [=](auto& be, auto& io) {
        using T = scalar_of<decltype(io)>;
        const ops::CouplingParams<T> p{io.in(1), io.in(2), io.in(3), io.in(4), L, H};
        ops::coupling_forward(be, p, io.in(0), s.rows, io.out(0), io.out(2), io.out(3), io.out(1));
        if (!io.backward()) return;
        T* dout = static_cast<T*>(io.scratch(sizeof(T) * s.rows * m2));
        T* dhp = static_cast<T*>(io.scratch(sizeof(T) * s.rows * H));
        ops::coupling_backward(be, p, io.in(0), io.up(0), static_cast<const T*>(io.out(2)), static_cast<const T*>(io.out(3)),
                               s.rows, ops::GradWeight<T>{T(0), nullptr, io.up(1)}, io.grad(0), dout, dhp, io.grad(1),
                               io.grad(2), io.grad(3), io.grad(4));
      });
      out.push_back(std::move(c));
    }
  }
}

// ----------------------------------------------------------------------------------- likelihoods

void add_likelihoods(std::vector<Case>& out, Mode mode) {
  struct S { int rows, d; };
  // Widths divisible by 3 give the RGB mixture its cases (2 x 12: 4 positions of 3 channels).
  const std::vector<S> grad{{3, 11}, {1, 1}, {2, 12}};
  const std::vector<S> parity{{1, 1}, {1, 5}, {7, 784}, {128, 784}, {7, 1031}, {128, 5}, {5, 291}};
  const std::vector<S> bench{{128, 784}, {4096, 784}, {128, 3072}};
  for (const S s : pick(mode, grad, parity, bench)) {
    const int64_t n = int64_t(s.rows) * s.d;
    const double scale = static_cast<float>(1.0 / s.rows);  // the float the backend is given
    const std::string shape = dims({{"rows", s.rows}, {"d", s.d}});
    {
      Case c;
      c.op = "bernoulli_nll";
      c.shape = shape;
      const double r = mode == Mode::Gradient ? 6 : 20;
      c.inputs = {{"logits", n, Draw::Uniform, -r, r, true, [mode](std::vector<double>& v) {
                     if (mode != Mode::Parity) return;
                     v[0] = 100;  // far past where softplus and sigmoid saturate
                     if (v.size() > 1) v[1] = -100;
                   }},
                  {"x", n, Draw::Binary}};
      OutputSpec nll{"nll", s.rows, {1e-4, 1e-5}};
      nll.constant_upstream = true;
      nll.weight = scale;
      c.outputs = {nll};
      c.grads = {{0, {1e-7, 1e-5}}};
      c.bytes = 4.0 * (3 * n + s.rows);
      set_body(c, [=](auto& be, auto& io) {
        ops::bernoulli_nll(be, io.in(0), io.in(1), io.out(0), io.backward() ? io.grad(0) : nullptr, s.rows, s.d,
                         static_cast<float>(scale));
      });
      out.push_back(std::move(c));
    }
    {
      Case c;
      c.op = "logistic_nll";
      c.shape = shape;
      // Log-scales from e^-3 to e^1 and means around the pixels: |z| up to about 30, past where
      // softplus(-z) and tanh(z/2) saturate.
      c.inputs = {{"mean", n, Draw::Uniform, -0.5, 1.5, true},
                  {"log_scale", n, Draw::Uniform, mode == Mode::Gradient ? -1.5 : -3.0, 1.0, true},
                  {"x", n, Draw::Uniform, 0, 1}};
      OutputSpec nll{"nll", s.rows, {1e-4, 1e-5}};
      nll.constant_upstream = true;
      nll.weight = scale;
      c.outputs = {nll};
      c.grads = {{0, {1e-6, 1e-5}}, {1, {1e-6, 1e-5}}};
      c.bytes = 4.0 * (5 * n + s.rows);
      set_body(c, [=](auto& be, auto& io) {
        ops::logistic_nll(be, io.in(0), io.in(1), io.in(2), io.out(0), io.backward() ? io.grad(0) : nullptr,
                          io.backward() ? io.grad(1) : nullptr, s.rows, s.d, static_cast<float>(scale));
      });
      out.push_back(std::move(c));
    }
    {
      Case c;
      c.op = "discretized_logistic_nll";
      c.shape = shape;
      // Pixels k / 255 with both end bins present; means around the pixels and raw log-scales past
      // both ends of the soft clamp [-7, 5] in parity (bins far in a tail: masses below float
      // precision, kept finite by the log-space form), within it for the differences.
      auto pixels = [](std::vector<double>& v) {
        for (double& x : v) x = std::round(x * 255.0) / 255.0;
        v[0] = 0;
        if (v.size() > 1) v[1] = 1;
        if (v.size() > 2) v[2] = 1.0 / 255;
        if (v.size() > 3) v[3] = 254.0 / 255;
      };
      const bool g = mode == Mode::Gradient;
      const int64_t n2 = 2 * n;
      c.inputs = {{"out", n2, Draw::Uniform, 0, 1, true, [n, g](std::vector<double>& v) {
                     // The first half are means, the second raw log-scales (rescaled from U(0, 1)).
                     for (int64_t i = 0; i < n; ++i) v[i] = -0.3 + 1.6 * v[i];
                     for (int64_t i = n; i < 2 * n; ++i) v[i] = g ? -5.0 + 5.5 * v[i] : -9.0 + 15.0 * v[i];
                   }},
                  {"x", n, Draw::Uniform, 0, 1, false, pixels}};
      OutputSpec nll{"nll", s.rows, {g ? 1e-4 : 2e-3, 1e-5}};
      nll.constant_upstream = true;
      nll.weight = scale;
      c.outputs = {nll};
      c.grads = {{0, {1e-6, 1e-5}}};
      c.bytes = 4.0 * (5 * n + s.rows);
      set_body(c, [=](auto& be, auto& io) {
        ops::discretized_logistic_nll(be, io.in(0), io.in(1), io.out(0), io.backward() ? io.grad(0) : nullptr, s.rows,
                                      s.d, static_cast<float>(scale));
      });
      out.push_back(std::move(c));
    }
    for (int channels : {1, 3}) {
      if (s.d % channels != 0 || (mode == Mode::Bench && channels == 1)) continue;
      const int K = mode == Mode::Gradient ? 3 : 10;
      const int64_t hw = s.d / channels;
      const int64_t planes = ops::dmol_planes(K, channels);
      const int64_t no = s.rows * planes * hw;
      const bool g = mode == Mode::Gradient;
      Case c;
      c.op = "dmol_nll";
      c.shape = dims({{"rows", s.rows}, {"channels", channels}, {"hw", int(hw)}, {"K", K}});
      // Planes drawn per their role: logits in [-2, 2], means around the pixels, raw log-scales
      // within the clamp for the differences (past both ends in parity), coefficients in [-1.5, 1.5].
      c.inputs = {{"out", no, Draw::Uniform, 0, 1, true, [=](std::vector<double>& v) {
                     for (int64_t r = 0; r < s.rows; ++r)
                       for (int64_t pl = 0; pl < planes; ++pl)
                         for (int64_t p = 0; p < hw; ++p) {
                           double& u = v[(r * planes + pl) * hw + p];
                           if (pl < K) u = -2 + 4 * u;
                           else if (pl < K + K * channels) u = -0.3 + 1.6 * u;
                           else if (pl < K + 2 * K * channels) u = g ? -4.0 + 4.5 * u : -9.0 + 15.0 * u;
                           else u = -1.5 + 3 * u;
                         }
                   }},
                  {"x", n, Draw::Uniform, 0, 1, false, [](std::vector<double>& v) {
                     for (double& x : v) x = std::round(x * 255.0) / 255.0;
                     v[0] = 0;
                     if (v.size() > 1) v[v.size() - 1] = 1;
                   }}};
      OutputSpec nll{"nll", s.rows, {g ? 1e-4 : 2e-3, 2e-5}};
      nll.constant_upstream = true;
      nll.weight = scale;
      c.outputs = {nll};
      c.grads = {{0, {1e-6, 1e-5}}};
      c.bytes = 4.0 * (2 * no + n + s.rows);
      set_body(c, [=](auto& be, auto& io) {
        ops::dmol_nll(be, io.in(0), io.in(1), io.out(0), io.backward() ? io.grad(0) : nullptr, s.rows, K, channels, hw,
                      static_cast<float>(scale));
      });
      out.push_back(std::move(c));
    }
    if (mode != Mode::Gradient && s.d % 3 == 0) {
      // Pixels drawn from the 8-bit likelihoods (not differentiable): the logistic per value and
      // the RGB mixture per pixel (K = 4), quantized to k / 255.
      const int K = 4;
      const int64_t hw = s.d / 3, planes = int64_t(K) * 10, no = s.rows * planes * hw;
      Case c;
      c.op = "pixel_sample";
      c.shape = shape + " dlogistic, dmol rgb K=4";
      c.inputs = {{"dl_out", 2 * n, Draw::Uniform, -1, 1.5}, {"dmol_out", no, Draw::Uniform, -1.5, 1.5}};
      // A value at a bin's edge may round either way on the two devices: one level, 1/255.
      c.outputs = {{"dl_image", n, {1.0 / 255 + 1e-6, 0}}, {"dmol_image", n, {1.0 / 255 + 1e-6, 0}}};
      c.bytes = 4.0 * (2 * n + no + 2 * n);
      set_body(c, [=](auto& be, auto& io) {
        ops::logistic_pixel_sample(be, io.in(0), io.out(0), s.rows, s.d, 7, 3);
        ops::dmol_pixel_sample(be, io.in(1), io.out(1), s.rows, K, 3, hw, 7, 3);
      }, false);
      out.push_back(std::move(c));
    }
    for (bool learned : {false, true}) {
      Case c;
      c.op = "gaussian_nll";
      c.shape = shape + (learned ? " learned sigma" : " fixed sigma");
      c.inputs = {{"mean", n, Draw::Uniform, -0.5, 1.5, true}, {"x", n, Draw::Uniform, 0, 1},
                  {"raw_log_sigma", s.d, Draw::Uniform, mode == Mode::Gradient ? -2.0 : -3.0, mode == Mode::Gradient ? 0.5 : 1.0, learned}};
      OutputSpec nll{"nll", s.rows, {learned ? 1e-3 : 1e-4, 1e-5}};
      nll.constant_upstream = true;
      nll.weight = scale;
      c.outputs = {nll};
      c.grads = {{0, {learned ? 1e-6 : 1e-7, 1e-5}}};
      if (learned) c.grads.push_back({2, {1e-5, 1e-5}});
      c.bytes = 4.0 * (5 * n + s.rows + 3 * s.d);
      const float fixed = std::log(0.3f);
      set_body(c, [=](auto& be, auto& io) {
        ops::gaussian_nll(be, io.in(0), io.in(1), learned ? io.in(2) : nullptr, fixed, io.out(0),
                        io.backward() ? io.grad(0) : nullptr, io.backward() && learned ? io.grad(1) : nullptr, s.rows, s.d,
                        static_cast<float>(scale));
      });
      out.push_back(std::move(c));
    }
  }
}

// ---------------------------------------------------------- device cases (parity and benchmark)

std::vector<float> rnd(size_t n, uint64_t seed, double lo = -1, double hi = 1) {
  return test::random_vector<float>(n, seed, lo, hi);
}

// The objectives' batch reductions (free bits, capacity, the importance weights) and the row moves:
// device cases, parity and benchmark. Their gradients are checked end to end in test_objectives.
void add_objectives(std::vector<Case>& out, Mode mode) {
  if (mode == Mode::Gradient) return;
  struct S { int rows, latent, k; };
  const std::vector<S> sizes = mode == Mode::Parity ? std::vector<S>{{1, 1, 1}, {7, 6, 3}, {128, 32, 5}, {129, 33, 1}}
                                                    : std::vector<S>{{128, 32, 5}};
  for (const S s : sizes) {
    for (int variant = 0; variant < 3; ++variant) {
      const char* names[] = {"free bits by group", "free bits total", "capacity"};
      Case c;
      c.op = "elbo_regularised";
      c.shape = std::string(names[variant]) + " " + dims({{"rows", s.rows}, {"latent", s.latent}});
      c.bytes = 8.0 * s.rows + 8.0 * s.latent + 12;
      c.device_bounds = {{1e-4, 1e-6}, {0, 0}, {0, 0}};
      const int group = s.latent % 3 == 0 ? 3 : 1;
      c.device = [s, variant, group](Backend& be, Arena& a) -> std::function<void()> {
        const float* nll = a.in(rnd(s.rows, 31, 50, 400));
        const float* kl = a.in(rnd(s.rows, 32, 0, 2.0f * s.latent));
        const float* kl_dim = a.in(rnd(s.latent, 33, 0, 3.0f * s.rows));
        float* loss = a.out(3);
        float* dim_weight = a.out(static_cast<size_t>(s.latent));
        // The effective record's [kl_grad_weight, capacity], copied out of it.
        float* weight = a.out(2);
        // The record itself is not compared (it holds integers): an input buffer, never read back.
        float* scratch = a.in(std::vector<float>(sizeof(StepScalars) / sizeof(float) + 1, 0.0f));
        StepScalars step;
        step.beta = 0.7f;
        step.capacity = 0.8f * s.latent;
        const StepScalars* record = a.array(std::vector<StepScalars>{step});
        return [&be, s, variant, group, nll, kl, kl_dim, loss, dim_weight, weight, scratch, record] {
          ops::ElboRegularised<float> r{};
          r.kind = variant == 2 ? ops::KlRegulariser::Capacity : ops::KlRegulariser::FreeBits;
          r.nll = nll;
          r.kl = kl;
          r.kl_dim = variant == 0 ? kl_dim : nullptr;
          r.rows = s.rows;
          r.latent = s.latent;
          r.group = group;
          r.free_bits = 0.9f;
          r.step = record;
          r.effective = reinterpret_cast<StepScalars*>(scratch);
          r.dim_weight = dim_weight;
          r.loss = loss;
          ops::elbo_regularised(be, r);
          if (variant != 0) ops::fill(be, dim_weight, s.latent, 0.0f);
          ops::copy_values(be, &r.effective->kl_grad_weight, 2, weight);
        };
      };
      out.push_back(std::move(c));
    }
    for (bool dreg : {false, true}) {
      Case c;
      c.op = "iwae_objective";
      c.shape = dims({{"rows", s.rows}, {"k", s.k}}) + (dreg ? " dreg" : "");
      const int64_t n = int64_t(s.rows) * s.k;
      c.bytes = 8.0 * n + 12.0 * n + 4.0 * s.rows;
      c.device_bounds = {{1e-4, 1e-5}, {1e-6, 1e-5}, {1e-6, 1e-5}, {1e-5, 1e-5}, {1e-4, 1e-6}};
      c.device = [s, dreg, n](Backend& be, Arena& a) -> std::function<void()> {
        const float* lpq = a.in(rnd(n, 41, -30, 0));
        const float* nll = a.in(rnd(n, 42, 150, 170));
        float *bound = a.out(s.rows), *dec = a.out(n), *enc = a.out(n), *zs = a.out(n), *loss = a.out(3);
        return [&be, s, dreg, n, lpq, nll, bound, dec, enc, zs, loss] {
          ops::iwae_objective(be, lpq, nll, s.rows, s.k, dreg, bound, dec, enc, zs, loss);
          if (!dreg) ops::fill(be, zs, n, 0.0f);
        };
      };
      out.push_back(std::move(c));
    }
    Case r;
    r.op = "rows";
    r.shape = dims({{"rows", s.rows}, {"cols", 784}, {"k", s.k}}) + " repeat, scale, copy, scale values, unit clamp gradient";
    const int64_t n = int64_t(s.rows) * s.k * 784;
    r.bytes = 8.0 * n * 4 + 12.0 * n;
    r.device_bounds = {{0, 0}, {0, 0}, {0, 0}};
    r.device = [s, n](Backend& be, Arena& a) -> std::function<void()> {
      const float* x = a.in(rnd(int64_t(s.rows) * 784, 51, 0, 1));
      const float* scale = a.in(rnd(int64_t(s.rows) * s.k, 52, -2, 2));
      const float* raw = a.in(rnd(n, 53, -0.5f, 1.5f));
      float *rep = a.out(n), *copied = a.out(n), *g = a.out(n);
      return [&be, s, n, x, scale, raw, rep, copied, g] {
        ops::repeat_rows(be, x, s.rows, 784, s.k, rep);
        ops::scale_rows(be, rep, scale, s.rows * s.k, 784);
        ops::copy_values(be, static_cast<const float*>(rep), n, copied);
        ops::scale_values(be, copied, n, 0.375f);
        ops::unit_clamp_backward(be, raw, static_cast<const float*>(copied), n, g);
      };
    };
    out.push_back(std::move(r));
  }
}

void add_loss_reduce(std::vector<Case>& out, Mode mode) {
  if (mode == Mode::Gradient) return;
  const std::vector<int> sizes = mode == Mode::Parity ? std::vector<int>{1, 7, 128, 4099} : std::vector<int>{128, 4096};
  for (int rows : sizes) {
    Case c;
    c.op = "loss_reduce";
    c.shape = "rows=" + std::to_string(rows) + " with accumulate_scaled";
    c.bytes = 8.0 * rows + 24;
    c.device_bounds = {{1e-5, 1e-6}, {1e-2, 1e-6}};
    c.device = [rows](Backend& be, Arena& a) -> std::function<void()> {
      const auto acc = rnd(3, 19, 0, 1000);
      const float *nll = a.in(rnd(rows, 17, 50, 400)), *kl = a.in(rnd(rows, 18, 0, 30));
      float* loss = a.out(3);
      float* sums = a.out(3, &acc);
      StepScalars step;
      step.beta = 0.7f;
      const StepScalars* record = a.array(std::vector<StepScalars>{step});
      return [&be, nll, kl, loss, sums, rows, record] {
        be.loss_reduce(nll, kl, rows, record, loss);
        ops::accumulate_scaled(be, loss, 3, float(rows), sums);
      };
    };
    out.push_back(std::move(c));
  }
}

// Adam and AdamW over several steps, with and without clipping; then the guarded form (every
// training step) where steps 3 and 5 carry a non-finite loss and a non-finite gradient: both are
// skipped on both backends and counted.
void add_adam(std::vector<Case>& out, Mode mode) {
  if (mode == Mode::Gradient) return;
  const std::vector<int64_t> sizes = mode == Mode::Parity ? std::vector<int64_t>{1, 17, 1091920} : std::vector<int64_t>{1091920};
  for (int64_t n : sizes) {
    for (int variant = 0; variant < 4; ++variant) {
      if (mode == Mode::Bench && variant == 2) continue;
      Case c;
      const char* names[] = {"adam", "adam clip", "adamw decay", "guarded adam"};
      c.op = "adam";
      c.shape = std::string(names[variant]) + " n=" + std::to_string(n) + " 5 steps";
      c.bytes = 5.0 * n * (variant == 1 || variant == 3 ? 8 : 7) * 4;
      c.device_bounds = {{1e-6, 1e-5}, {1e-7, 1e-5}, {1e-9, 1e-5}, {1e-6, 1e-6}};
      if (variant == 3) c.device_bounds = {{1e-6, 1e-5}, {1e-7, 1e-5}, {1e-9, 1e-5}, {0, 0}, {0, 0}};
      c.device = [n, variant](Backend& be, Arena& a) -> std::function<void()> {
        const auto p0 = rnd(n, variant == 3 ? 30 : 20), zeros = std::vector<float>(n, 0.0f), zero = std::vector<float>(1, 0.0f);
        float* p = a.out(n, &p0);
        float* m = a.out(n, &zeros);
        float* v = a.out(n, &zeros);
        float* norm = a.out(1);
        float* skipped = variant == 3 ? a.out(1, &zero) : nullptr;
        std::vector<const float*> g, loss;
        std::vector<StepScalars> steps(5);
        for (int step = 1; step <= 5; ++step) {
          auto gs = rnd(n, (variant == 3 ? 200 : 100) + step, -2, 2);
          if (variant == 3 && step == 5) gs[n / 2] = INFINITY;
          g.push_back(a.in(gs));
          loss.push_back(a.in({variant == 3 && step == 3 ? NAN : 1.0f}));
          AdamArgs args;
          args.step = step;
          args.weight_decay = variant == 2 ? 0.01f : 0.0f;
          args.decoupled = variant == 2;
          steps[step - 1].adam = adam_coefficients(args);
        }
        const StepScalars* records = a.array(steps);
        return [&be, p, m, v, norm, skipped, g, loss, n, variant, records] {
          for (int step = 1; step <= 5; ++step) {
            const StepGuard guard = variant == 3 ? StepGuard{loss[step - 1], skipped} : StepGuard{};
            be.adam_step(p, g[step - 1], m, v, n, variant == 1 ? 0.5f : 0.0f, records + step - 1, norm, guard);
          }
        };
      };
      out.push_back(std::move(c));
    }
  }
}

void add_gather(std::vector<Case>& out, Mode mode) {
  if (mode == Mode::Gradient) return;
  struct S { int rows, d; };
  const std::vector<S> sizes = mode == Mode::Parity ? std::vector<S>{{7, 7}, {7, 784}} : std::vector<S>{{128, 784}, {4096, 784}};
  for (const S s : sizes)
    for (bool binarize : {false, true}) {
      if (mode == Mode::Bench && !binarize) continue;
      Case c;
      c.op = "gather_pixels";
      c.shape = dims({{"rows", s.rows}, {"d", s.d}}) + (binarize ? " binarized" : " grey");
      c.bytes = double(s.rows) * (s.d * 5 + 4);
      c.device_bounds = {{0, 0}};  // bit-exact: the same Philox draws and one float compare
      c.device = [s, binarize](Backend& be, Arena& a) -> std::function<void()> {
        const int images_n = 6000;
        std::vector<uint8_t> images(size_t(images_n) * s.d);
        for (size_t i = 0; i < images.size(); ++i) images[i] = static_cast<uint8_t>((i * 131) % 256);
        std::vector<int32_t> index(s.rows);
        for (int r = 0; r < s.rows; ++r) index[r] = (r * 7919 + (r == 3 ? 0 : 1)) % images_n;
        if (s.rows > 4) index[4] = index[3];  // a repeated index gets the same binary image
        const uint8_t* img = a.array(images);
        const int32_t* idx = a.array(index);
        float* x = a.out(size_t(s.rows) * s.d);
        return [&be, img, idx, x, s, binarize] {
          ops::gather_pixels(be, img, idx, s.rows, s.d, binarize, 99, kStreamBinarize, 12, nullptr, x);
        };
      };
      out.push_back(std::move(c));
    }
}

// The fused importance sampling for N(0, I) with the streaming log-sum-exp (two chunks folded).
void add_importance(std::vector<Case>& out, Mode mode) {
  if (mode == Mode::Gradient) return;
  struct S { int rows, k, latent; };
  std::vector<S> sizes;
  if (mode == Mode::Parity) {
    for (int rows : {1, 5})
      for (int k : {1, 7, 64})
        for (int latent : {1, 32, 33}) sizes.push_back({rows, k, latent});
  } else {
    sizes = {{128, 64, 32}};
  }
  for (const S s : sizes) {
    Case c;
    c.op = "latent_importance_sample";
    c.shape = dims({{"rows", s.rows}, {"k", s.k}, {"latent", s.latent}}) + " with logsumexp_accumulate";
    c.bytes = double(s.rows) * s.k * (4 * s.latent + 4 + 8) * 2 + double(s.rows) * 8 * s.latent;
    // The last output: the squared weights' sum, for the effective sample size.
    c.device_bounds = {{1e-4, 1e-5}, {1e-5, 1e-5}, {1e-4, 1e-5}, {1e-5 * s.k, 1e-4}, {1e-5 * s.k, 1e-4}};
    c.device = [s](Backend& be, Arena& a) -> std::function<void()> {
      const std::vector<float> init_max(s.rows, -INFINITY), init_sum(s.rows, 0.0f);
      const float* h = a.in(rnd(size_t(s.rows) * 2 * s.latent, 21, -2, 2));
      const float* nll = a.in(rnd(size_t(s.rows) * s.k, 22, 100, 300));
      float* z = a.out(size_t(s.rows) * s.k * s.latent);
      float* lpq = a.out(size_t(s.rows) * s.k);
      float* mx = a.out(s.rows, &init_max);
      float* sm = a.out(s.rows, &init_sum);
      float* sq = a.out(s.rows, &init_sum);
      return [&be, h, nll, z, lpq, mx, sm, sq, s] {
        ops::latent_importance_sample(be, h, z, lpq, s.rows, s.k, s.latent, 5, 10, 3);
        ops::logsumexp_accumulate(be, lpq, nll, s.rows, s.k, mx, sm, sq);
        ops::logsumexp_accumulate(be, lpq, nll, s.rows, s.k, mx, sm, sq);  // a second chunk folds in
      };
    };
    out.push_back(std::move(c));
  }
}

// sigmoid, clamp01 (also in place, as decoder outputs become images), fill and normal_fill.
// A hierarchy's column blocks (columns.cuh): a copy between rows of different strides, a sum of
// three strided blocks, and an accumulation into the last columns of wide rows (not differentiable
// here: plain data movement; every output element is written or, accumulating, starts drawn).
void add_columns_cases(std::vector<Case>& out, Mode mode) {
  if (mode == Mode::Gradient) return;
  struct S { int rows, cols, stride; };
  const std::vector<S> shapes = mode == Mode::Parity ? std::vector<S>{{1, 1, 1}, {7, 33, 80}, {257, 80, 160}}
                                                     : std::vector<S>{{4096, 80, 160}};
  for (const S s : shapes) {
    Case c;
    c.op = "columns";
    c.shape = dims({{"rows", s.rows}, {"cols", s.cols}, {"stride", s.stride}});
    const int64_t wide = int64_t(s.rows) * s.stride, n = int64_t(s.rows) * s.cols;
    c.inputs = {{"a", wide, Draw::Uniform, -1, 1}, {"b", n, Draw::Uniform, -1, 1}, {"e", wide, Draw::Uniform, -1, 1}};
    OutputSpec acc{"accumulated", wide, {1e-7, 1e-6}};
    acc.init = Draw::Uniform;
    acc.accumulates = true;
    c.outputs = {{"copied", n, {0, 0}}, {"summed", n, {1e-7, 1e-6}}, acc};
    c.bytes = 4.0 * (2 * n + 4 * n + 3 * n);
    set_body(c, [=](auto& be, auto& io) {
      using T = scalar_of<decltype(io)>;
      const int64_t off = s.stride - s.cols;  // the last cols columns of the wide rows
      ops::copy_columns(be, ops::Columns<const T>{io.in(0) + off, s.stride}, ops::Columns<T>{io.out(0), s.cols}, s.rows,
                        s.cols);
      ops::sum_columns(be, ops::Columns<const T>{io.in(0), s.stride}, ops::Columns<const T>{io.in(1), s.cols},
                       ops::Columns<const T>{io.in(2), s.stride}, ops::Columns<T>{io.out(1), s.cols}, s.rows, s.cols);
      ops::add_columns(be, ops::Columns<const T>{io.in(1), s.cols}, ops::Columns<T>{io.out(2) + off, s.stride}, s.rows,
                       s.cols);
    }, false);
    out.push_back(std::move(c));
  }
}

void add_elementwise(std::vector<Case>& out, Mode mode) {
  if (mode == Mode::Gradient) return;
  const std::vector<int64_t> sizes = mode == Mode::Parity ? std::vector<int64_t>{1, 1031} : std::vector<int64_t>{128 * 784};
  for (int64_t n : sizes) {
    Case c;
    c.op = "elementwise";
    c.shape = "sigmoid clamp01 fill n=" + std::to_string(n);
    c.bytes = 40.0 * n;
    c.device_bounds = {{1e-7, 4e-6}, {0, 0}, {0, 0}, {1e-7, 4e-6}, {0, 0}};
    c.device = [n](Backend& be, Arena& a) -> std::function<void()> {
      const auto x = rnd(n, 23, -30, 30);
      const float* xi = a.in(x);
      float *s = a.out(n), *cl = a.out(n), *f = a.out(n), *in_place = a.out(n, &x), *clamped = a.out(n, &x);
      return [&be, xi, s, cl, f, in_place, clamped, n] {
        ops::sigmoid(be, xi, s, n);
        ops::clamp01(be, xi, cl, n);
        ops::fill(be, f, n, 0.25f);
        ops::sigmoid(be, in_place, in_place, n);
        ops::clamp01(be, clamped, clamped, n);
      };
    };
    out.push_back(std::move(c));
  }
  struct S { int rows, cols; };
  const std::vector<S> shapes = mode == Mode::Parity ? std::vector<S>{{7, 33}, {1, 1}} : std::vector<S>{{4096, 32}};
  for (const S s : shapes) {
    Case c;
    c.op = "normal_fill";
    c.shape = dims({{"rows", s.rows}, {"cols", s.cols}});
    c.bytes = 4.0 * s.rows * s.cols;
    c.device_bounds = {{1e-5, 1e-5}};
    c.device = [s](Backend& be, Arena& a) -> std::function<void()> {
      float* z = a.out(size_t(s.rows) * s.cols);
      return [&be, z, s] { ops::normal_fill(be, z, s.rows, s.cols, 0.7f, 4, kStreamPrior, 2); };
    };
    out.push_back(std::move(c));
  }
}

}  // namespace

// Class indices drawn as U(0, classes) and floored: the float labels the condition and the
// classifier's loss read (never perturbed).
std::function<void(std::vector<double>&)> as_class_indices(int classes) {
  return [classes](std::vector<double>& v) {
    for (double& x : v) x = std::min<double>(classes - 1, std::floor(x));
  };
}

// The classifier's softmax cross-entropy, J = sum_r R_r loss_r (its backward's per-row upstream),
// with the argmax-is-label output for parity only; and the class condition of a conditional VAE,
// whose backward is take_columns of the upstream (the label columns get no gradient).
// The label-conditioned prior p(z | y): log-density with J = -w sum log p (its backward's uniform
// weight) and the gradients in z, means and raw log-variances; k samples per label (repeat); and
// its sampler (parity only).
void add_label_gaussian_prior(std::vector<Case>& out, Mode mode) {
  struct S { int rows, latent, classes, repeat; };
  const std::vector<S> grad{{4, 3, 3, 1}, {6, 2, 2, 3}, {1, 1, 1, 1}};
  const std::vector<S> parity{{1, 1, 1, 1}, {7, 5, 3, 1}, {128, 32, 10, 1}, {129, 33, 10, 3}};
  const std::vector<S> bench{{128, 32, 10, 1}, {4096, 32, 10, 1}};
  for (const S s : pick(mode, grad, parity, bench)) {
    const int L = s.latent, C = s.classes;
    const int64_t nz = int64_t(s.rows) * L, ncl = int64_t(C) * L, labels = (s.rows + s.repeat - 1) / s.repeat;
    Case c;
    c.op = "label_gaussian_prior";
    c.shape = dims({{"rows", s.rows}, {"latent", L}, {"classes", C}, {"repeat", s.repeat}});
    const double w = 0.25;
    c.inputs = {{"means", ncl, Draw::Uniform, -1, 1, true},
                {"raw_logvar", ncl, Draw::Uniform, -1.5, 1, true},
                {"z", nz, Draw::Uniform, -2, 2, true},
                {"y", labels, Draw::Uniform, 0, double(C), false, as_class_indices(C)}};
    OutputSpec lp{"log_p", s.rows, {1e-5 * L, 1e-5}};
    lp.accumulates = true;
    lp.init = Draw::Uniform;
    lp.constant_upstream = true;
    lp.weight = -w;
    c.outputs = {lp};
    const double sr = std::sqrt(double(s.rows));
    c.grads = {{0, {1e-5 * sr, 1e-4}}, {1, {1e-5 * sr, 1e-4}}, {2, {1e-5, 1e-4}, true}};
    c.bytes = 4.0 * (3 * nz + s.rows) + 4.0 * 2 * ncl;
    set_body(c, [=](auto& be, auto& io) {
      using T = scalar_of<decltype(io)>;
      const ops::LabelGaussianParams<T> p{io.in(0), io.in(1), io.in(3), C, L, s.repeat};
      ops::label_gaussian_log_prob(be, p, io.in(2), s.rows, T(1), io.out(0));
      if (io.backward())
        ops::label_gaussian_backward(be, p, io.in(2), s.rows, ops::PriorGradWeights<T>::uniform(T(w), nullptr),
                                     io.grad(2), io.grad(0), io.grad(1));
    });
    out.push_back(std::move(c));
    if (mode == Mode::Gradient) continue;
    Case sc;
    sc.op = "label_gaussian_sample";
    sc.shape = c.shape;
    sc.inputs = {{"means", ncl, Draw::Uniform, -1, 1}, {"raw_logvar", ncl, Draw::Uniform, -2, 1},
                 {"y", labels, Draw::Uniform, 0, double(C), false, as_class_indices(C)}};
    sc.outputs = {{"z", nz, {1e-5, 1e-5}}};
    sc.bytes = 4.0 * nz + 8.0 * ncl;
    set_body(sc, [=](auto& be, auto& io) {
      using T = scalar_of<decltype(io)>;
      ops::label_gaussian_sample(be, ops::LabelGaussianParams<T>{io.in(0), io.in(1), io.in(2), C, L, s.repeat}, s.rows,
                                 T(0.8), 17, io.out(0));
    }, false);
    out.push_back(std::move(sc));
  }
}

void add_condition_and_classifier(std::vector<Case>& out, Mode mode) {
  struct X { int rows, classes; };
  const std::vector<X> xgrad{{4, 3}, {1, 2}};
  const std::vector<X> xparity{{1, 2}, {7, 10}, {257, 10}, {128, 1000}};
  const std::vector<X> xbench{{128, 10}, {10000, 10}};
  for (const X s : pick(mode, xgrad, xparity, xbench)) {
    Case c;
    c.op = "softmax_xent";
    c.shape = dims({{"rows", s.rows}, {"classes", s.classes}});
    const int64_t n = int64_t(s.rows) * s.classes;
    c.inputs = {{"logits", n, Draw::Uniform, -3, 3, true}, {"y", s.rows, Draw::Uniform, 0, double(s.classes), false,
                                                             as_class_indices(s.classes)}};
    OutputSpec correct{"correct", s.rows, {0, 0}};
    correct.in_objective = false;
    c.outputs = {{"loss", s.rows, {1e-5, 1e-5}}, correct};
    c.grads = {{0, {1e-6, 1e-5}}};
    c.bytes = 4.0 * n * 2 + 12.0 * s.rows;
    set_body(c, [=](auto& be, auto& io) {
      ops::softmax_xent(be, io.in(0), io.in(1), s.rows, s.classes, io.out(0), io.out(1),
                        io.backward() ? io.grad(0) : nullptr, 1.0, io.backward() ? io.up(0) : nullptr);
    });
    out.push_back(std::move(c));
  }
  struct C { int rows, cols, classes, plane, repeat; };
  const std::vector<C> cgrad{{6, 5, 3, 1, 2}, {2, 8, 2, 4, 1}};
  const std::vector<C> cparity{{1, 1, 2, 1, 1}, {12, 35, 10, 1, 3}, {7, 784, 10, 784, 1}};
  const std::vector<C> cbench{{128, 784, 10, 1, 1}, {128, 784, 10, 784, 1}};
  for (const C s : pick(mode, cgrad, cparity, cbench)) {
    Case c;
    c.op = "condition";
    c.shape = dims({{"rows", s.rows}, {"cols", s.cols}, {"classes", s.classes}, {"plane", s.plane}, {"repeat", s.repeat}});
    const int64_t width = s.cols + int64_t(s.classes) * s.plane, labels = (s.rows + s.repeat - 1) / s.repeat;
    c.inputs = {{"x", int64_t(s.rows) * s.cols, Draw::Uniform, -1, 1, true},
                {"y", labels, Draw::Uniform, 0, double(s.classes), false, as_class_indices(s.classes)}};
    c.outputs = {{"out", s.rows * width, {0, 0}}};
    c.grads = {{0, {0, 0}}};
    c.bytes = 4.0 * s.rows * (s.cols + width) + 8.0 * s.rows * s.cols;
    set_body(c, [=](auto& be, auto& io) {
      ops::append_condition(be, io.in(0), io.in(1), s.rows, s.cols, s.classes, s.plane, s.repeat, io.out(0));
      if (io.backward()) ops::take_columns(be, io.up(0), s.rows, width, s.cols, io.grad(0));
    });
    out.push_back(std::move(c));
  }
  if (mode == Mode::Gradient) return;
  for (int rows : mode == Mode::Parity ? std::vector<int>{1, 129} : std::vector<int>{128}) {
    Case c;
    c.op = "gather_labels";
    c.shape = dims({{"rows", rows}});
    c.bytes = 12.0 * rows;
    c.device_bounds = {{0, 0}};
    c.device = [rows](Backend& be, Arena& a) -> std::function<void()> {
      std::vector<int32_t> labels(1000), index(rows);
      for (int i = 0; i < 1000; ++i) labels[i] = (i * 37) % 10;
      for (int r = 0; r < rows; ++r) index[r] = (r * 7919 + 3) % 1000;
      const int32_t* l = a.array(labels);
      const int32_t* idx = a.array(index);
      float* y = a.out(rows);
      return [&be, l, idx, y, rows] { ops::gather_labels(be, l, idx, rows, nullptr, y); };
    };
    out.push_back(std::move(c));
  }
}

std::vector<Case> cases(Mode mode) {
  std::vector<Case> all;
  add_linear(all, mode);
  add_linear_relu(all, mode);
  add_conv(all, mode);
  add_channel_bias(all, mode);
  add_activations(all, mode);
  add_gate_and_logvar_clamp(all, mode);
  add_latent_sample_kl(all, mode);
  add_gaussian_posterior(all, mode);
  add_standard_normal_prior(all, mode);
  add_mog_prior(all, mode);
  add_posterior_k(all, mode);
  add_gaussian_log_density(all, mode);
  add_gaussian_kl(all, mode);
  add_gaussian_pair_kl(all, mode);
  add_mog_weighted(all, mode);
  add_standard_normal_weighted(all, mode);
  add_flow_layers(all, mode);
  add_objectives(all, mode);
  add_likelihoods(all, mode);
  add_loss_reduce(all, mode);
  add_adam(all, mode);
  add_gather(all, mode);
  add_importance(all, mode);
  add_elementwise(all, mode);
  add_columns_cases(all, mode);
  add_condition_and_classifier(all, mode);
  add_label_gaussian_prior(all, mode);
  return all;
}

std::vector<Coverage> required_coverage() {
  return {{"linear", true},          {"linear_relu", true},           {"conv", true},
          {"channel_bias", true},    {"activation", true},            {"latent_sample_kl", true},
          {"gaussian_posterior", true}, {"standard_normal_prior", true}, {"mog_prior", true},
          {"mog_sample", false},     {"bernoulli_nll", true},         {"gaussian_nll", true},
          {"loss_reduce", false},    {"adam", false},                 {"gather_pixels", false},
          {"latent_importance_sample", false}, {"elementwise", false}, {"normal_fill", false},
          {"posterior_k", true},     {"posterior_dreg", true},       {"gaussian_kl", true},
          {"mog_prior_weighted", true}, {"vamp_prior", true},        {"standard_normal_prior_weighted", true},
          {"elbo_regularised", false}, {"iwae_objective", false},     {"rows", false},
          {"actnorm", true},         {"lu_linear", true},            {"affine_coupling", true},
          {"softmax_xent", true},    {"condition", true},            {"gather_labels", false},
          {"gaussian_posterior_moments", false}, {"logistic_nll", true},
          {"gate", true},            {"logvar_clamp", true},
          {"discretized_logistic_nll", true}, {"dmol_nll", true},
          {"label_gaussian_prior", true}, {"label_gaussian_sample", false}, {"gaussian_pair_kl", true},
          {"gaussian_log_density", true}, {"pixel_sample", false},   {"columns", false}};
}

}  // namespace vae::optable
