// Benchmarks on the CPU and (where a GPU is present) CUDA: the whole training step of the default,
// conv and mixture-prior models, every operation of the op table (tests/op_table.cpp: bytes/s
// against the bytes each case states, FLOP/s against its FLOPs; named Op/<op>/<shape>/cuda:0|1),
// the step-table cursor, and the conv layers.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <deque>
#include <random>

#include "backend/backend.hpp"
#include "backend/device_array.hpp"
#include "distributed/device_collectives.hpp"
#include "graph/layers.hpp"
#include "philox.cuh"
#include "model/model_impl.hpp"
#include "op_table.hpp"
#include "vae/vae.hpp"

namespace {

std::vector<float> binary_images(int rows, int d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution coin(0.3);
  std::vector<float> x(static_cast<size_t>(rows) * d);
  for (auto& v : x) v = coin(rng) ? 1.0f : 0.0f;
  return x;
}

// One optimizer step of the default model (784-512-256-(2x32), mirrored decoder, Bernoulli, Adam):
// forward, loss, backward and Adam on a batch already on the device, as vae train runs it (the
// gather is a separate, small kernel). Arguments: batch, device (0 = CPU, 1 = CUDA with TF32), graph
// (1 = the step recorded once and replayed, as vae train does; its per-step scalars sit in one fixed
// record here, where training walks a table, which adds one 1-thread kernel per step).
// Each iteration ends with a device synchronisation, so the time is the step's, not the queue's.
// all_reduce: the data-parallel step with one rank (ProcessGroup::local_collective): the summed
// gradient and loss between backward and Adam, on CUDA NCCL's all-reduce inside the recorded step
// (the cost of the collective path itself, without a second GPU).
void train_step(benchmark::State& state, const vae::ModelConfig& config, bool all_reduce = false) {
  const int batch = static_cast<int>(state.range(0));
  const vae::Device device = state.range(1) ? vae::Device::CUDA : vae::Device::CPU;
  const bool graph = state.range(2) != 0;
  if (device == vae::Device::CUDA && !vae::cuda_available()) {
    state.SkipWithError("no CUDA GPU");
    return;
  }
  vae::set_num_threads(0);
  vae::Model model(config, device);
  model.initialize(0);
  vae::ModelImpl& m = model.impl();
  const vae::Tensor x = vae::Tensor::from_host(binary_images(batch, 784, 1), {batch, 784}, device);
  vae::Tensor adam_m = vae::Tensor::zeros({m.params().numel()}, device), adam_v = vae::Tensor::zeros({m.params().numel()}, device);
  vae::Tensor norm({1}, device), skipped = vae::Tensor::zeros({1}, device);
  // Guarded, as every training step is (the update waits for the norm: two launches on CUDA); the
  // loss buffer exists once forward_backward has sized the workspace, so the guard is made after it.
  auto guard = [&] { return vae::StepGuard{m.loss().data(), skipped.data()}; };
  vae::AdamArgs args;
  const vae::ProcessGroup one = vae::ProcessGroup::local_collective();
  std::unique_ptr<vae::DeviceCollectives> collectives;
  if (all_reduce) {
    try {
      collectives = vae::make_device_collectives(one, *m.backend);
    } catch (const vae::Error& e) {
      state.SkipWithError(e.what());
      return;
    }
  }
  auto reduce = [&] {
    if (collectives) collectives->sum({{m.grads().data(), m.grads().numel()}, {m.loss().data(), 3}});
  };
  // A step on its own writes its record first (step_record.hpp), as Trainer::step does.
  vae::StepRecord single(device);
  auto step = [&] {
    vae::StepScalars s;
    s.philox_step = static_cast<uint64_t>(args.step);
    s.beta = 1.0f;
    s.kl_grad_weight = 1.0f / static_cast<float>(batch);
    s.adam = vae::adam_coefficients(args);
    const vae::StepScalars* record = single.write(s);
    m.forward_backward(x.data(), batch, 0, record);
    reduce();
    m.backend->adam_step(m.params().data(), m.grads().data(), adam_m.data(), adam_v.data(), m.params().numel(), args.clip_norm,
                         record, norm.data(), guard());
    ++args.step;
    m.backend->synchronize();
  };
  for (int i = 0; i < 3; ++i) step();  // warm-up: allocation and GEMM plans happen here
  if (graph) {
    vae::StepScalars record;
    record.philox_step = 3;
    record.beta = 1.0f;
    record.kl_grad_weight = 1.0f / static_cast<float>(batch);
    record.adam = vae::adam_coefficients(args);
    auto scalars = vae::DeviceArray<vae::StepScalars>::allocate(1, device);
    scalars.upload(&record, 1);
    const vae::StepScalars* per_step = scalars.data();
    const auto work = m.backend->capture([&] {
      m.forward_backward(x.data(), batch, 0, per_step);
      reduce();
      m.backend->adam_step(m.params().data(), m.grads().data(), adam_m.data(), adam_v.data(), m.params().numel(), args.clip_norm,
                           per_step, norm.data(), guard());
    });
    for (auto _ : state) {
      work->replay();
      m.backend->synchronize();
    }
  } else {
    for (auto _ : state) step();
  }
  state.SetItemsProcessed(state.iterations() * batch);
  // Forward 2*P*B FLOPs, backward about twice that.
  state.counters["GFLOP/s"] = benchmark::Counter(6.0 * model.parameter_count() * batch * state.iterations() / 1e9,
                                                 benchmark::Counter::kIsRate);
}
void BM_TrainStep(benchmark::State& state) { train_step(state, vae::ModelConfig{}); }
BENCHMARK(BM_TrainStep)
    ->ArgNames({"batch", "cuda", "graph"})
    ->Args({128, 0, 0})->Args({1024, 0, 0})->Args({4096, 0, 0})
    ->Args({128, 1, 0})->Args({128, 1, 1})->Args({4096, 1, 0})->Args({4096, 1, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
// Against BM_TrainStep with the same arguments: the all-reduce's cost in the step (NCCL, one rank).
void BM_TrainStepAllReduce(benchmark::State& state) { train_step(state, vae::ModelConfig{}, true); }
BENCHMARK(BM_TrainStepAllReduce)
    ->ArgNames({"batch", "cuda", "graph"})
    ->Args({128, 1, 1})->Args({4096, 1, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// configs/conv.json's model: Conv2d 1->32->64 (4x4, stride 2, padding 1), Linear 3136->256->2x32,
// and the mirrored decoder (ConvTranspose2d 64->32->1).
vae::ModelConfig conv_config() {
  vae::ModelConfig c;
  c.encoder.type = vae::NetworkType::Conv;
  c.encoder.channels = {32, 64};
  c.encoder.hidden = {256};
  return c;
}
void BM_ConvTrainStep(benchmark::State& state) { train_step(state, conv_config()); }

// The hierarchy's comparison (configs/hvae.json): one level of 80 with gated 300-300 networks, and
// two levels of 40 + 40 with the same networks and a 300-wide top-down network.
vae::ModelConfig gated_config(bool hierarchy) {
  vae::ModelConfig c;
  c.encoder.hidden = {300, 300};
  c.encoder.activation = vae::Activation::Gated;
  c.latent = 80;
  if (hierarchy) {
    c.levels = {40, 40};
    c.top_down_hidden = 300;
  }
  return c;
}
void BM_GatedTrainStep(benchmark::State& state) { train_step(state, gated_config(false)); }
void BM_HvaeTrainStep(benchmark::State& state) { train_step(state, gated_config(true)); }
BENCHMARK(BM_GatedTrainStep)
    ->ArgNames({"batch", "cuda", "graph"})
    ->Args({128, 0, 0})->Args({1024, 0, 0})->Args({128, 1, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_HvaeTrainStep)
    ->ArgNames({"batch", "cuda", "graph"})
    ->Args({128, 0, 0})->Args({1024, 0, 0})->Args({128, 1, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// configs/mog.json's model: the default networks with a learned mixture of 10 Gaussians as the prior
// (the general latent path: posterior sample, mixture density and its gradients).
vae::ModelConfig mog_config() {
  vae::ModelConfig c;
  c.prior.type = vae::PriorType::MixtureOfGaussians;
  c.prior.components = 10;
  return c;
}
void BM_MogTrainStep(benchmark::State& state) { train_step(state, mog_config()); }
BENCHMARK(BM_MogTrainStep)
    ->ArgNames({"batch", "cuda", "graph"})
    ->Args({128, 0, 0})->Args({1024, 0, 0})->Args({128, 1, 1})->Args({4096, 1, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ConvTrainStep)
    ->ArgNames({"batch", "cuda", "graph"})
    ->Args({128, 0, 0})->Args({1024, 0, 0})
    ->Args({128, 1, 0})->Args({128, 1, 1})->Args({1024, 1, 1})->Args({4096, 1, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// The fused operations, each on the CPU (device 0) and on CUDA (device 1, skipped without a GPU).
// Bytes/s count the bytes each must move (the kernels' header comments). A CUDA iteration queues the
// operation kRepeat times and then synchronises, so launch latency is amortised, not hidden.
constexpr int kRepeat = 20;

struct OpBench {
  vae::Device device;
  std::unique_ptr<vae::Backend> be;
  std::deque<vae::Tensor> tensors;
  explicit OpBench(benchmark::State& state)
      : device(state.range(1) ? vae::Device::CUDA : vae::Device::CPU) {
    if (device == vae::Device::CUDA && !vae::cuda_available()) return;
    vae::set_num_threads(0);
    be = vae::make_backend(device);
  }
  bool skip(benchmark::State& state) {
    if (be) return false;
    state.SkipWithError("no CUDA GPU");
    return true;
  }
  float* tensor(int64_t n, float lo, float hi, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = dist(rng);
    tensors.push_back(vae::Tensor::from_host(v, {n}, device));
    return tensors.back().data();
  }
  template <class F>
  void run(benchmark::State& state, int64_t bytes_per_call, F&& op) {
    for (int i = 0; i < 3; ++i) op();  // warm-up
    be->synchronize();
    for (auto _ : state) {
      for (int i = 0; i < kRepeat; ++i) op();
      be->synchronize();
    }
    state.SetBytesProcessed(state.iterations() * kRepeat * bytes_per_call);
  }
};

// One linear layer's GEMMs on the CPU backend, through OpenBLAS (onednn 0) or oneDNN's matmul
// (onednn 1, VAE_CPU_MATMUL selects it when the backend is made): op 0 the forward with bias and
// ReLU, 1 the weight gradient, 2 the input gradient. The default MLP's layers at three batches: the
// evidence for the backend's per-shape choice (bench/cpu-fast-path.md).
void BM_CpuLinear(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0)), in = static_cast<int>(state.range(1) >> 12),
            out = static_cast<int>(state.range(1) & 4095), op = static_cast<int>(state.range(2));
  setenv("VAE_CPU_MATMUL", state.range(3) ? "onednn" : "openblas", 1);
  const auto be = vae::make_backend(vae::Device::CPU);
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> u(-1, 1);
  auto filled = [&](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = u(gen);
    return v;
  };
  const std::vector<float> x = filled(size_t(rows) * in), w = filled(size_t(out) * in), b = filled(out),
                           dy = filled(size_t(rows) * out);
  std::vector<float> y(size_t(rows) * out), dx(size_t(rows) * in), dw(size_t(out) * in);
  for (auto _ : state) {
    if (op == 0) be->linear_relu_forward(x.data(), w.data(), b.data(), y.data(), nullptr, rows, in, out);
    if (op == 1) be->linear_backward(x.data(), w.data(), dy.data(), nullptr, dw.data(), nullptr, rows, in, out);
    if (op == 2) be->linear_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(), nullptr, rows, in, out);
  }
  unsetenv("VAE_CPU_MATMUL");
  state.SetItemsProcessed(state.iterations() * int64_t(rows) * in * out * (op == 2 ? 2 : 1));
}
BENCHMARK(BM_CpuLinear)
    ->ArgNames({"rows", "in_out", "op", "onednn"})
    ->ArgsProduct({{128, 1024, 4096},
                   {784 << 12 | 512, 512 << 12 | 256, 256 << 12 | 64, 32 << 12 | 256, 256 << 12 | 512, 512 << 12 | 784},
                   {0, 1, 2},
                   {0, 1}})
    ->UseRealTime();

// The A/B benchmarks' parts: two CPU backends made under `variable`=a and =b, uniform [-1, 1]
// inputs, and the timing loop that calls each in turn (a shared VM's drift moves both alike) and
// reports each one's median call (<a>_ms, <b>_ms) and speedup = a / b (> 1: b faster).
std::array<std::unique_ptr<vae::Backend>, 2> backends_under(const char* variable, const char* a, const char* b) {
  std::array<std::unique_ptr<vae::Backend>, 2> be;
  for (int i = 0; i < 2; ++i) {
    setenv(variable, i ? b : a, 1);
    be[i] = vae::make_backend(vae::Device::CPU);
  }
  unsetenv(variable);
  return be;
}

std::vector<float> uniform_values(size_t n, std::mt19937& gen) {
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(n);
  for (float& x : v) x = u(gen);
  return v;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

template <class Call>
void time_ab(benchmark::State& state, Call call, const std::string& a, const std::string& b) {
  for (int i = 0; i < 2; ++i) call(i);  // primitives and buffers made here
  std::vector<double> ms[2];
  for (auto _ : state)
    for (int i = 0; i < 2; ++i) {
      const auto start = std::chrono::steady_clock::now();
      call(i);
      ms[i].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
  state.counters[a + "_ms"] = median_of(ms[0]);
  state.counters[b + "_ms"] = median_of(ms[1]);
  state.counters["speedup"] = median_of(ms[0]) / std::max(median_of(ms[1]), 1e-9);
}

// BM_CpuLinear's forward (op 0), weight gradient (op 1) and input gradient (op 2: dx alone) of one
// layer, OpenBLAS and
// oneDNN in turn within one benchmark, each call timed: medians and OpenBLAS/oneDNN (> 1: oneDNN
// faster), robust to a shared VM's drift. The rows at which the backend's policy switches library.
void BM_CpuLinearAB(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0)), in = static_cast<int>(state.range(1) >> 12),
            out = static_cast<int>(state.range(1) & 4095), op = static_cast<int>(state.range(2));
  const auto be = backends_under("VAE_CPU_MATMUL", "openblas", "onednn");
  std::mt19937 gen(1);
  const std::vector<float> x = uniform_values(size_t(rows) * in, gen), w = uniform_values(size_t(out) * in, gen),
                           b = uniform_values(out, gen), dy = uniform_values(size_t(rows) * out, gen);
  std::vector<float> y(size_t(rows) * out), dx(size_t(rows) * in), dw(size_t(out) * in);
  time_ab(
      state,
      [&](int i) {
        vae::Backend& e = *be[i];
        if (op == 0) e.linear_relu_forward(x.data(), w.data(), b.data(), y.data(), nullptr, rows, in, out);
        if (op == 1) e.linear_backward(x.data(), w.data(), dy.data(), nullptr, dw.data(), nullptr, rows, in, out);
        if (op == 2)
          e.linear_relu_input_backward(w.data(), dy.data(), x.data(), nullptr, dx.data(), dw.data(), rows, in, out);
      },
      "openblas", "onednn");
}
BENCHMARK(BM_CpuLinearAB)
    ->ArgNames({"rows", "in_out", "op"})
    ->ArgsProduct({{128, 512, 1024, 2048, 4096, 8000}, {784 << 12 | 512, 512 << 12 | 784, 256 << 12 | 512}, {0, 1, 2}})
    ->UseRealTime();

// The whole training step of a model (config: 0 the default MLP, 1 configs/conv.json's conv VAE)
// with the CPU backend's policy against one fixed path (against 0: every GEMM on OpenBLAS,
// VAE_CPU_MATMUL=openblas; 1: every convolution on im2col, VAE_CPU_CONV=im2col), the two models
// trained side by side in one process, one step of each in turn: a shared VM's drift (20% within
// minutes) moves both alike. Counters: each one's median step (ms) and baseline/ours, the speed-up.
void BM_CpuMatmulAB(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  vae::ModelConfig config;
  if (state.range(1) == 1) {
    config.encoder.type = vae::NetworkType::Conv;
    config.encoder.channels = {32, 64};
    config.encoder.hidden = {256};
  }
  std::vector<std::unique_ptr<vae::Model>> models;
  std::vector<std::unique_ptr<vae::Trainer>> trainers;
  vae::TrainConfig train;
  train.batch = batch;
  const char* variable = state.range(2) == 0 ? "VAE_CPU_MATMUL" : "VAE_CPU_CONV";
  for (const char* mode : {state.range(2) == 0 ? "openblas" : "im2col", ""}) {
    if (*mode) setenv(variable, mode, 1);
    else unsetenv(variable);
    models.push_back(std::make_unique<vae::Model>(config));
    models.back()->initialize(1);
    trainers.push_back(std::make_unique<vae::Trainer>(*models.back(), train));
  }
  unsetenv(variable);
  std::mt19937 gen(2);
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<float> x(static_cast<size_t>(batch) * config.input_dim());
  for (float& v : x) v = u(gen) < 0.3f ? 1.0f : 0.0f;
  for (auto& t : trainers) t->step(x, batch);  // warm-up: allocation and primitives happen here
  std::vector<double> ms[2];
  for (auto _ : state)
    for (int which = 0; which < 2; ++which) {
      const auto start = std::chrono::steady_clock::now();
      trainers[static_cast<size_t>(which)]->step(x, batch);
      ms[which].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
  state.counters["baseline_ms"] = median_of(ms[0]);
  state.counters["ours_ms"] = median_of(ms[1]);
  state.counters["speedup"] = median_of(ms[0]) / std::max(median_of(ms[1]), 1e-9);
}
BENCHMARK(BM_CpuMatmulAB)
    ->ArgNames({"batch", "conv", "against"})
    ->ArgsProduct({{128, 1024, 4096}, {0, 1}, {0}})
    ->Args({128, 1, 1})->Args({1024, 1, 1})
    ->UseRealTime();

// One convolution of the conv VAE on the CPU backend, im2col + GEMM (cpu_conv.hpp) and oneDNN's
// primitive (onednn_conv.hpp) in turn within one benchmark, each call timed: medians and
// im2col/oneDNN (> 1: oneDNN faster). Geometry 0: Conv2d [1, 28, 28] -> 32, 1: [32, 14, 14] -> 64
// (4x4, stride 2, padding 1); the decoder's ConvTranspose2d layers are their backward_data
// (forward) and backward_filter without bias (weight gradient). Op 0: forward with bias, 1: forward
// without, 2: backward data, 3: backward filter with bias, 4: without. The evidence for the
// backend's per-operation choice (conv_through_onednn, bench/cpu-fast-path.md).
void BM_CpuConvAB(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0)), op = static_cast<int>(state.range(2));
  const vae::ConvGeometry g = state.range(1) == 0 ? vae::ConvGeometry{batch, 1, 28, 28, 32, 4, 4, 2, 1}
                                                  : vae::ConvGeometry{batch, 32, 14, 14, 64, 4, 4, 2, 1};
  const auto be = backends_under("VAE_CPU_CONV", "im2col", "onednn");
  std::mt19937 gen(1);
  const size_t nx = size_t(g.n) * g.c * g.h * g.w, ny = size_t(g.n) * g.k * g.oh() * g.ow(),
               nw = size_t(g.k) * g.c * g.kh * g.kw;
  const std::vector<float> x = uniform_values(nx, gen), w = uniform_values(nw, gen),
                           b = uniform_values(size_t(g.k), gen), dy = uniform_values(ny, gen);
  std::vector<float> y(ny), dx(nx), dw(nw), db(size_t(g.k));
  std::vector<float> ws[2];
  for (int i = 0; i < 2; ++i) ws[i].resize(be[i]->conv_workspace_bytes(g) / sizeof(float) + 1);
  time_ab(
      state,
      [&](int i) {
        vae::Backend& e = *be[i];
        const vae::Workspace w_{ws[i].data(), ws[i].size() * sizeof(float)};
        if (op == 0) e.conv_forward(g, x.data(), w.data(), b.data(), y.data(), w_);
        if (op == 1) e.conv_forward(g, x.data(), w.data(), nullptr, y.data(), w_);
        if (op == 2) e.conv_backward_data(g, dy.data(), w.data(), dx.data(), w_);
        if (op == 3) e.conv_backward_filter(g, x.data(), dy.data(), dw.data(), db.data(), w_);
        if (op == 4) e.conv_backward_filter(g, x.data(), dy.data(), dw.data(), nullptr, w_);
      },
      "im2col", "onednn");
}
BENCHMARK(BM_CpuConvAB)
    ->ArgNames({"batch", "geometry", "op"})
    ->ArgsProduct({{32, 128, 1024}, {0, 1}, {0, 1, 2, 3, 4}})
    ->UseRealTime();

#define VAE_OP_BENCH(fn, arg) BENCHMARK(fn)->ArgNames({#arg, "cuda"})->UseRealTime()

// select_step, the first kernel of every recorded training step: one thread copies one StepScalars
// record (and moves the cursor). Its cost is launch latency, not bytes. The table holds `records`
// entries; the cursor is rewound (a synchronous upload, inside the timing) each time it runs out.
void BM_SelectStep(benchmark::State& state) {
  OpBench b(state);
  if (b.skip(state)) return;
  const int64_t kTable = state.range(0);
  std::vector<vae::StepScalars> host(kTable);
  for (int64_t i = 0; i < kTable; ++i) host[static_cast<size_t>(i)].philox_step = static_cast<uint64_t>(i);
  auto table = vae::DeviceArray<vae::StepScalars>::allocate(kTable, b.device);
  table.upload(host.data(), host.size());
  auto cursor = vae::DeviceArray<int64_t>::allocate(1, b.device);
  auto current = vae::DeviceArray<vae::StepScalars>::allocate(1, b.device);
  int64_t calls = 0;
  auto rewind = [&] {
    const int64_t zero = 0;
    cursor.upload(&zero, 1);
    calls = 0;
  };
  rewind();
  b.run(state, 2 * int64_t(sizeof(vae::StepScalars) + sizeof(int64_t)), [&] {
    if (calls == kTable) {  // about once per 3000 iterations of 20 calls
      b.be->synchronize();
      rewind();
    }
    b.be->select_step(table.data(), kTable, cursor.data(), current.data());
    ++calls;
  });
}
VAE_OP_BENCH(BM_SelectStep, records)->Args({65536, 0})->Args({65536, 1});

}  // namespace

// The conv VAE's widest layers on their own: Conv2d [32, 14, 14] -> 64 (4x4, stride 2, padding 1)
// and its mirror ConvTranspose2d [64, 7, 7] -> 32; forward, or backward (filter, bias and input
// gradients). Arguments: batch, device, transposed. FLOP/s count 2 multiply-adds per weight use.
void conv_layer(benchmark::State& state, bool backward) {
  const int batch = static_cast<int>(state.range(0));
  const bool transposed = state.range(2) != 0;
  OpBench b(state);
  if (b.skip(state)) return;
  std::unique_ptr<vae::Module> layer;
  if (transposed) layer = std::make_unique<vae::ConvTranspose2d>(vae::Shape{64, 7, 7}, 32, 4, 2, 1, 0);
  else layer = std::make_unique<vae::Conv2d>(vae::Shape{32, 14, 14}, 64, 4, 2, 1);
  const int64_t n = vae::align_params(layer->layout(0));
  float* params = b.tensor(n, -0.05f, 0.05f, 1);
  float* grads = b.tensor(n, 0, 0, 2);
  layer->bind(params, grads);
  float* x = b.tensor(batch * layer->in_features(), -1, 1, 3);
  float* y = b.tensor(batch * layer->out_features(), 0, 0, 4);
  float* dy = b.tensor(batch * layer->out_features(), -1, 1, 5);
  float* dx = b.tensor(batch * layer->in_features(), 0, 0, 6);
  const size_t ws_bytes = layer->workspace_bytes(*b.be, batch);
  const vae::Workspace ws{b.tensor(static_cast<int64_t>((ws_bytes + 3) / 4 + 1), 0, 0, 7), ws_bytes};
  const int64_t bytes = 4 * batch * (layer->in_features() + layer->out_features()) * (backward ? 2 : 1);
  b.run(state, bytes, [&] {
    if (backward) layer->backward(*b.be, x, dy, dx, batch, ws);
    else layer->forward(*b.be, x, y, batch, ws);
  });
  const double macs = 64.0 * 32 * 16 * 7 * 7 * batch;  // 64*32*16 weights at 7x7 positions
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * macs * (backward ? 2 : 1) * state.iterations() * kRepeat / 1e9,
                                                 benchmark::Counter::kIsRate);
}
void BM_ConvForward(benchmark::State& state) { conv_layer(state, false); }
void BM_ConvBackward(benchmark::State& state) { conv_layer(state, true); }
BENCHMARK(BM_ConvForward)->ArgNames({"batch", "cuda", "transposed"})->ArgsProduct({{128, 1024}, {0, 1}, {0, 1}})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ConvBackward)->ArgNames({"batch", "cuda", "transposed"})->ArgsProduct({{128, 1024}, {0, 1}, {0, 1}})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// Every case of the op table in benchmark mode, on the CPU and on CUDA: inputs drawn and uploaded
// once, then kRepeat runs (forward and backward) per synchronisation.
void register_op_table() {
  static const std::vector<vae::optable::Case> table = vae::optable::cases(vae::optable::Mode::Bench);
  for (const vae::optable::Case& c : table)
    for (int cuda : {0, 1}) {
      std::string shape = c.shape;
      std::replace(shape.begin(), shape.end(), ' ', '/');
      const std::string name = "Op/" + c.op + "/" + shape + "/cuda:" + std::to_string(cuda);
      benchmark::RegisterBenchmark(name.c_str(), [&c, cuda](benchmark::State& state) {
        const vae::Device device = cuda ? vae::Device::CUDA : vae::Device::CPU;
        if (cuda && !vae::cuda_available()) {
          state.SkipWithError("no CUDA GPU");
          return;
        }
        vae::set_num_threads(0);
        const auto be = vae::make_backend(device);
        vae::optable::Prepared op(c, *be);
        for (int i = 0; i < 3; ++i) op.run();  // warm-up: plans, algorithm choices, first-touch
        be->synchronize();
        for (auto _ : state) {
          for (int i = 0; i < kRepeat; ++i) op.run();
          be->synchronize();
        }
        state.SetBytesProcessed(static_cast<int64_t>(static_cast<double>(state.iterations()) * kRepeat * c.bytes));
        if (c.flops > 0)
          state.counters["GFLOP/s"] = benchmark::Counter(c.flops * kRepeat * static_cast<double>(state.iterations()) / 1e9,
                                                         benchmark::Counter::kIsRate);
      })->UseRealTime();
    }
}

int main(int argc, char** argv) {
  register_op_table();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
