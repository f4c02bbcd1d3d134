// The op table's machinery: input draws, the Arena, and the three modes' runners (op_table.hpp).
// The cases themselves are in op_table.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <random>

#include "op_table.hpp"
#include "test_util.hpp"

namespace vae::optable {
namespace {

uint64_t seed_of(const std::string& name, size_t slot) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a: the same draws on every platform and run
  for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ULL;
  return h + 7919 * slot;
}

std::vector<double> draw(Draw how, int64_t n, double lo, double hi, uint64_t seed) {
  const size_t m = static_cast<size_t>(n);
  switch (how) {
    case Draw::Zero: return std::vector<double>(m, 0.0);
    case Draw::Quarters: return test::quarters<double>(m, seed);
    case Draw::Odd32nds: return test::odd_32nds<double>(m, seed);
    case Draw::Binary: {
      auto v = test::random_vector<double>(m, seed, 0, 1);
      for (auto& x : v) x = x < 0.4 ? 0.0 : 1.0;
      return v;
    }
    case Draw::AwayFromZero: {
      auto v = test::random_vector<double>(m, seed, lo, hi);
      const double gap = 0.05 * (hi - lo) / 2;
      for (auto& x : v)
        if (std::abs(x) < gap) x = x < 0 ? x - gap : x + gap;
      return v;
    }
    case Draw::Uniform: break;
  }
  return test::random_vector<double>(m, seed, lo, hi);
}

// Every host-side value of one case: inputs, output starting values, upstreams.
struct Draws {
  std::vector<std::vector<double>> inputs, output_init, upstream;
};

Draws draw_case(const Case& c) {
  Draws d;
  const std::string name = c.name();
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const InputSpec& s = c.inputs[i];
    if (s.copy_of >= 0) {
      d.inputs.push_back(d.inputs.at(static_cast<size_t>(s.copy_of)));
      continue;
    }
    d.inputs.push_back(draw(s.draw, s.n, s.lo, s.hi, seed_of(name, i)));
    if (s.adjust) s.adjust(d.inputs.back());
  }
  for (size_t o = 0; o < c.outputs.size(); ++o) {
    const OutputSpec& s = c.outputs[o];
    d.output_init.push_back(s.accumulates ? draw(s.init, s.n, -1, 1, seed_of(name, 100 + o)) : std::vector<double>{});
    if (!s.in_objective) d.upstream.push_back(std::vector<double>(static_cast<size_t>(s.n), 0.0));
    else if (s.constant_upstream) d.upstream.push_back(std::vector<double>(static_cast<size_t>(s.n), s.weight));
    else d.upstream.push_back(test::random_vector<double>(static_cast<size_t>(s.n), seed_of(name, 200 + o)));
  }
  return d;
}

std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

// Worst element as a fraction of atol + rtol * |ref| (NaN on one side only is infinitely far).
std::pair<double, size_t> worst_fraction(const std::vector<float>& got, const std::vector<float>& want, Bound b) {
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double bound = b.atol + b.rtol * std::abs(double(want[i]));
    const double err = std::abs(double(got[i]) - double(want[i]));
    const double frac = std::isnan(got[i]) != std::isnan(want[i]) ? INFINITY : (std::isnan(err) ? 0 : err / bound);
    if (frac > worst) worst = frac, at = i;
  }
  return {worst, at};
}

void report(const std::string& what, const std::vector<float>& got, const std::vector<float>& want, Bound b) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const auto [worst, at] = worst_fraction(got, want, b);
  std::cout << "[parity] " << what << ": worst element " << at << " at " << worst << " of its bound (atol " << b.atol
            << ", rtol " << b.rtol << ")\n";
  EXPECT_LE(worst, 1.0) << what << " element " << at << ": other " << (got.empty() ? 0.0f : got[at]) << " cpu "
                        << (want.empty() ? 0.0f : want[at]);
}

// A generic case's buffers on one backend, in float: inputs uploaded, outputs NaN (or their
// starting values), upstreams uploaded, gradients NaN (or zero when the op adds to them).
struct DeviceIo {
  Device device;
  std::vector<Tensor> in, out, up, grad;
  std::vector<Tensor> scratch;
  size_t scratch_calls = 0;
  Io<float> io;

  DeviceIo(const Case& c, const Draws& d, Device dev) : device(dev) {
    const auto make = [&](const std::vector<double>* values, int64_t n, bool nan) {
      Tensor t({std::max<int64_t>(n, 1)}, device);
      if (values && !values->empty()) t.copy_from_host(to_float(*values).data(), n);
      else t.fill(nan ? std::numeric_limits<float>::quiet_NaN() : 0.0f);
      return t;
    };
    for (size_t i = 0; i < c.inputs.size(); ++i) in.push_back(make(&d.inputs[i], c.inputs[i].n, false));
    for (size_t o = 0; o < c.outputs.size(); ++o) {
      out.push_back(make(c.outputs[o].accumulates ? &d.output_init[o] : nullptr, c.outputs[o].n, !c.outputs[o].accumulates));
      up.push_back(make(&d.upstream[o], c.outputs[o].n, false));
    }
    for (const GradSpec& g : c.grads) grad.push_back(make(nullptr, c.inputs.at(g.input).n, !g.accumulates));
    for (auto& t : in) io.in_.push_back(t.data());
    for (auto& t : out) io.out_.push_back(t.data());
    for (auto& t : up) io.up_.push_back(t.data());
    for (auto& t : grad) io.grad_.push_back(t.data());
    io.backward_ = true;
    io.scratch_fn_ = [this](size_t bytes) -> void* {
      const size_t k = scratch_calls++;
      const int64_t floats = static_cast<int64_t>((bytes + 3) / 4) + 1;
      if (k >= scratch.size()) scratch.push_back(Tensor::zeros({floats}, device));
      else if (scratch[k].numel() < floats) scratch[k] = Tensor::zeros({floats}, device);
      return scratch[k].data();
    };
  }
  void run(const Case& c, Backend& be) {
    scratch_calls = 0;
    c.run_float(be, io);
  }
  std::vector<std::vector<float>> results(const Case& c) const {
    std::vector<std::vector<float>> r;
    for (size_t o = 0; o < out.size(); ++o) r.push_back(out[o].view(0, {c.outputs[o].n}).to_host());
    for (size_t g = 0; g < grad.size(); ++g) r.push_back(grad[g].view(0, {c.inputs[c.grads[g].input].n}).to_host());
    return r;
  }
};

}  // namespace

float* Arena::in(const std::vector<float>& v) {
  keep_.push_back(Tensor::from_host(v, {static_cast<int64_t>(std::max<size_t>(v.size(), 1))}, device_));
  return keep_.back().data();
}

float* Arena::out(size_t n, const std::vector<float>* init) {
  Tensor t({static_cast<int64_t>(std::max<size_t>(n, 1))}, device_);
  if (init) t.copy_from_host(init->data(), static_cast<int64_t>(init->size()));
  else t.fill(std::numeric_limits<float>::quiet_NaN());
  outs_.push_back(t.view(0, {static_cast<int64_t>(n)}));
  keep_.push_back(t);
  return t.data();
}

std::vector<std::vector<float>> Arena::results() const {
  std::vector<std::vector<float>> r;
  for (const auto& t : outs_) r.push_back(t.to_host());
  return r;
}

void check_parity(const Case& c, Device other) {
  auto cpu = make_backend(Device::CPU);
  auto dev = make_backend(other);
  dev->set_options(c.options);
  std::vector<std::vector<float>> want, got;
  std::vector<std::string> names;
  std::vector<Bound> bounds;
  if (c.device) {
    Arena a_cpu(Device::CPU), a_dev(other);
    c.device(*cpu, a_cpu)();
    c.device(*dev, a_dev)();
    dev->synchronize();
    want = a_cpu.results();
    got = a_dev.results();
    bounds = c.device_bounds;
    for (size_t o = 0; o < want.size(); ++o) names.push_back("output " + std::to_string(o));
  } else {
    const Draws d = draw_case(c);
    DeviceIo io_cpu(c, d, Device::CPU), io_dev(c, d, other);
    io_cpu.run(c, *cpu);
    io_dev.run(c, *dev);
    dev->synchronize();
    want = io_cpu.results(c);
    got = io_dev.results(c);
    for (const auto& o : c.outputs) names.push_back(o.name), bounds.push_back(o.parity);
    for (const auto& g : c.grads) names.push_back("d" + c.inputs[g.input].name), bounds.push_back(g.parity);
  }
  ASSERT_EQ(want.size(), got.size()) << c.name();
  ASSERT_EQ(bounds.size(), want.size()) << c.name() << ": one bound per output";
  for (size_t o = 0; o < want.size(); ++o) report(c.name() + " " + names[o], got[o], want[o], bounds[o]);
}

void check_gradients(const Case& c) {
  ASSERT_TRUE(c.checks_gradients()) << c.name() << " has no gradient check";
  Draws d = draw_case(c);
  Ref<double> ref;
  std::vector<std::vector<double>> out(c.outputs.size()), grad(c.grads.size());
  std::vector<std::vector<double>> scratch;
  size_t scratch_calls = 0;
  Io<double> io;
  for (auto& v : d.inputs) io.in_.push_back(v.data());
  for (size_t o = 0; o < c.outputs.size(); ++o) {
    out[o].assign(static_cast<size_t>(std::max<int64_t>(c.outputs[o].n, 1)), 0.0);
    io.out_.push_back(out[o].data());
    io.up_.push_back(d.upstream[o].data());
  }
  for (size_t g = 0; g < c.grads.size(); ++g) {
    grad[g].assign(static_cast<size_t>(c.inputs.at(c.grads[g].input).n), 0.0);
    io.grad_.push_back(grad[g].data());
  }
  io.scratch_fn_ = [&](size_t bytes) -> void* {
    const size_t k = scratch_calls++;
    if (k >= scratch.size()) scratch.emplace_back();
    if (scratch[k].size() * sizeof(double) < bytes + 8) scratch[k].assign(bytes / sizeof(double) + 2, 0.0);
    return scratch[k].data();
  };
  auto reset_outputs = [&] {
    for (size_t o = 0; o < c.outputs.size(); ++o)
      if (c.outputs[o].accumulates) std::copy(d.output_init[o].begin(), d.output_init[o].end(), out[o].begin());
      else std::fill(out[o].begin(), out[o].end(), 0.0);
  };
  // J = sum over the objective's outputs of <output, R>.
  auto objective = [&] {
    reset_outputs();
    scratch_calls = 0;
    io.backward_ = false;
    c.run_double(ref, io);
    double j = 0;
    for (size_t o = 0; o < c.outputs.size(); ++o)
      if (c.outputs[o].in_objective)
        for (int64_t i = 0; i < c.outputs[o].n; ++i) j += out[o][static_cast<size_t>(i)] * d.upstream[o][static_cast<size_t>(i)];
    return j;
  };
  reset_outputs();
  io.backward_ = true;
  c.run_double(ref, io);
  const std::vector<std::vector<double>> analytic = grad;
  constexpr double kStep = 1e-5;  // central differences in double: truncation ~1e-10, rounding ~1e-11
  for (size_t g = 0; g < c.grads.size(); ++g) {
    std::vector<double>& x = d.inputs[c.grads[g].input];
    std::vector<double> numeric(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      const double keep = x[i];
      x[i] = keep + kStep;
      const double up = objective();
      x[i] = keep - kStep;
      const double down = objective();
      x[i] = keep;
      numeric[i] = (up - down) / (2 * kStep);
    }
    test::expect_close(analytic[g], numeric, c.grads[g].gradient.atol, c.grads[g].gradient.rtol,
                       c.name() + " d" + c.inputs[c.grads[g].input].name);
  }
}

struct Prepared::Impl {
  const Case& c;
  Backend& be;
  std::unique_ptr<DeviceIo> io;
  std::unique_ptr<Arena> arena;
  std::function<void()> work;
  Impl(const Case& cs, Backend& b) : c(cs), be(b) {}
};

Prepared::Prepared(const Case& c, Backend& be) : impl_(std::make_unique<Impl>(c, be)) {
  be.set_options(c.options);
  if (c.device) {
    impl_->arena = std::make_unique<Arena>(be.device());
    impl_->work = c.device(be, *impl_->arena);
  } else {
    impl_->io = std::make_unique<DeviceIo>(c, draw_case(c), be.device());
  }
}

Prepared::~Prepared() = default;

void Prepared::run() {
  if (impl_->work) impl_->work();
  else impl_->io->run(impl_->c, impl_->be);
}

}  // namespace vae::optable
