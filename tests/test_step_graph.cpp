// The training step as Trainer::fit runs it: the per-step scalars (learning rate, bias corrections,
// KL weight, Philox step, batch offset) are read from a table in the backend's memory, and each
// batch size's step is recorded once and replayed (a CUDA graph on CUDA). Checked bit for bit
// against a step-by-step reference that passes every scalar by value, and the recorded run against
// the unrecorded one. The CPU case always runs; the CUDA case needs a GPU and skips without one.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.hpp"
#include "backend/device_array.hpp"
#include "elementwise.cuh"
#include "gather_pixels.cuh"
#include "latent_sample_kl.cuh"
#include "model/model_impl.hpp"
#include "model_step.hpp"
#include "philox.cuh"
#include "test_util.hpp"
#include "train/schedule.hpp"
#include "vae/vae.hpp"

namespace vae {
namespace {

StepScalars record(uint64_t philox_step, int64_t row0, float beta) {
  StepScalars s;
  s.philox_step = philox_step;
  s.row0 = row0;
  s.beta = beta;
  s.kl_grad_weight = beta / 7.0f;
  AdamArgs a;
  a.lr = 1e-3f * beta;
  a.step = static_cast<int64_t>(philox_step) + 1;
  s.adam = adam_coefficients(a);
  return s;
}

void expect_select_step_walks_the_table(Device device) {
  auto be = make_backend(device);
  const std::vector<StepScalars> host = {record(4, 0, 0.25f), record(5, 7, 0.5f), record(6, 14, 1.0f)};
  auto table = DeviceArray<StepScalars>::allocate(host.size(), device);
  table.upload(host.data(), host.size());
  auto cursor = DeviceArray<int64_t>::allocate(1, device);
  auto current = DeviceArray<StepScalars>::allocate(1, device);
  const int64_t zero = 0;
  cursor.upload(&zero, 1);
  for (size_t i = 0; i < host.size(); ++i) {
    be->select_step(table.data(), static_cast<int64_t>(host.size()), cursor.data(), current.data());
    // Read the record and the cursor back (Tensor holds floats only, so copy the bytes directly).
    StepScalars got;
    int64_t at = 0;
    if (device == Device::CPU) {
      got = *current.data();
      at = *cursor.data();
    } else {
      be->synchronize();
      cuda::copy_device_to_host(&got, current.data(), sizeof got);
      cuda::copy_device_to_host(&at, cursor.data(), sizeof at);
    }
    EXPECT_EQ(std::memcmp(&got, &host[i], sizeof got), 0) << "record " << i << " on " << to_string(device);
    EXPECT_EQ(at, static_cast<int64_t>(i + 1));
  }
}

TEST(StepTable, SelectStepWalksTheTableOnTheCpu) {
  expect_select_step_walks_the_table(Device::CPU);
  // Past the end is the caller's bug: an error, not a read beyond the table.
  auto be = make_backend(Device::CPU);
  StepScalars table[2] = {record(0, 0, 1.0f), record(1, 7, 1.0f)};
  int64_t cursor = 2;
  StepScalars current;
  EXPECT_THROW(be->select_step(table, 2, &cursor, &current), Error);
}

TEST(StepTable, SelectStepWalksTheTableOnCuda) {
  SKIP_WITHOUT_GPU();
  expect_select_step_walks_the_table(Device::CUDA);
}

TEST(StepTable, PerStepValuesReplaceTheByValueOnes) {
  // An op that reads the step's noise address or the KL term's weight from a record gives the same
  // bits as when handed the same values as constants (evaluation's and the tests' form).
  auto be = make_backend(Device::CPU);
  const int rows = 5, latent = 6, d = 9;
  const StepScalars s = record(41, 3, 0.6f);
  const auto h = test::random_vector<float>(size_t(rows) * 2 * latent, 1);
  const auto dz = test::random_vector<float>(size_t(rows) * latent, 2);
  std::vector<float> z1(size_t(rows) * latent), z2(z1.size()), kl1(rows), kl2(rows), kd1(latent), kd2(latent);
  std::vector<float> dh1(h.size()), dh2(h.size());
  LatentArgs by_value{rows, latent, 99, s.philox_step, 0, 1.0f, nullptr};
  LatentArgs from_table = by_value;
  from_table.step = 12345;  // ignored: the record's step is read
  from_table.per_step = &s;
  ops::latent_sample_kl_forward(*be, by_value, h.data(), z1.data(), kl1.data(), kd1.data());
  ops::latent_sample_kl_forward(*be, from_table, h.data(), z2.data(), kl2.data(), kd2.data());
  EXPECT_EQ(z1, z2);
  EXPECT_EQ(kl1, kl2);
  ops::latent_sample_kl_backward(*be, by_value, h.data(), dz.data(), ops::GradWeight<float>{s.kl_grad_weight}, dh1.data());
  ops::latent_sample_kl_backward(*be, from_table, h.data(), dz.data(), ops::GradWeight<float>{-1.0f, &s}, dh2.data());
  EXPECT_EQ(dh1, dh2);

  // The loss's beta is the record's (there is no other way to give it).
  float out[3];
  be->loss_reduce(kl1.data(), kd1.data(), rows, &s, out);
  double sum_a = 0, sum_b = 0;
  for (int r = 0; r < rows; ++r) sum_a += kl1[r], sum_b += kd1[r];
  EXPECT_EQ(out[0], static_cast<float>((sum_a + double(s.beta) * sum_b) / rows));
  EXPECT_EQ(out[1], static_cast<float>(sum_a / rows));

  std::vector<uint8_t> images(size_t(20) * d);
  for (size_t i = 0; i < images.size(); ++i) images[i] = static_cast<uint8_t>(i * 37 % 256);
  const std::vector<int32_t> perm = {19, 4, 7, 0, 11, 3, 8, 15, 2, 1};
  std::vector<float> x1(size_t(rows) * d), x2(x1.size());
  ops::gather_pixels(*be, images.data(), perm.data() + s.row0, rows, d, true, 5, kStreamBinarize, s.philox_step, nullptr,
                    x1.data());
  ops::gather_pixels(*be, images.data(), perm.data(), rows, d, true, 5, kStreamBinarize, 0, &s, x2.data());
  EXPECT_EQ(x1, x2);
}

// A recorded step may not allocate, copy between host and device or wait for the device: the
// guard refuses each (on the CPU when the recording replays, on CUDA when it is captured), and the
// backend stays usable afterwards.
void expect_recording_refuses_host_work(Device device) {
  auto be = make_backend(device);
  Tensor t({4}, device);
  const std::vector<float> values(4, 1.0f);
  const std::vector<std::pair<const char*, std::function<void()>>> forbidden = {
      {"allocating a tensor", [&] { Tensor fresh({8}, device); }},
      {"copying a tensor to the host", [&] { (void)t.to_host(); }},
      {"copying host values into a tensor", [&] { t.copy_from_host(values.data(), 4); }},
      {"filling a tensor from the host", [&] { t.fill(0.0f); }},
      {"uploading an array", [&] { auto a = DeviceArray<float>::mirror(values, device); }},
      {"waiting for the device", [&] { be->synchronize(); }},
      {"creating a host readback", [&] { auto r = be->make_readback(1); }},
  };
  for (const auto& [what, work] : forbidden) {
    SCOPED_TRACE(what);
    try {
      std::unique_ptr<RecordedWork> recorded = be->capture([&] {
        ops::fill(*be, t.data(), 4, 2.0f);  // device work is what a recording is for
        work();
      });
      recorded->replay();
      ADD_FAILURE() << what << " inside a recorded step was allowed on " << to_string(device);
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(what), std::string::npos) << message;
      EXPECT_NE(message.find("inside a recorded training step"), std::string::npos) << message;
      EXPECT_NE(message.find("--no-cuda-graph"), std::string::npos) << message;
    }
  }
  // Outside a recording the same calls are fine, and a clean recording replays.
  Tensor fresh({8}, device);
  auto recorded = be->capture([&] { ops::fill(*be, t.data(), 4, 3.0f); });
  recorded->replay();
  be->synchronize();
  EXPECT_EQ(t.to_host(), std::vector<float>(4, 3.0f));
}

TEST(StepGraph, RecordingRefusesAllocationCopiesAndWaitsOnTheCpu) {
  expect_recording_refuses_host_work(Device::CPU);
}

TEST(StepGraph, RecordingRefusesAllocationCopiesAndWaitsOnCuda) {
  SKIP_WITHOUT_GPU();
  expect_recording_refuses_host_work(Device::CUDA);
}

ModelConfig tiny_model() {
  ModelConfig m;
  m.encoder.hidden = {64};
  m.latent = 8;
  return m;
}

// 300 images in batches of 128: steps of 128, 128 and 44 rows, so both batch sizes are recorded.
// Warm-up, a cosine schedule and AdamW make every per-step scalar change every step; clip_norm picks
// Adam's two-launch (clipping) or one-launch form on CUDA. The
// evaluation of 260 test images (in batches of 250) grows the model's buffers after the first epoch,
// which must retire the recorded steps.
TrainConfig awkward_run(Device device, float clip_norm, bool tf32 = false) {
  TrainConfig c;
  c.data_dir = test::data_dir();
  c.epochs = 3;
  c.batch = 128;
  c.train_limit = 300;
  c.test_limit = 260;
  c.threads = 2;
  c.seed = 17;
  c.objective.warmup_epochs = 2;
  c.schedule = LrSchedule::Cosine;
  c.optimizer = OptimizerKind::AdamW;
  c.weight_decay = 0.01f;
  c.clip_norm = clip_norm;
  c.device = device;
  c.tf32 = tf32;  // strict FP32 on CUDA unless asked (the reference runs with the same setting)
  return c;
}

// What fit() computes, one operation at a time with every scalar passed by value.
std::vector<float> reference_run(const TrainConfig& c) {
  Model model(tiny_model(), c.device);
  model.initialize(c.seed);
  ModelImpl& m = model.impl();
  model.set_numerics({c.tf32, c.fused_epilogues});
  const int d = m.input_dim();
  const int64_t n = c.train_limit;
  const int64_t steps_per_epoch = (n + c.batch - 1) / c.batch;
  const int64_t total = steps_per_epoch * c.epochs;
  m.prepare(c.batch);
  Tensor x({c.batch, d}, c.device);
  Tensor adam_m = Tensor::zeros({m.params().numel()}, c.device), adam_v = Tensor::zeros({m.params().numel()}, c.device);
  Tensor norm = Tensor::zeros({1}, c.device);
  const auto pixels = DeviceArray<uint8_t>::mirror(test::fashion_mnist().train.pixels, c.device);
  int64_t step = 0;
  for (int epoch = 1; epoch <= c.epochs; ++epoch) {
    const std::vector<int32_t> host_perm = epoch_permutation(n, c.seed, epoch);
    const auto perm = DeviceArray<int32_t>::mirror(host_perm, c.device);
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      const int64_t first = s * c.batch;
      const int rows = static_cast<int>(std::min<int64_t>(c.batch, n - first));
      const int64_t global = (epoch - 1) * steps_per_epoch + s;
      const float beta = static_cast<float>(kl_weight(c, global, steps_per_epoch));
      ops::gather_pixels(*m.backend, pixels.data(), perm.data() + first, rows, d, true, c.seed, kStreamBinarize,
                               static_cast<uint64_t>(step), nullptr, x.data());
      test::forward_backward_at(m, x.data(), rows, beta, c.seed, static_cast<uint64_t>(step));
      ++step;
      AdamArgs a;
      a.lr = static_cast<float>(learning_rate(c, global, total));
      a.beta1 = c.adam_beta1;
      a.beta2 = c.adam_beta2;
      a.eps = c.adam_eps;
      a.weight_decay = c.weight_decay;
      a.decoupled = true;
      a.step = step;
      a.clip_norm = c.clip_norm;
      StepScalars record;
      record.adam = adam_coefficients(a);
      m.backend->adam_step(m.params().data(), m.grads().data(), adam_m.data(), adam_v.data(), m.params().numel(), a.clip_norm,
                           m.single_step().write(record), norm.data(), {});
    }
  }
  return m.params().to_host();
}

struct FitResult {
  std::vector<float> params;
  std::vector<double> train_loss;
};

FitResult fit_run(TrainConfig c, bool recorded) {
  c.cuda_graph = recorded;
  Model model(tiny_model(), c.device);
  model.initialize(c.seed);
  Trainer trainer(model, c);  // applies c.tf32 and c.fused_epilogues
  FitResult r;
  for (const auto& e : trainer.fit(test::fashion_mnist())) r.train_loss.push_back(e.train_loss);
  r.params = model.impl().params().to_host();
  return r;
}

void expect_fit_matches_reference(Device device, float clip_norm, bool tf32 = false) {
  SCOPED_TRACE("clip_norm " + std::to_string(clip_norm) + (tf32 ? " tf32" : ""));
  const TrainConfig c = awkward_run(device, clip_norm, tf32);
  const std::vector<float> reference = reference_run(c);
  const FitResult plain = fit_run(c, false);
  const FitResult recorded = fit_run(c, true);
  ASSERT_EQ(plain.params.size(), reference.size());
  ASSERT_EQ(recorded.params.size(), reference.size());
  EXPECT_EQ(std::memcmp(plain.params.data(), reference.data(), reference.size() * sizeof(float)), 0)
      << "fit() with per-step scalars from the table differs from the by-value reference on " << to_string(device);
  EXPECT_EQ(std::memcmp(recorded.params.data(), plain.params.data(), reference.size() * sizeof(float)), 0)
      << "the recorded step differs from the unrecorded one on " << to_string(device);
  EXPECT_EQ(recorded.train_loss, plain.train_loss);
}

TEST(StepGraph, FitMatchesTheByValueReferenceOnTheCpu) {
  SKIP_WITHOUT_FASHION_MNIST();
  for (float clip : {20.0f, 0.0f}) expect_fit_matches_reference(Device::CPU, clip);
}

TEST(StepGraph, CudaGraphReplayMatchesUncapturedAndReference) {
  SKIP_WITHOUT_GPU();
  SKIP_WITHOUT_FASHION_MNIST();
  for (float clip : {20.0f, 0.0f}) expect_fit_matches_reference(Device::CUDA, clip);
}

// With TF32 and the fused epilogues, as training runs by default: the recorded step replays the
// same cuBLASLt plans (RELU_AUX_BIAS, DRELU_BGRAD, BGRADB where cuBLASLt takes them) as the
// unrecorded one and the by-value reference, so the bits must still agree on one GPU.
TEST(StepGraph, CudaGraphReplayMatchesUncapturedAndReferenceWithTf32) {
  SKIP_WITHOUT_GPU();
  SKIP_WITHOUT_FASHION_MNIST();
  expect_fit_matches_reference(Device::CUDA, 20.0f, true);
}

}  // namespace
}  // namespace vae
