// Benchmarks on the CPU and (where a GPU is present) CUDA: the whole training step of the default
// model, and each fused VAE operation (bytes/s against the bytes each must move).
#include <benchmark/benchmark.h>

#include <deque>
#include <random>

#include "backend/backend.hpp"
#include "backend/device_array.hpp"
#include "graph/layers.hpp"
#include "philox.cuh"
#include "model/model_impl.hpp"
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
void train_step(benchmark::State& state, const vae::ModelConfig& config) {
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
  vae::Tensor adam_m = vae::Tensor::zeros({m.params.numel()}, device), adam_v = vae::Tensor::zeros({m.params.numel()}, device);
  vae::Tensor norm({1}, device), skipped = vae::Tensor::zeros({1}, device);
  // Guarded, as every training step is (the update waits for the norm: two launches on CUDA); the
  // loss buffer exists once forward_backward has sized the workspace, so the guard is made after it.
  auto guard = [&] { return vae::StepGuard{m.loss.data(), skipped.data()}; };
  vae::AdamArgs args;
  auto step = [&] {
    m.forward_backward(x.data(), batch, 1.0f, 0, static_cast<uint64_t>(args.step));
    m.backend->adam_step(m.params.data(), m.grads.data(), adam_m.data(), adam_v.data(), m.params.numel(), args, nullptr,
                         norm.data(), guard());
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
      m.forward_backward(x.data(), batch, 0.0f, 0, 0, per_step);
      m.backend->adam_step(m.params.data(), m.grads.data(), adam_m.data(), adam_v.data(), m.params.numel(), args,
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
    ->Args({128, 0, 0})->Args({1024, 0, 0})
    ->Args({128, 1, 0})->Args({128, 1, 1})->Args({4096, 1, 0})->Args({4096, 1, 1})
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
BENCHMARK(BM_ConvTrainStep)
    ->ArgNames({"batch", "cuda", "graph"})
    ->Args({128, 0, 0})->Args({1024, 0, 0})
    ->Args({128, 1, 0})->Args({128, 1, 1})->Args({1024, 1, 1})
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

#define VAE_OP_BENCH(fn, arg) BENCHMARK(fn)->ArgNames({#arg, "cuda"})->UseRealTime()

// latent_sample_kl forward + backward: h [B, 2L], z/dz [B, L], kl [B], kl_dim [L], dh [B, 2L].
void BM_LatentSampleKl(benchmark::State& state) {
  OpBench b(state);
  if (b.skip(state)) return;
  const int rows = static_cast<int>(state.range(0)), latent = 32;
  float *h = b.tensor(int64_t(rows) * 2 * latent, -2, 2, 1), *z = b.tensor(int64_t(rows) * latent, 0, 0, 2),
        *kl = b.tensor(rows, 0, 0, 3), *kd = b.tensor(latent, 0, 0, 4), *dz = b.tensor(int64_t(rows) * latent, -1, 1, 5),
        *dh = b.tensor(int64_t(rows) * 2 * latent, 0, 0, 6);
  const vae::LatentArgs a{rows, latent, 1, 2, 0, 1.0f};
  b.run(state, int64_t(rows) * (8 * latent * 2 + 4 * latent + 4 + 12 * latent + 8 * latent), [&] {
    b.be->latent_sample_kl_forward(a, h, z, kl, kd);
    b.be->latent_sample_kl_backward(a, h, dz, 0.01f, dh);
  });
}
VAE_OP_BENCH(BM_LatentSampleKl, rows)->Args({128, 0})->Args({4096, 0})->Args({128, 1})->Args({4096, 1});

// Bernoulli NLL + gradient: reads logits and x [B, D], writes dlogits [B, D] and NLL [B].
void BM_BernoulliNll(benchmark::State& state) {
  OpBench b(state);
  if (b.skip(state)) return;
  const int rows = static_cast<int>(state.range(0)), d = 784;
  float *logits = b.tensor(int64_t(rows) * d, -5, 5, 7), *x = b.tensor(int64_t(rows) * d, 0, 1, 8),
        *dl = b.tensor(int64_t(rows) * d, 0, 0, 9), *nll = b.tensor(rows, 0, 0, 10);
  b.run(state, (int64_t(rows) * d * 3 + rows) * 4,
        [&] { b.be->bernoulli_nll(logits, x, nll, dl, rows, d, 1.0f / rows); });
}
VAE_OP_BENCH(BM_BernoulliNll, rows)->Args({128, 0})->Args({4096, 0})->Args({128, 1})->Args({4096, 1});

// Gaussian NLL + gradients with a learned per-pixel sigma: reads mean, x [B, D] and log-sigma [D]
// twice (value pass and sigma-gradient pass), writes dmean [B, D], NLL [B], dlog_sigma [D].
void BM_GaussianNll(benchmark::State& state) {
  OpBench b(state);
  if (b.skip(state)) return;
  const int rows = static_cast<int>(state.range(0)), d = 784;
  float *mean = b.tensor(int64_t(rows) * d, 0, 1, 11), *x = b.tensor(int64_t(rows) * d, 0, 1, 12),
        *ls = b.tensor(d, -2, 0, 13), *dm = b.tensor(int64_t(rows) * d, 0, 0, 14), *nll = b.tensor(rows, 0, 0, 15),
        *dls = b.tensor(d, 0, 0, 16);
  b.run(state, (int64_t(rows) * d * 5 + rows + 3 * d) * 4,
        [&] { b.be->gaussian_nll(mean, x, ls, 0.0f, nll, dm, dls, rows, d, 1.0f / rows); });
}
VAE_OP_BENCH(BM_GaussianNll, rows)->Args({128, 0})->Args({4096, 0})->Args({128, 1})->Args({4096, 1});

// ReLU forward + backward over n elements: 8n + 12n bytes.
void BM_Activation(benchmark::State& state) {
  OpBench b(state);
  if (b.skip(state)) return;
  const int64_t n = state.range(0);
  float *x = b.tensor(n, -1, 1, 17), *y = b.tensor(n, 0, 0, 18), *dy = b.tensor(n, -1, 1, 19), *dx = b.tensor(n, 0, 0, 20);
  b.run(state, 20 * n, [&] {
    b.be->activation_forward(vae::math::Act::ReLU, 0.0f, x, y, n);
    b.be->activation_backward(vae::math::Act::ReLU, 0.0f, x, dy, dx, n);
  });
}
VAE_OP_BENCH(BM_Activation, n)->Args({128 * 512, 0})->Args({4096 * 512, 0})->Args({128 * 512, 1})->Args({4096 * 512, 1});

// Adam over the default model's flat buffer: reads p, g, m, v, writes p, m, v (28n bytes); with
// clipping (argument clip = 1) g is read once more for the norm first (32n bytes).
void BM_Adam(benchmark::State& state) {
  OpBench b(state);
  if (b.skip(state)) return;
  const int64_t n = state.range(0);
  const bool clip = state.range(2) != 0;
  float *p = b.tensor(n, -0.1f, 0.1f, 21), *g = b.tensor(n, -0.01f, 0.01f, 22), *m = b.tensor(n, 0, 0, 23),
        *v = b.tensor(n, 0, 0, 24), *norm = b.tensor(1, 0, 0, 25);
  vae::AdamArgs a;
  a.clip_norm = clip ? 1.0f : 0.0f;
  b.run(state, n * (clip ? 8 : 7) * 4, [&] {
    b.be->adam_step(p, g, m, v, n, a, nullptr, norm, {});
    ++a.step;
  });
}
BENCHMARK(BM_Adam)
    ->ArgNames({"n", "cuda", "clip"})
    ->Args({1091920, 0, 1})->Args({1091920, 1, 0})->Args({1091920, 1, 1})
    ->UseRealTime();

// Gather + binarise a batch from the uint8 data set: reads D bytes + an index per row, writes 4D.
void BM_GatherPixels(benchmark::State& state) {
  OpBench b(state);
  if (b.skip(state)) return;
  const int rows = static_cast<int>(state.range(0)), d = 784;
  std::vector<uint8_t> images(size_t(60000) * d);
  for (size_t i = 0; i < images.size(); ++i) images[i] = static_cast<uint8_t>(i * 131);
  std::vector<int32_t> index(rows);
  for (int r = 0; r < rows; ++r) index[r] = (r * 7919) % 60000;
  const auto img = vae::DeviceArray<uint8_t>::mirror(images, b.device);
  const auto idx = vae::DeviceArray<int32_t>::mirror(index, b.device);
  float* x = b.tensor(int64_t(rows) * d, 0, 0, 26);
  uint64_t step = 0;
  b.run(state, int64_t(rows) * (d * 5 + 4), [&] {
    b.be->gather_pixels(img.data(), idx.data(), rows, d, true, 3, vae::kStreamBinarize, step++, nullptr, x);
  });
}
VAE_OP_BENCH(BM_GatherPixels, rows)->Args({128, 0})->Args({4096, 0})->Args({128, 1})->Args({4096, 1});

// Importance sampling for the IWAE bound, k = 64 per image, plus the streaming log-sum-exp:
// writes z [B*k, L] and log p(z) - log q(z|x) [B*k], reads those weights and the NLL [B*k].
void BM_ImportanceWeights(benchmark::State& state) {
  OpBench b(state);
  if (b.skip(state)) return;
  const int rows = static_cast<int>(state.range(0)), k = 64, latent = 32;
  float *h = b.tensor(int64_t(rows) * 2 * latent, -1, 1, 27), *z = b.tensor(int64_t(rows) * k * latent, 0, 0, 28),
        *lpq = b.tensor(int64_t(rows) * k, 0, 0, 29), *nll = b.tensor(int64_t(rows) * k, 100, 300, 30),
        *mx = b.tensor(rows, -1e30f, -1e30f, 31), *sm = b.tensor(rows, 0, 0, 32);
  b.run(state, int64_t(rows) * k * (4 * latent + 4 + 8) + int64_t(rows) * 8 * latent, [&] {
    b.be->latent_importance_sample(h, z, lpq, rows, k, latent, 5, 0, 0);
    b.be->logsumexp_accumulate(lpq, nll, rows, k, mx, sm);
  });
}
VAE_OP_BENCH(BM_ImportanceWeights, rows)->Args({128, 0})->Args({128, 1});

// The loss from per-sample terms and its device-side epoch sum: reads 8 bytes per row.
void BM_LossReduce(benchmark::State& state) {
  OpBench b(state);
  if (b.skip(state)) return;
  const int rows = static_cast<int>(state.range(0));
  float *nll = b.tensor(rows, 100, 300, 33), *kl = b.tensor(rows, 0, 30, 34), *out = b.tensor(3, 0, 0, 35),
        *sums = b.tensor(3, 0, 0, 36);
  b.run(state, int64_t(rows) * 8 + 24, [&] {
    b.be->loss_reduce(nll, kl, rows, 1.0f, nullptr, out);
    b.be->accumulate_scaled(out, 3, float(rows), sums);
  });
}
VAE_OP_BENCH(BM_LossReduce, rows)->Args({128, 0})->Args({4096, 0})->Args({128, 1})->Args({4096, 1});

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

// The Linear+ReLU pair of the default model's first layer (B x 784 -> 512) and the input gradient
// of the layer above it (512 <- 256) through that ReLU: cuBLASLt RELU_AUX_BIAS + DRELU_BGRAD when
// fused (device 1, fused 1), GEMMs plus our relu_bias / relu_grad_bias_grad kernels when not.
// Counted as FLOPs of the two GEMMs.
void BM_LinearReluPair(benchmark::State& state) {
  OpBench b(state);
  if (b.skip(state)) return;
  const int rows = static_cast<int>(state.range(0)), in = 784, hidden = 512, out = 256;
  b.be->set_options({true, state.range(2) != 0});
  float *x = b.tensor(int64_t(rows) * in, 0, 1, 31), *w = b.tensor(int64_t(hidden) * in, -0.05f, 0.05f, 32),
        *bias = b.tensor(hidden, -0.1f, 0.1f, 33), *y = b.tensor(int64_t(rows) * hidden, 0, 0, 34),
        *w2 = b.tensor(int64_t(out) * hidden, -0.05f, 0.05f, 35), *dy = b.tensor(int64_t(rows) * out, -1, 1, 36),
        *dpre = b.tensor(int64_t(rows) * hidden, 0, 0, 37), *dbias = b.tensor(hidden, 0, 0, 38);
  const size_t mask_bytes = b.be->relu_mask_bytes(rows, hidden);
  float* mask = mask_bytes ? b.tensor(static_cast<int64_t>((mask_bytes + 3) / 4), 0, 0, 39) : nullptr;
  bool wrote = false;
  b.run(state, 0, [&] {
    wrote = b.be->linear_relu_forward(x, w, bias, y, mask, rows, in, hidden);
    b.be->linear_relu_input_backward(w2, dy, y, wrote ? mask : nullptr, dpre, dbias, rows, hidden, out);
  });
  state.counters["mask"] = wrote ? 1 : 0;
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * rows * (double(in) * hidden + double(hidden) * out) * kRepeat * state.iterations() / 1e9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_LinearReluPair)
    ->ArgNames({"rows", "cuda", "fused"})
    ->Args({128, 0, 1})->Args({128, 1, 1})->Args({128, 1, 0})->Args({4096, 1, 1})->Args({4096, 1, 0})
    ->UseRealTime();

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
  float* ws = b.tensor(static_cast<int64_t>((ws_bytes + 3) / 4 + 1), 0, 0, 7);
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

BENCHMARK_MAIN();
