// CUDA against the CPU reference, every Backend operation (STYLE.md items 3-6).
//
// Each case draws fresh random inputs, runs the operation on both backends, poisons the CUDA
// outputs with NaN first (an unwritten element fails), and compares element-wise against
// atol + rtol*|cpu|, printing the worst element as a fraction of its bound. Sizes include 1, primes
// and non-multiples of 4. GEMMs run in strict FP32 (TF32 has its own looser case), through both the
// fused-epilogue and the unfused path. On a machine without a GPU every test here skips.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <deque>
#include <functional>
#include <iostream>
#include <limits>

#include "backend/backend.hpp"
#include "backend/device_array.hpp"
#include "model/model_impl.hpp"
#include "philox.cuh"
#include "test_util.hpp"
#include "vae/vae.hpp"

namespace vae {
namespace {

// Device buffers for one run of an operation; outputs are poisoned and read back in order.
class Arena {
 public:
  explicit Arena(Device d) : device_(d) {}
  float* in(const std::vector<float>& v) {
    keep_.push_back(Tensor::from_host(v, {static_cast<int64_t>(v.size())}, device_));
    return keep_.back().data();
  }
  // An output buffer filled with NaN, or with `init` when the operation reads it too.
  float* out(size_t n, const std::vector<float>* init = nullptr) {
    Tensor t({static_cast<int64_t>(std::max<size_t>(n, 1))}, device_);
    if (init) t.copy_from_host(init->data(), static_cast<int64_t>(init->size()));
    else t.fill(std::numeric_limits<float>::quiet_NaN());
    outs_.push_back(t.view(0, {static_cast<int64_t>(n)}));
    keep_.push_back(t);
    return t.data();
  }
  template <class T>
  const T* array(const std::vector<T>& host) {
    auto& kept = std::get<std::deque<std::vector<T>>>(hosts_);
    kept.push_back(host);  // the CPU mirror is a view: keep its vector alive
    auto& arrays = std::get<std::deque<DeviceArray<T>>>(arrays_);
    arrays.push_back(DeviceArray<T>::mirror(kept.back(), device_));
    return arrays.back().data();
  }
  std::vector<std::vector<float>> results() const {
    std::vector<std::vector<float>> r;
    for (const auto& t : outs_) r.push_back(t.to_host());
    return r;
  }

 private:
  Device device_;
  std::deque<Tensor> keep_;
  std::vector<Tensor> outs_;
  std::tuple<std::deque<std::vector<uint8_t>>, std::deque<std::vector<int32_t>>> hosts_;
  std::tuple<std::deque<DeviceArray<uint8_t>>, std::deque<DeviceArray<int32_t>>> arrays_;
};

struct Bound {
  double atol, rtol;
};

// Runs op on both backends and compares every output with its bound.
// `other` is CUDA except in the harness's own self-test.
void compare(const std::string& name, const std::function<void(Backend&, Arena&)>& op, std::vector<Bound> bounds,
             BackendOptions options = {false, true}, Device other = Device::CUDA) {
  auto cpu = make_backend(Device::CPU);
  auto gpu = make_backend(other);
  gpu->set_options(options);
  Arena a_cpu(Device::CPU), a_gpu(other);
  op(*cpu, a_cpu);
  op(*gpu, a_gpu);
  gpu->synchronize();
  const auto want = a_cpu.results(), got = a_gpu.results();
  ASSERT_EQ(want.size(), got.size());
  ASSERT_EQ(bounds.size(), want.size()) << name << ": one bound per output";
  for (size_t o = 0; o < want.size(); ++o) {
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < want[o].size(); ++i) {
      const double bound = bounds[o].atol + bounds[o].rtol * std::abs(double(want[o][i]));
      const double err = std::abs(double(got[o][i]) - double(want[o][i]));
      const double frac = std::isnan(got[o][i]) != std::isnan(want[o][i]) ? INFINITY : (std::isnan(err) ? 0 : err / bound);
      if (frac > worst) worst = frac, at = i;
    }
    std::cout << "[parity] " << name << " output " << o << ": worst element " << at << " at " << worst
              << " of its bound (atol " << bounds[o].atol << ", rtol " << bounds[o].rtol << ")\n";
    EXPECT_LE(worst, 1.0) << name << " output " << o << " element " << at << ": cuda " << got[o][at] << " cpu "
                          << want[o][at];
  }
}

std::vector<float> rnd(size_t n, uint64_t seed, double lo = -1, double hi = 1) { return test::random_vector<float>(n, seed, lo, hi); }

// The harness itself, CPU against CPU (runs everywhere): an element the second run leaves unwritten
// stays NaN and fails; a value off by more than its bound fails; an honest run passes.
TEST(ParityHarness, CatchesUnwrittenAndWrongOutputs) {
  const auto x = rnd(33, 40, -2, 2);
  compare("harness honest", [&](Backend& be, Arena& a) { be.sigmoid(a.in(x), a.out(33), 33); }, {{0, 0}}, {}, Device::CPU);
  int calls = 0;
  EXPECT_NONFATAL_FAILURE(compare("harness unwritten", [&](Backend& be, Arena& a) {
    be.sigmoid(a.in(x), a.out(33), ++calls == 1 ? 33 : 32);  // the second run skips the last element
  }, {{1, 1}}, {}, Device::CPU), "element 32");
  calls = 0;
  EXPECT_NONFATAL_FAILURE(compare("harness wrong", [&](Backend& be, Arena& a) {
    be.fill(a.out(5), 5, ++calls == 1 ? 1.0f : 1.001f);
  }, {{1e-4, 0}}, {}, Device::CPU), "output 0");
}

TEST(CudaParity, LinearForwardBackward) {
  SKIP_WITHOUT_GPU();
  struct Shape { int rows, in, out; };
  for (const Shape s : {Shape{1, 1, 1}, Shape{7, 5, 3}, Shape{128, 784, 512}, Shape{257, 33, 65}, Shape{3, 1031, 17}}) {
    for (bool fused : {true, false}) {
      const auto x = rnd(size_t(s.rows) * s.in, 1), w = rnd(size_t(s.out) * s.in, 2), b = rnd(s.out, 3),
                 dy = rnd(size_t(s.rows) * s.out, 4);
      // FP32 with a different summation order: error grows like sqrt(k) * eps * |terms|.
      const double tol_f = 2e-6 * std::sqrt(double(s.in)), tol_b = 2e-6 * std::sqrt(double(std::max(s.rows, s.out)));
      const std::string name = "linear " + std::to_string(s.rows) + "x" + std::to_string(s.in) + "x" +
                               std::to_string(s.out) + (fused ? " fused" : " unfused");
      compare(name + " forward", [&](Backend& be, Arena& a) {
        be.linear_forward(a.in(x), a.in(w), a.in(b), a.out(size_t(s.rows) * s.out), s.rows, s.in, s.out);
      }, {{tol_f, 1e-5}}, {false, fused});
      compare(name + " backward", [&](Backend& be, Arena& a) {
        float* dx = a.out(size_t(s.rows) * s.in);
        float* dw = a.out(size_t(s.out) * s.in);
        float* db = a.out(s.out);
        be.linear_backward(a.in(x), a.in(w), a.in(dy), dx, dw, db, s.rows, s.in, s.out);
      }, {{tol_b, 1e-5}, {2e-6 * std::sqrt(double(s.rows)), 1e-5}, {2e-6 * std::sqrt(double(s.rows)), 1e-5}}, {false, fused});
    }
  }
  // TF32: 10-bit mantissa products, so a relative bound near 1e-3 times sqrt(k).
  const auto x = rnd(128 * 784, 5), w = rnd(512 * 784, 6), b = rnd(512, 7);
  compare("linear 128x784x512 tf32 forward", [&](Backend& be, Arena& a) {
    be.linear_forward(a.in(x), a.in(w), a.in(b), a.out(128 * 512), 128, 784, 512);
  }, {{2e-3 * std::sqrt(784.0), 1e-2}}, {true, true});
}

// The fused Linear+ReLU pair: RELU_AUX_BIAS forward and DRELU_BGRAD backward (mask), RELU_BIAS with
// our relu_grad_bias_grad (no mask), and the unfused path; hidden widths 1, 3, 129 and 200 put the
// mask's 128-bit column padding to work.
TEST(CudaParity, LinearReluPair) {
  SKIP_WITHOUT_GPU();
  struct Shape { int rows, in, hidden, out; };
  enum class Mode { FusedWithMask, FusedNoMask, Unfused };
  for (const Shape s : {Shape{1, 1, 1, 1}, Shape{7, 5, 3, 2}, Shape{128, 784, 512, 256}, Shape{257, 33, 129, 65},
                        Shape{3, 1031, 200, 17}}) {
    for (Mode mode : {Mode::FusedWithMask, Mode::FusedNoMask, Mode::Unfused}) {
      // Exact pre-activations at least 1/32 from zero (see test::quarters): both backends see the
      // same ReLU pattern, so cuBLASLt's bit-mask must encode exactly the CPU's y > 0.
      const auto x = test::quarters<float>(size_t(s.rows) * s.in, 41);
      const auto w = test::quarters<float>(size_t(s.hidden) * s.in, 42);
      const auto b = test::odd_32nds<float>(s.hidden, 43);
      const auto w2 = rnd(size_t(s.out) * s.hidden, 44), dy = rnd(size_t(s.rows) * s.out, 45);
      const std::string name = "linear+relu " + std::to_string(s.rows) + "x" + std::to_string(s.in) + "x" +
                               std::to_string(s.hidden) + "x" + std::to_string(s.out) +
                               (mode == Mode::FusedWithMask ? " fused+mask" : mode == Mode::FusedNoMask ? " fused" : " unfused");
      compare(name, [&](Backend& be, Arena& a) {
        float* y = a.out(size_t(s.rows) * s.hidden);
        const size_t mask_bytes = mode == Mode::FusedWithMask ? be.relu_mask_bytes(s.rows, s.hidden) : 0;
        // An input buffer: the mask is not compared (its layout is cuBLASLt's), only what it steers.
        void* mask = mask_bytes ? static_cast<void*>(a.in(std::vector<float>((mask_bytes + 3) / 4, 0.0f))) : nullptr;
        const bool wrote = be.linear_relu_forward(a.in(x), a.in(w), a.in(b), y, mask, s.rows, s.in, s.hidden);
        if (be.device() == Device::CUDA && mode == Mode::FusedWithMask)
          std::cout << "[parity] " << name << ": cuBLASLt " << (wrote ? "wrote" : "could not write") << " the ReLU mask\n";
        float* dpre = a.out(size_t(s.rows) * s.hidden);
        float* dbias = a.out(s.hidden);
        be.linear_relu_input_backward(a.in(w2), a.in(dy), y, wrote ? mask : nullptr, dpre, dbias, s.rows, s.hidden,
                                      s.out);
      }, {{0, 0}, {2e-6 * std::sqrt(double(s.out)), 1e-5}, {2e-6 * std::sqrt(double(s.rows) * s.out), 1e-5}},
         {false, mode != Mode::Unfused});
    }
  }
}

TEST(CudaParity, Activations) {
  SKIP_WITHOUT_GPU();
  for (math::Act act : {math::Act::ReLU, math::Act::LeakyReLU, math::Act::Tanh, math::Act::SiLU})
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{4099}, int64_t{100003}}) {
      const auto x = rnd(n, 8, -6, 6), dy = rnd(n, 9);
      const std::string name = "activation " + std::to_string(int(act)) + " n=" + std::to_string(n);
      compare(name, [&](Backend& be, Arena& a) {
        const float* xi = a.in(x);
        be.activation_forward(act, 0.01f, xi, a.out(n), n);
        be.activation_backward(act, 0.01f, xi, a.in(dy), a.out(n), n);
      }, {{1e-6, 4e-6}, {1e-6, 4e-6}});
    }
}

TEST(CudaParity, LatentSampleKl) {
  SKIP_WITHOUT_GPU();
  for (int rows : {1, 7, 128, 257})
    for (int latent : {1, 3, 32, 33})
      for (float eps_scale : {1.0f, 0.0f}) {
        const auto h = rnd(size_t(rows) * 2 * latent, 10, -3, 3), dz = rnd(size_t(rows) * latent, 11);
        const LatentArgs args{rows, latent, 0x1234abcdULL, 77, 5, eps_scale};
        const std::string name = "latent_sample_kl " + std::to_string(rows) + "x" + std::to_string(latent) +
                                 " eps_scale " + std::to_string(eps_scale);
        compare(name, [&](Backend& be, Arena& a) {
          const float* hi = a.in(h);
          be.latent_sample_kl_forward(args, hi, a.out(size_t(rows) * latent), a.out(rows), a.out(latent));
          be.latent_sample_kl_backward(args, hi, a.in(dz), 0.3f, a.out(size_t(rows) * 2 * latent));
        }, {{1e-5, 1e-5}, {1e-5 * latent, 1e-5}, {1e-5 * rows, 1e-5}, {1e-5, 1e-5}});
      }
}

TEST(CudaParity, Likelihoods) {
  SKIP_WITHOUT_GPU();
  for (int rows : {1, 7, 128})
    for (int d : {1, 5, 784, 1031}) {
      auto logits = rnd(size_t(rows) * d, 12, -20, 20);
      logits[0] = 100.0f;
      if (logits.size() > 1) logits[1] = -100.0f;
      auto x = rnd(size_t(rows) * d, 13, 0, 1);
      for (auto& v : x) v = v < 0.4f ? 0.0f : 1.0f;
      const std::string shape = std::to_string(rows) + "x" + std::to_string(d);
      compare("bernoulli_nll " + shape, [&](Backend& be, Arena& a) {
        be.bernoulli_nll(a.in(logits), a.in(x), a.out(rows), a.out(size_t(rows) * d), rows, d, 1.0f / rows);
      }, {{1e-4, 1e-5}, {1e-7, 1e-5}});
      const auto mean = rnd(size_t(rows) * d, 14, -0.5, 1.5), xs = rnd(size_t(rows) * d, 15, 0, 1),
                 raw = rnd(d, 16, -3, 1);
      compare("gaussian_nll fixed " + shape, [&](Backend& be, Arena& a) {
        be.gaussian_nll(a.in(mean), a.in(xs), nullptr, std::log(0.2f), a.out(rows), a.out(size_t(rows) * d), nullptr,
                        rows, d, 1.0f / rows);
      }, {{1e-4, 1e-5}, {1e-7, 1e-5}});
      compare("gaussian_nll learned " + shape, [&](Backend& be, Arena& a) {
        be.gaussian_nll(a.in(mean), a.in(xs), a.in(raw), 0.0f, a.out(rows), a.out(size_t(rows) * d), a.out(d), rows, d,
                        1.0f / rows);
      }, {{1e-3, 1e-5}, {1e-6, 1e-5}, {1e-5, 1e-5}});
    }
}

TEST(CudaParity, LossReduceAndAccumulate) {
  SKIP_WITHOUT_GPU();
  for (int rows : {1, 7, 128, 4099}) {
    const auto nll = rnd(rows, 17, 50, 400), kl = rnd(rows, 18, 0, 30), acc = rnd(3, 19, 0, 1000);
    compare("loss_reduce " + std::to_string(rows), [&](Backend& be, Arena& a) {
      float* out = a.out(3);
      be.loss_reduce(a.in(nll), a.in(kl), rows, 0.7f, nullptr, out);
      be.accumulate_scaled(out, 3, float(rows), a.out(3, &acc));
    }, {{1e-5, 1e-6}, {1e-2, 1e-6}});
  }
}

TEST(CudaParity, AdamSeveralSteps) {
  SKIP_WITHOUT_GPU();
  for (int64_t n : {int64_t{1}, int64_t{17}, int64_t{1091920}})
    for (int variant = 0; variant < 3; ++variant) {
      const auto p0 = rnd(n, 20), m0 = std::vector<float>(n, 0.0f);
      compare("adam n=" + std::to_string(n) + " variant " + std::to_string(variant), [&](Backend& be, Arena& a) {
        float* p = a.out(n, &p0);
        float* m = a.out(n, &m0);
        float* v = a.out(n, &m0);
        float* norm = a.out(1);
        for (int step = 1; step <= 5; ++step) {
          const auto g = rnd(n, 100 + step, -2, 2);
          AdamArgs args;
          args.step = step;
          args.weight_decay = variant == 0 ? 0.0f : 0.01f;
          args.decoupled = variant == 2;
          args.clip_norm = variant == 1 ? 0.5f : 0.0f;
          be.adam_step(p, a.in(g), m, v, n, args, nullptr, norm, {});
        }
      }, {{1e-6, 1e-5}, {1e-7, 1e-5}, {1e-9, 1e-5}, {1e-6, 1e-6}});
    }
  // The guarded form (every training step): the two-launch path on CUDA. Steps 3 and 5 carry a
  // non-finite loss and a non-finite gradient; both must be skipped on both backends and counted.
  for (int64_t n : {int64_t{1}, int64_t{17}, int64_t{1091920}}) {
    const auto p0 = rnd(n, 30), m0 = std::vector<float>(n, 0.0f), zero = std::vector<float>(1, 0.0f);
    compare("guarded adam n=" + std::to_string(n), [&](Backend& be, Arena& a) {
      float* p = a.out(n, &p0);
      float* m = a.out(n, &m0);
      float* v = a.out(n, &m0);
      float* norm = a.out(1);
      float* skipped = a.out(1, &zero);
      for (int step = 1; step <= 5; ++step) {
        auto g = rnd(n, 200 + step, -2, 2);
        if (step == 5) g[n / 2] = INFINITY;
        const std::vector<float> loss{step == 3 ? NAN : 1.0f};
        AdamArgs args;
        args.step = step;
        be.adam_step(p, a.in(g), m, v, n, args, nullptr, norm, StepGuard{a.in(loss), skipped});
      }
    }, {{1e-6, 1e-5}, {1e-7, 1e-5}, {1e-9, 1e-5}, {0, 0}, {0, 0}});
  }
}

TEST(CudaParity, GatherPixelsBitExact) {
  SKIP_WITHOUT_GPU();
  for (int d : {7, 784}) {
    std::vector<uint8_t> images(size_t(50) * d);
    for (size_t i = 0; i < images.size(); ++i) images[i] = static_cast<uint8_t>((i * 131) % 256);
    const std::vector<int32_t> index{49, 0, 3, 3, 17, 42, 8};
    for (bool binarize : {false, true})
      compare("gather_pixels d=" + std::to_string(d) + (binarize ? " binarized" : " grey"), [&](Backend& be, Arena& a) {
        be.gather_pixels(a.array(images), a.array(index), 7, d, binarize, 99, kStreamBinarize, 12, nullptr, a.out(size_t(7) * d));
      }, {{0, 0}});
  }
}

TEST(CudaParity, ImportanceSampling) {
  SKIP_WITHOUT_GPU();
  for (int rows : {1, 5})
    for (int k : {1, 7, 64})
      for (int latent : {1, 32, 33}) {
        const auto h = rnd(size_t(rows) * 2 * latent, 21, -2, 2), nll = rnd(size_t(rows) * k, 22, 100, 300);
        const std::vector<float> init_max(rows, -INFINITY), init_sum(rows, 0.0f);
        compare("importance " + std::to_string(rows) + "x" + std::to_string(k) + "x" + std::to_string(latent),
                [&](Backend& be, Arena& a) {
                  float* lpq = a.out(size_t(rows) * k);
                  be.latent_importance_sample(a.in(h), a.out(size_t(rows) * k * latent), lpq, rows, k, latent, 5, 10, 3);
                  float* mx = a.out(rows, &init_max);
                  float* sm = a.out(rows, &init_sum);
                  be.logsumexp_accumulate(lpq, a.in(nll), rows, k, mx, sm);
                  be.logsumexp_accumulate(lpq, a.in(nll), rows, k, mx, sm);  // a second chunk folds in
                },
                {{1e-4, 1e-5}, {1e-5, 1e-5}, {1e-4, 1e-5}, {1e-5 * k, 1e-4}});
      }
}

TEST(CudaParity, Elementwise) {
  SKIP_WITHOUT_GPU();
  for (int64_t n : {int64_t{1}, int64_t{1031}}) {
    const auto x = rnd(n, 23, -30, 30);
    compare("sigmoid/clamp01/fill n=" + std::to_string(n), [&](Backend& be, Arena& a) {
      be.sigmoid(a.in(x), a.out(n), n);
      be.clamp01(a.in(x), a.out(n), n);
      float* f = a.out(n);
      be.fill(f, n, 0.25f);
      float* in_place = a.out(n, &x);  // as decoder outputs become images
      be.sigmoid(in_place, in_place, n);
      float* clamped_in_place = a.out(n, &x);
      be.clamp01(clamped_in_place, clamped_in_place, n);
    }, {{1e-7, 4e-6}, {0, 0}, {0, 0}, {1e-7, 4e-6}, {0, 0}});
  }
  compare("normal_fill 7x33", [&](Backend& be, Arena& a) { be.normal_fill(a.out(7 * 33), 7, 33, 0.7f, 4, kStreamPrior, 2); },
          {{1e-5, 1e-5}});
}

// Asking for more GPU memory than there is: one message with the size asked for and what to do.
TEST(CudaErrors, OutOfMemorySaysHowMuchAndSuggestsASmallerBatch) {
  SKIP_WITHOUT_GPU();
  try {
    Tensor huge({int64_t{1} << 42}, Device::CUDA);  // 16 TiB
    FAIL() << "a 16 TiB allocation succeeded";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("out of GPU memory"), std::string::npos) << what;
    EXPECT_NE(what.find("16777216 MiB"), std::string::npos) << what;
    EXPECT_NE(what.find("--batch"), std::string::npos) << what;
  }
  Tensor fine({1024}, Device::CUDA);  // the failure left the device usable
  fine.fill(2.0f);
  EXPECT_EQ(fine.to_host()[1023], 2.0f);
}

// STYLE.md item 6: the same weights, batch and noise on both backends; the loss terms and every
// gradient after the first step, then ten optimizer steps, then a second GPU run for identical bits.
TEST(CudaGolden, TenStepsAgreeAndRepeatBitExact) {
  SKIP_WITHOUT_GPU();
  ModelConfig cfg;  // the default 784-512-256-(2x32) model
  TrainConfig tc;
  tc.seed = 5;
  const int rows = 64;
  std::vector<float> images(size_t(rows) * cfg.input_dim());
  {
    const auto u = test::random_vector<float>(images.size(), 31, 0, 1);
    for (size_t i = 0; i < images.size(); ++i) images[i] = u[i] < 0.3f ? 1.0f : 0.0f;
  }
  auto run = [&](Device device, std::vector<float>* first_grads, std::vector<float>* losses) {
    Model model(cfg, device);
    model.initialize(11);
    tc.device = device;
    tc.tf32 = false;  // strict FP32 for the comparison (the Trainer applies it)
    Trainer trainer(model, tc);
    for (int s = 0; s < 10; ++s) {
      losses->push_back(static_cast<float>(trainer.step(images, rows)));
      if (s == 0) *first_grads = model.impl().grads.to_host();
    }
    return model.impl().params.to_host();
  };
  std::vector<float> g_cpu, g_gpu, g_gpu2, l_cpu, l_gpu, l_gpu2;
  const auto p_cpu = run(Device::CPU, &g_cpu, &l_cpu);
  const auto p_gpu = run(Device::CUDA, &g_gpu, &l_gpu);
  // Bounds: FP32 with different summation orders through six GEMMs.
  for (int s = 0; s < 10; ++s) EXPECT_NEAR(l_gpu[s], l_cpu[s], 1e-4 * std::abs(l_cpu[s])) << "loss at step " << s + 1;
  test::expect_close(g_gpu, g_cpu, 1e-5, 1e-3, "gradients after step 1");
  // After ten Adam steps a gradient within rounding of zero can take either sign, moving its
  // parameter by up to lr per step; so: 99.9% of parameters within 1e-5, all within 10 * lr.
  size_t far = 0;
  double worst = 0;
  for (size_t i = 0; i < p_cpu.size(); ++i) {
    const double e = std::abs(double(p_gpu[i]) - p_cpu[i]);
    far += e > 1e-5;
    worst = std::max(worst, e);
  }
  std::cout << "[golden] parameters beyond 1e-5 after 10 steps: " << far << " of " << p_cpu.size() << ", worst " << worst
            << "\n";
  EXPECT_LE(far, p_cpu.size() / 1000);
  EXPECT_LE(worst, 10 * tc.lr);
  const auto p_gpu2 = run(Device::CUDA, &g_gpu2, &l_gpu2);
  EXPECT_EQ(std::memcmp(p_gpu.data(), p_gpu2.data(), p_gpu.size() * 4), 0) << "two GPU runs differ";
  EXPECT_EQ(l_gpu, l_gpu2);
}

}  // namespace
}  // namespace vae
