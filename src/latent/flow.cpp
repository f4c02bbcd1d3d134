#include "latent/flow.hpp"

#include <cmath>

#include "backend/device_array.hpp"
#include "philox.cuh"
#include "rows.cuh"
#include "vae/error.hpp"

namespace vae {

Flow::Flow(std::string name, int latent, int steps, int hidden)
    : name_(std::move(name)), latent_(latent), steps_(steps), hidden_(hidden) {
  if (steps > 0 && latent < 2)
    throw Error(name_ + ": a flow's coupling layers split z into two halves; the latent size must be at least 2");
}

int64_t Flow::layout(int64_t offset) {
  const int64_t L = latent_, d = latent_ / 2, m2 = net_width(), H = hidden_;
  at_.clear();
  for (int s = 0; s < steps_; ++s) {
    Offsets o{};
    o.an_bias = align_params(offset);
    o.an_scale = align_params(o.an_bias + L);
    o.lu = align_params(o.an_scale + L);
    o.lu_scale = align_params(o.lu + L * L);
    o.w1 = align_params(o.lu_scale + L);
    o.b1 = align_params(o.w1 + H * d);
    o.w2 = align_params(o.b1 + H);
    o.b2 = align_params(o.w2 + m2 * H);
    offset = o.b2 + m2;
    at_.push_back(o);
  }
  return offset;
}

void Flow::bind(float* params, float* grads) {
  params_ = params;
  grads_ = grads;
}

void Flow::param_slices(std::vector<ParamSlice>& out) const {
  const int64_t L = latent_, d = latent_ / 2, m2 = net_width(), H = hidden_;
  for (int s = 0; s < steps_; ++s) {
    const std::string p = name_ + "." + std::to_string(s) + ".";
    const Offsets& o = at_[static_cast<size_t>(s)];
    out.push_back({p + "actnorm.bias", o.an_bias, {L}});
    out.push_back({p + "actnorm.log_scale", o.an_scale, {L}});
    out.push_back({p + "linear.lu", o.lu, {L, L}});
    out.push_back({p + "linear.log_scale", o.lu_scale, {L}});
    out.push_back({p + "coupling.0.weight", o.w1, {H, d}});
    out.push_back({p + "coupling.0.bias", o.b1, {H}});
    out.push_back({p + "coupling.2.weight", o.w2, {m2, H}});
    out.push_back({p + "coupling.2.bias", o.b2, {m2}});
  }
}

void Flow::initialize(std::vector<float>& params, uint64_t seed, uint32_t& tensor_index) const {
  const int d = latent_ / 2;
  const float bound = 1.0f / std::sqrt(static_cast<float>(d));
  for (int s = 0; s < steps_; ++s) {
    const Offsets& o = at_[static_cast<size_t>(s)];
    // Everything but the coupling's first layer starts at zero (the buffer is zero-filled).
    for (int64_t off : {o.w1, o.b1}) {
      const uint32_t index = tensor_index++;
      const int64_t n = off == o.w1 ? int64_t(hidden_) * d : hidden_;
      for (int64_t c0 = 0; c0 < n; c0 += 4) {
        const Philox4 r = philox_block(seed, kStreamInit, index, 0, static_cast<uint64_t>(c0 >> 2));
        for (int lane = 0; lane < 4 && c0 + lane < n; ++lane)
          params[static_cast<size_t>(off + c0 + lane)] = bound * (2.0f * philox_uniform(r.v[lane]) - 1.0f);
      }
    }
  }
}

void Flow::prepare(int rows, Device device) {
  if (steps_ == 0 || rows <= capacity_) return;
  const int64_t L = latent_, n = rows, m2 = net_width();
  acts_ = Tensor({3 * steps_ * n * L}, device);
  t_ = Tensor({steps_ * n * L}, device);
  hp_ = Tensor({steps_ * n * hidden_}, device);
  o_ = Tensor({steps_ * n * m2}, device);
  grad_a_ = Tensor({n, L}, device);
  grad_b_ = Tensor({n, L}, device);
  dt_ = Tensor({n, L}, device);
  dout_ = Tensor({n * m2}, device);
  dhp_ = Tensor({n * hidden_}, device);
  capacity_ = rows;
  ++generation_;
}

ops::CouplingParams<float> Flow::coupling(int s) const {
  const Offsets& o = at_[static_cast<size_t>(s)];
  return {params_ + o.w1, params_ + o.b1, params_ + o.w2, params_ + o.b2, latent_, hidden_};
}

const float* Flow::step_forward(Backend& be, int s, const float* x, int rows, float* logdet) {
  const Offsets& o = at_[static_cast<size_t>(s)];
  const int64_t kept = s * int64_t(capacity_);
  ops::actnorm_forward(be, x, rows, latent_, params_ + o.an_bias, params_ + o.an_scale, act(3 * s), logdet);
  ops::lu_forward(be, static_cast<const float*>(act(3 * s)), rows, latent_, params_ + o.lu, params_ + o.lu_scale,
                  act(3 * s + 1), t_.data() + kept * latent_, logdet);
  ops::coupling_forward(be, coupling(s), static_cast<const float*>(act(3 * s + 1)), rows, act(3 * s + 2),
                        hp_.data() + kept * hidden_, o_.data() + kept * net_width(), logdet);
  return act(3 * s + 2);
}

const float* Flow::forward(Backend& be, const float* x, int rows, float* logdet) {
  if (steps_ == 0) return x;
  if (rows > capacity_) throw Error(name_ + ": " + std::to_string(rows) + " rows but prepared for " +
                                    std::to_string(capacity_) + " (a bug in vae: prepare must run first)");
  inputs_.assign(static_cast<size_t>(3 * steps_), nullptr);
  const float* cur = x;
  for (int s = 0; s < steps_; ++s) {
    inputs_[3 * s] = cur;
    inputs_[3 * s + 1] = act(3 * s);
    inputs_[3 * s + 2] = act(3 * s + 1);
    cur = step_forward(be, s, cur, rows, logdet);
  }
  return cur;
}

const float* Flow::backward(Backend& be, const float* dy, int rows, const ops::GradWeight<float>& wld, bool params) {
  if (steps_ == 0) return dy;
  if (inputs_.size() != static_cast<size_t>(3 * steps_) || rows > capacity_)
    throw Error(name_ + ": backward without its forward (a bug in vae)");
  const int64_t L = latent_, m2 = net_width();
  const float* g = dy;
  float* bufs[2] = {grad_a_.data(), grad_b_.data()};
  int next = 0;
  auto grad = [&](int64_t off) { return params ? grads_ + off : nullptr; };
  for (int s = steps_ - 1; s >= 0; --s) {
    const Offsets& o = at_[static_cast<size_t>(s)];
    float* out = bufs[next];
    next ^= 1;
    ops::coupling_backward(be, coupling(s), inputs_[3 * s + 2], g, hp_.data() + s * int64_t(capacity_) * hidden_,
                           o_.data() + s * int64_t(capacity_) * m2, rows, wld, out, dout_.data(), dhp_.data(),
                           grad(o.w1), grad(o.b1), grad(o.w2), grad(o.b2));
    g = out;
    out = bufs[next];
    next ^= 1;
    ops::lu_backward(be, inputs_[3 * s + 1], static_cast<const float*>(t_.data() + s * int64_t(capacity_) * L), g, rows,
                     latent_, params_ + o.lu, params_ + o.lu_scale, wld, out, dt_.data(), grad(o.lu), grad(o.lu_scale));
    g = out;
    out = bufs[next];
    next ^= 1;
    ops::actnorm_backward(be, static_cast<const float*>(act(3 * s)), g, rows, latent_, params_ + o.an_scale, wld, out,
                          grad(o.an_bias), grad(o.an_scale));
    g = out;
  }
  return g;
}

void Flow::inverse(Backend& be, const float* y, int rows, float* x) {
  if (steps_ == 0) {
    ops::copy_values(be, y, int64_t(rows) * latent_, x);
    return;
  }
  prepare(rows, be.device());
  // Ping-pong between the two gradient buffers; the last layer writes x.
  float* bufs[2] = {grad_a_.data(), grad_b_.data()};
  const float* cur = y;
  int next = 0;
  for (int s = steps_ - 1; s >= 0; --s) {
    const Offsets& o = at_[static_cast<size_t>(s)];
    float* out = bufs[next];
    next ^= 1;
    ops::coupling_inverse(be, coupling(s), cur, rows, out, hp_.data(), o_.data());
    cur = out;
    out = bufs[next];
    next ^= 1;
    ops::lu_inverse(be, cur, rows, latent_, static_cast<const float*>(params_ + o.lu),
                    static_cast<const float*>(params_ + o.lu_scale), out);
    cur = out;
    ops::actnorm_inverse(be, cur, rows, latent_, static_cast<const float*>(params_ + o.an_bias),
                         static_cast<const float*>(params_ + o.an_scale), s == 0 ? x : bufs[next]);
    cur = s == 0 ? x : bufs[next];
    next ^= 1;
  }
}

void Flow::initialize_from(Backend& be, const float* x, int rows) {
  if (steps_ == 0) return;
  prepare(rows, be.device());
  const int L = latent_;
  Tensor stage({rows, L}, be.device());
  const float* cur = x;
  for (int s = 0; s < steps_; ++s) {
    const Offsets& o = at_[static_cast<size_t>(s)];
    ops::copy_values(be, cur, int64_t(rows) * L, stage.data());
    const std::vector<float> v = stage.to_host();
    std::vector<float> bias_scale(static_cast<size_t>(2 * L));
    for (int u = 0; u < L; ++u) {
      double sum = 0, sq = 0;
      for (int r = 0; r < rows; ++r) sum += v[static_cast<size_t>(r) * L + u];
      const double mean = sum / rows;
      for (int r = 0; r < rows; ++r) sq += (v[static_cast<size_t>(r) * L + u] - mean) * (v[static_cast<size_t>(r) * L + u] - mean);
      const double sd = std::sqrt(sq / rows);
      bias_scale[static_cast<size_t>(u)] = static_cast<float>(-mean);
      // A dimension with no spread in the batch keeps unit scale.
      bias_scale[static_cast<size_t>(L + u)] = sd > 1e-6 ? static_cast<float>(-std::log(sd)) : 0.0f;
    }
    const DeviceArray<float> up = DeviceArray<float>::mirror(bias_scale, be.device());
    ops::copy_values(be, up.data(), L, params_ + o.an_bias);
    ops::copy_values(be, up.data() + L, L, params_ + o.an_scale);
    // This step forward, so the next step's ActNorm sees its real input.
    cur = step_forward(be, s, cur, rows, nullptr);
  }
  inputs_.clear();
}

}  // namespace vae
