#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "backend/cpu/flush_denormals.hpp"
#include "backend/device_array.hpp"
#include "model/model_impl.hpp"
#include "philox.cuh"
#include "train/schedule.hpp"
#include "vae/error.hpp"
#include "vae/train.hpp"

namespace vae {
namespace {

// Loss sums travel to the host this often (and at the end of each epoch): on a GPU every read is a
// synchronisation, so the step loop must not read each step.
constexpr int64_t kReadLossEvery = 25;

AdamArgs adam_args(const TrainConfig& c, double lr, int64_t step) {
  AdamArgs a;
  a.lr = static_cast<float>(lr);
  a.beta1 = c.adam_beta1;
  a.beta2 = c.adam_beta2;
  a.eps = c.adam_eps;
  a.weight_decay = c.weight_decay;
  a.decoupled = c.optimizer == OptimizerKind::AdamW;
  a.step = step;
  a.clip_norm = c.clip_norm;
  return a;
}

}  // namespace

std::string EpochMetrics::to_json() const {
  nlohmann::json j;
  j["epoch"] = epoch;
  j["train_loss"] = train_loss;
  j["train_recon"] = train_recon;
  j["train_kl"] = train_kl;
  j["beta"] = beta;
  j["lr"] = lr;
  j["grad_norm"] = grad_norm;
  j["test_neg_elbo"] = test.neg_elbo;
  j["test_recon"] = test.recon;
  j["test_kl"] = test.kl;
  j["active_units"] = test.active_units;
  j["kl_per_dim"] = test.kl_per_dim;
  j["seconds"] = seconds;
  j["samples_per_s"] = samples_per_s;
  return j.dump();
}

Trainer::Trainer(Model& model, TrainConfig config) : model_(model), config_(std::move(config)) {
  config_.validate();
  if (config_.device != model_.device())
    throw Error("Trainer: the config asks for device " + to_string(config_.device) + " but the model lives on " +
                to_string(model_.device()));
  model_.set_numerics({config_.tf32, config_.fused_epilogues});
}

void Trainer::ensure_optimizer_state() {
  const int64_t n = model_.impl().params.numel();
  if (adam_m_.numel() == n) return;
  adam_m_ = Tensor::zeros({n}, model_.device());
  adam_v_ = Tensor::zeros({n}, model_.device());
  grad_norm_ = Tensor::zeros({1}, model_.device());
}

double Trainer::step(const std::vector<float>& images, int rows) {
  ModelImpl& m = model_.impl();
  if (rows < 1 || static_cast<int64_t>(images.size()) != static_cast<int64_t>(rows) * m.input_dim())
    throw Error("Trainer::step: expected " + std::to_string(rows) + " rows of " + std::to_string(m.input_dim()) +
                " pixels, got " + std::to_string(images.size()) + " values");
  ensure_optimizer_state();
  const FlushDenormalsScope flush_denormals;
  const Tensor x = Tensor::from_host(images, {rows, m.input_dim()}, m.device);
  m.forward_backward(x.data(), rows, config_.beta, config_.seed, static_cast<uint64_t>(global_step_));
  ++global_step_;
  m.backend->adam_step(m.params.data(), m.grads.data(), adam_m_.data(), adam_v_.data(), m.params.numel(),
                       adam_args(config_, config_.lr, global_step_), nullptr, grad_norm_.data());
  return m.loss.to_host()[0];
}

std::vector<EpochMetrics> Trainer::fit(const Dataset& data, const std::function<void(const StepProgress&)>& on_step,
                                       const std::function<void(const EpochMetrics&)>& on_epoch) {
  using clock = std::chrono::steady_clock;
  set_num_threads(config_.threads);
  // For the whole run, on every thread that computes (see flush_denormals.hpp).
  const FlushDenormalsScope flush_denormals;
  ModelImpl& m = model_.impl();
  Backend& be = *m.backend;
  m.check_image_size(data.train, "training");
  m.check_image_size(data.test, "test");
  const int d = m.input_dim();
  const int64_t n = config_.train_limit > 0 ? std::min(config_.train_limit, data.train.count) : data.train.count;
  const int64_t steps_per_epoch = (n + config_.batch - 1) / config_.batch;
  const int64_t total_steps = steps_per_epoch * config_.epochs;
  const bool binarize = m.config.likelihood == Likelihood::Bernoulli;
  const int batch = static_cast<int>(std::min<int64_t>(config_.batch, n));

  // Everything a step touches is allocated here, once: the step itself allocates nothing, and a
  // recorded graph's pointers stay valid for the whole run.
  ensure_optimizer_state();
  m.prepare(batch);
  Tensor x({batch, d}, m.device);
  Tensor loss_sums({3}, m.device);  // sum over the epoch's rows of [loss, recon, kl]
  // The training set lives on the backend's device as uint8 for the whole run (on the CPU that is
  // the data set itself); batches are gathered and binarised there.
  const DeviceArray<uint8_t> pixels = DeviceArray<uint8_t>::mirror(data.train.pixels, m.device);
  DeviceArray<int32_t> perm = DeviceArray<int32_t>::allocate(static_cast<size_t>(n), m.device);
  DeviceArray<StepScalars> table = DeviceArray<StepScalars>::allocate(static_cast<size_t>(steps_per_epoch), m.device);
  DeviceArray<StepScalars> current = DeviceArray<StepScalars>::allocate(1, m.device);
  DeviceArray<int64_t> cursor = DeviceArray<int64_t>::allocate(1, m.device);
  const std::unique_ptr<HostReadback> readback = be.make_readback(3);
  // Constants of the optimizer; the per-step learning rate and bias corrections are in the table.
  const AdamArgs adam_constants = adam_args(config_, config_.lr, 1);

  // One training step, all of it queued on the backend: select this step's scalars, gather and
  // binarise the batch, forward, loss, backward, optimizer, and add the loss to the epoch's sums.
  auto enqueue_step = [&](int rows) {
    be.select_step(table.data(), steps_per_epoch, cursor.data(), current.data());
    be.gather_pixels(pixels.data(), perm.data(), rows, d, binarize, config_.seed, kStreamBinarize, 0, current.data(),
                     x.data());
    m.forward_backward(x.data(), rows, 0.0f, config_.seed, 0, current.data());
    be.adam_step(m.params.data(), m.grads.data(), adam_m_.data(), adam_v_.data(), m.params.numel(), adam_constants,
                 current.data(), grad_norm_.data());
    be.accumulate_scaled(m.loss.data(), 3, static_cast<float>(rows), loss_sums.data());
  };
  // Recorded steps, one per batch size (the last batch of an epoch may be short). A size runs
  // uncaptured the first time, so that cuBLASLt chooses its algorithms outside the capture, and is
  // recorded the second time; the evaluator may grow the model's buffers, which retires them.
  std::map<int, std::unique_ptr<RecordedWork>> recorded;
  std::set<int> warmed;
  uint64_t recorded_generation = m.workspace_generation();
  auto run_step = [&](int rows) {
    if (!config_.cuda_graph || !warmed.count(rows)) {
      enqueue_step(rows);
      warmed.insert(rows);
      return;
    }
    if (recorded_generation != m.workspace_generation()) {
      recorded.clear();
      recorded_generation = m.workspace_generation();
    }
    std::unique_ptr<RecordedWork>& work = recorded[rows];
    if (!work) work = be.capture([&enqueue_step, rows] { enqueue_step(rows); });
    work->replay();
  };

  EvalOptions eval;
  eval.limit = config_.test_limit;
  std::vector<EpochMetrics> history;
  const auto run_start = clock::now();
  int64_t samples_done = 0;
  std::vector<StepScalars> host_table(static_cast<size_t>(steps_per_epoch));
  auto rows_of_step = [&](int64_t s) {
    return static_cast<int>(std::min<int64_t>(config_.batch, n - s * config_.batch));
  };
  for (int epoch = 1; epoch <= config_.epochs; ++epoch) {
    const auto epoch_start = clock::now();
    // The epoch's uploads, before its first step: permutation, step table, cursor.
    const std::vector<int32_t> host_perm = epoch_permutation(n, config_.seed, epoch);
    perm.upload(host_perm.data(), host_perm.size());
    double last_beta = 0, last_lr = 0;
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      const int rows = rows_of_step(s);
      const int64_t global = (epoch - 1) * steps_per_epoch + s;
      last_beta = kl_weight(config_, global, steps_per_epoch);
      last_lr = learning_rate(config_, global, total_steps);
      StepScalars& t = host_table[static_cast<size_t>(s)];
      t.philox_step = static_cast<uint64_t>(global_step_ + s);
      t.row0 = s * config_.batch;
      t.beta = static_cast<float>(last_beta);
      t.kl_grad_weight = t.beta / static_cast<float>(rows);
      t.adam = adam_coefficients(adam_args(config_, last_lr, global_step_ + s + 1));
    }
    table.upload(host_table.data(), host_table.size());
    const int64_t zero = 0;
    cursor.upload(&zero, 1);
    loss_sums.fill(0.0f);

    // Loss sums reach the host asynchronously: every kReadLossEvery steps a copy is queued (unless
    // one is still in flight), and its values are reported once it has landed, without the host
    // waiting for the GPU. The epoch's last step waits for its own copy.
    std::vector<float> sums(3, 0.0f);
    bool pending = false;
    int64_t pending_step = 0, pending_rows = 0, pending_samples = 0;
    auto queue_read = [&](int64_t step, int64_t rows_done) {
      readback->start(loss_sums.data());
      pending = true;
      pending_step = step;
      pending_rows = rows_done;
      pending_samples = samples_done;
    };
    auto report = [&](const float* values) {
      sums.assign(values, values + 3);
      pending = false;
      if (!std::isfinite(sums[0]))
        throw Error("training diverged in epoch " + std::to_string(epoch) + " by step " + std::to_string(pending_step) +
                    " (the loss is not finite); lower --lr or set clip_norm");
      if (!on_step) return;
      const double elapsed = std::chrono::duration<double>(clock::now() - run_start).count();
      StepProgress p;
      p.epoch = epoch;
      p.step = pending_step;
      p.steps_per_epoch = steps_per_epoch;
      p.loss = sums[0] / static_cast<double>(pending_rows);
      p.samples_per_s = static_cast<double>(pending_samples) / std::max(elapsed, 1e-9);
      const int64_t steps_done = (epoch - 1) * steps_per_epoch + pending_step;
      p.eta_s = elapsed / static_cast<double>(steps_done) * static_cast<double>(total_steps - steps_done);
      on_step(p);
    };
    int64_t rows_done = 0;
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      const int rows = rows_of_step(s);
      run_step(rows);
      ++global_step_;
      samples_done += rows;
      rows_done += rows;
      if (s + 1 == steps_per_epoch) {
        if (pending) report(readback->wait());
        queue_read(s + 1, rows_done);
        report(readback->wait());
      } else {
        if (!pending && (s + 1) % kReadLossEvery == 0) queue_read(s + 1, rows_done);
        if (pending && readback->ready()) report(readback->wait());
      }
    }
    const double train_seconds = std::chrono::duration<double>(clock::now() - epoch_start).count();
    EpochMetrics em;
    em.epoch = epoch;
    em.train_loss = sums[0] / static_cast<double>(n);
    em.train_recon = sums[1] / static_cast<double>(n);
    em.train_kl = sums[2] / static_cast<double>(n);
    em.beta = last_beta;
    em.lr = last_lr;
    em.grad_norm = grad_norm_.to_host()[0];
    em.seconds = train_seconds;
    em.samples_per_s = static_cast<double>(n) / train_seconds;
    em.test = evaluate(model_, data.test, eval);
    history.push_back(em);
    if (on_epoch) on_epoch(em);
  }
  return history;
}

}  // namespace vae
