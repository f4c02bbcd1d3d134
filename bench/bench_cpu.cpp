// CPU benchmarks: the whole training step of the default model, and the fused VAE operations
// (reporting bytes/s against the bytes each must move, as stated in the backend's contracts).
#include <benchmark/benchmark.h>

#include <random>

#include "backend/backend.hpp"
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
// gather is a separate, small kernel). Arguments: batch, device (0 = CPU, 1 = CUDA with TF32).
// Each iteration ends with a device synchronisation, so the time is the step's, not the queue's.
void BM_TrainStep(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const vae::Device device = state.range(1) ? vae::Device::CUDA : vae::Device::CPU;
  if (device == vae::Device::CUDA && !vae::cuda_available()) {
    state.SkipWithError("no CUDA GPU");
    return;
  }
  vae::set_num_threads(0);
  vae::Model model(vae::ModelConfig{}, device);
  model.initialize(0);
  vae::ModelImpl& m = model.impl();
  const vae::Tensor x = vae::Tensor::from_host(binary_images(batch, 784, 1), {batch, 784}, device);
  vae::Tensor adam_m = vae::Tensor::zeros({m.params.numel()}, device), adam_v = vae::Tensor::zeros({m.params.numel()}, device);
  vae::Tensor norm({1}, device);
  vae::AdamArgs args;
  auto step = [&] {
    m.forward_backward(x.data(), batch, 1.0f, 0, static_cast<uint64_t>(args.step));
    m.backend->adam_step(m.params.data(), m.grads.data(), adam_m.data(), adam_v.data(), m.params.numel(), args, norm.data());
    ++args.step;
    m.backend->synchronize();
  };
  for (int i = 0; i < 3; ++i) step();  // warm-up: allocation and GEMM plans happen here
  for (auto _ : state) step();
  state.SetItemsProcessed(state.iterations() * batch);
  // Forward 2*P*B FLOPs, backward about twice that.
  state.counters["GFLOP/s"] = benchmark::Counter(6.0 * model.parameter_count() * batch * state.iterations() / 1e9,
                                                 benchmark::Counter::kIsRate);
}
BENCHMARK(BM_TrainStep)
    ->ArgNames({"batch", "cuda"})
    ->Args({128, 0})->Args({1024, 0})->Args({128, 1})->Args({4096, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// latent_sample_kl forward: reads h [B, 2L], writes z [B, L] and KL per sample [B].
void BM_LatentSampleKl(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0)), latent = 32;
  auto be = vae::make_cpu_backend();
  std::vector<float> h(static_cast<size_t>(rows) * 2 * latent, 0.1f), z(static_cast<size_t>(rows) * latent), kl(rows), kd(latent);
  const vae::LatentArgs a{rows, latent, 1, 2, 0, 1.0f};
  for (auto _ : state) be->latent_sample_kl_forward(a, h.data(), z.data(), kl.data(), kd.data());
  state.SetBytesProcessed(state.iterations() * int64_t(rows) * (3 * latent + 1) * 4);
}
BENCHMARK(BM_LatentSampleKl)->Arg(128)->Arg(4096)->UseRealTime();

// Bernoulli NLL + gradient: reads logits and x [B, D], writes dlogits [B, D] and NLL [B].
void BM_BernoulliNll(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0)), d = 784;
  auto be = vae::make_cpu_backend();
  const auto x = binary_images(rows, d, 2);
  std::vector<float> logits(x.size(), 0.3f), dl(x.size()), nll(rows);
  for (auto _ : state) be->bernoulli_nll(logits.data(), x.data(), nll.data(), dl.data(), rows, d, 1.0f / rows);
  state.SetBytesProcessed(state.iterations() * (int64_t(rows) * d * 3 + rows) * 4);
}
BENCHMARK(BM_BernoulliNll)->Arg(128)->Arg(4096)->UseRealTime();

// Adam over the default model's flat buffer: reads p, g, m, v and writes p, m, v.
void BM_Adam(benchmark::State& state) {
  const int64_t n = state.range(0);
  auto be = vae::make_cpu_backend();
  std::vector<float> p(n, 0.1f), g(n, 0.01f), m(n, 0.0f), v(n, 0.0f);
  vae::AdamArgs a;
  float norm = 0;
  for (auto _ : state) {
    be->adam_step(p.data(), g.data(), m.data(), v.data(), n, a, &norm);
    ++a.step;
  }
  state.SetBytesProcessed(state.iterations() * n * 8 * 4);
}
BENCHMARK(BM_Adam)->Arg(1091920)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
