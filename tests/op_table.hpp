// The op table (STYLE.md 3, after ggml's test-backend-ops): every operation the engine's training
// and evaluation run is one or more cases here, and the same cases drive three modes:
//   gradient   the op in double on the CPU reference (Ref), its backward against central finite
//              differences of J = sum over outputs of <output, R> (R random, or a constant where
//              the op takes a scalar weight), bound 1e-6 * (1 + |numeric|) unless the case says;
//   parity     CUDA against the CPU in float: the same inputs, every output and gradient poisoned
//              with NaN first (an unwritten element fails), worst element printed as a fraction of
//              its bound atol + rtol * |cpu|;
//   benchmark  bench/bench_vae.cpp times each case's run on each backend (bytes/s against the
//              case's byte count, FLOP/s against its FLOPs).
// A case's body is written once, as a generic lambda over (executor, Io): the executor is a Backend
// (float, either device) or Ref<double>; ops written once (kernels/for_each.cuh) run through the
// same entry points in both. Operations with integer or byte inputs, or that are not differentiable
// (the optimizer, the gather, the loss reduction, the RNG fills), are device cases over an Arena:
// parity and benchmark only. Shapes are small in gradient mode (every input element is perturbed),
// awkward in parity mode (1, primes, non-multiples of 4) and realistic in benchmark mode.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cpu/cpu_conv.hpp"
#include "backend/cpu/cpu_ops.hpp"
#include "backend/device_array.hpp"
#include "for_each.cuh"
#include "vae/tensor.hpp"

namespace vae::optable {

enum class Mode { Gradient, Parity, Bench };

// The CPU reference in any scalar: the Backend operations the table needs (the GEMMs and
// convolutions), by the same names, forwarding to the cpu:: templates (which the CPU backend runs in
// float), and for_each and for_rows for the ops written once. Double makes finite differences meaningful.
template <class T>
struct Ref {
  Device device() const { return Device::CPU; }
  template <class F>
  void for_each(const F& f, int64_t n) {
    ops::cpu_for_each(f, n);
  }
  template <class F>
  void for_rows(const F& f, int64_t rows) {
    ops::cpu_for_rows(f, rows);
  }
  void linear_forward(const T* x, const T* w, const T* b, T* y, int rows, int in, int out) {
    cpu::linear_forward(x, w, b, y, rows, in, out);
  }
  void linear_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, int rows, int in, int out) {
    cpu::linear_backward(x, w, dy, dx, dw, db, rows, in, out);
  }
  size_t relu_mask_bytes(int, int) const { return 0; }
  bool linear_relu_forward(const T* x, const T* w, const T* b, T* y, void*, int rows, int in, int out) {
    cpu::linear_relu_forward(x, w, b, y, rows, in, out);
    return false;
  }
  void linear_relu_input_backward(const T* w, const T* dy, const T* a, const void*, T* dpre, T* dbias, int rows, int in,
                                  int out) {
    cpu::linear_relu_input_backward(w, dy, a, dpre, dbias, rows, in, out);
  }
  size_t conv_workspace_bytes(const ConvGeometry& g) { return sizeof(T) * static_cast<size_t>(cpu::conv_workspace_elements(g)); }
  void conv_forward(const ConvGeometry& g, const T* x, const T* w, const T* b, T* y, Workspace ws) {
    cpu::conv_forward(g, x, w, b, y, static_cast<T*>(ws.data));
  }
  void conv_backward_data(const ConvGeometry& g, const T* dy, const T* w, T* dx, Workspace ws) {
    cpu::conv_backward_data(g, dy, w, dx, static_cast<T*>(ws.data));
  }
  void conv_backward_filter(const ConvGeometry& g, const T* x, const T* dy, T* dw, T* db, Workspace ws) {
    cpu::conv_backward_filter(g, x, dy, dw, db, static_cast<T*>(ws.data));
  }
};

// How an input's values are drawn (seeded by the case and the input's position).
enum class Draw {
  Uniform,       // U(lo, hi)
  Binary,        // 0 or 1, P(1) = 0.6
  Quarters,      // multiples of 1/4 in [-1/2, 1/2] (exact pre-activations; see test::quarters)
  Odd32nds,      // odd multiples of 1/32 (biases that keep pre-activations off ReLU's kink)
  AwayFromZero,  // U(lo, hi) with |v| >= 0.05 * (hi - lo) / 2: no finite difference straddles a kink
  Zero,          // an accumulator that starts at zero
};

struct Bound {
  double atol = 0, rtol = 0;
};

struct InputSpec {
  std::string name;
  int64_t n = 0;
  Draw draw = Draw::Uniform;
  double lo = -1, hi = 1;
  // A gradient of J with respect to this input is one of the case's grads (below).
  bool differentiable = false;
  std::function<void(std::vector<double>&)> adjust = {};  // special values after the draw
  // >= 0: this input holds the values of that (earlier) input, and is never perturbed: a parameter
  // held fixed where the op takes it twice (the doubly-reparameterised gradient's log q).
  int copy_of = -1;
};

struct OutputSpec {
  std::string name;
  int64_t n = 0;
  Bound parity;
  // In gradient mode J = sum of <output, R> over outputs in the objective; R is random, or `weight`
  // everywhere where the op's backward takes a scalar weight for this output.
  bool in_objective = true;
  bool constant_upstream = false;
  double weight = 0;
  // The op adds to it (+=): it starts from a drawn value (not NaN) on both backends.
  Draw init = Draw::Zero;
  bool accumulates = false;
};

struct GradSpec {
  size_t input = 0;  // dJ / d inputs[input]
  Bound parity;
  bool accumulates = false;  // the op adds to it: starts at zero instead of NaN
  Bound gradient{1e-6, 1e-6};
};

// What a body sees: inputs, outputs, and in a backward run the upstream R of each output and the
// gradients it must write. scratch(bytes) is backend memory (workspaces, masks): the k-th call of a
// run returns the same buffer every run, so a repeated run allocates nothing.
template <class T>
class Io {
 public:
  const T* in(size_t i) const { return in_.at(i); }
  T* out(size_t o) const { return out_.at(o); }
  const T* up(size_t o) const { return up_.at(o); }
  T* grad(size_t g) const { return grad_.at(g); }
  bool backward() const { return backward_; }
  void* scratch(size_t bytes) { return scratch_fn_(bytes); }

  std::vector<const T*> in_;
  std::vector<T*> out_;
  std::vector<const T*> up_;
  std::vector<T*> grad_;
  bool backward_ = false;
  std::function<void*(size_t)> scratch_fn_;
};

// Device buffers for one run of a device case; outputs are poisoned and read back in order.
class Arena {
 public:
  explicit Arena(Device d) : device_(d) {}
  float* in(const std::vector<float>& v);
  // An output buffer filled with NaN, or with `init` when the operation reads it too.
  float* out(size_t n, const std::vector<float>* init = nullptr);
  template <class T>
  const T* array(const std::vector<T>& host) {
    auto& kept = std::get<std::deque<std::vector<T>>>(hosts_);
    kept.push_back(host);  // the CPU mirror is a view: keep its vector alive
    auto& arrays = std::get<std::deque<DeviceArray<T>>>(arrays_);
    arrays.push_back(DeviceArray<T>::mirror(kept.back(), device_));
    return arrays.back().data();
  }
  std::vector<std::vector<float>> results() const;

 private:
  Device device_;
  std::deque<Tensor> keep_;
  std::vector<Tensor> outs_;
  std::tuple<std::deque<std::vector<uint8_t>>, std::deque<std::vector<int32_t>>, std::deque<std::vector<StepScalars>>> hosts_;
  std::tuple<std::deque<DeviceArray<uint8_t>>, std::deque<DeviceArray<int32_t>>, std::deque<DeviceArray<StepScalars>>>
      arrays_;
};

struct Case {
  std::string op;     // the operation ("linear", "mog_prior", ...): one op may have several cases
  std::string shape;  // what this case varies: sizes, options
  BackendOptions options{false, true};  // strict FP32 unless the case says
  double bytes = 0, flops = 0;          // per run (forward and backward), for the benchmark
  // A body over (executor, Io), instantiated for a float Backend and for Ref<double>.
  std::vector<InputSpec> inputs;
  std::vector<OutputSpec> outputs;
  std::vector<GradSpec> grads;
  std::function<void(Backend&, Io<float>&)> run_float;
  std::function<void(Ref<double>&, Io<double>&)> run_double;  // null: no gradient check (not differentiable)
  // Or a device case: parity and benchmark only. setup draws its buffers into the Arena and returns
  // the work (parity runs it once, the benchmark many times); one bound per Arena output, in order.
  std::function<std::function<void()>(Backend&, Arena&)> device;
  std::vector<Bound> device_bounds;

  std::string name() const { return op + " " + shape; }
  bool checks_gradients() const { return static_cast<bool>(run_double); }
};

// Sets both instantiations of a generic body: [](auto& be, auto& io) { ... }.
template <class Body>
void set_body(Case& c, Body body, bool differentiable = true) {
  c.run_float = [body](Backend& be, Io<float>& io) { body(be, io); };
  if (differentiable) c.run_double = [body](Ref<double>& be, Io<double>& io) { body(be, io); };
}

// Every case of the table for a mode.
std::vector<Case> cases(Mode mode);
// The operations the table must cover, each with the modes it is held to (the coverage test).
struct Coverage {
  std::string op;
  bool gradient;  // has at least one gradient-checked case
};
std::vector<Coverage> required_coverage();

// The three modes' runners. Parity and gradient report through GoogleTest (EXPECT_*); the harness
// self-test compares the CPU against itself (other = CPU).
void check_gradients(const Case& c);
void check_parity(const Case& c, Device other = Device::CUDA);

// The benchmark's view of a case: inputs drawn and uploaded once to `be`, then run() queues one
// forward+backward (or the device body) without synchronising.
class Prepared {
 public:
  Prepared(const Case& c, Backend& be);
  ~Prepared();
  void run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vae::optable
