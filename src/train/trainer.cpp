#include <chrono>
#include <cmath>

#include <nlohmann/json.hpp>

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
  const Tensor x = Tensor::from_host(images, {rows, m.input_dim()}, m.device);
  m.forward_backward(x.data(), rows, config_.beta, config_.seed, static_cast<uint64_t>(global_step_));
  ++global_step_;
  m.backend->adam_step(m.params.data(), m.grads.data(), adam_m_.data(), adam_v_.data(), m.params.numel(),
                       adam_args(config_, config_.lr, global_step_), grad_norm_.data());
  return m.loss.to_host()[0];
}

std::vector<EpochMetrics> Trainer::fit(const Dataset& data, const std::function<void(const StepProgress&)>& on_step,
                                       const std::function<void(const EpochMetrics&)>& on_epoch) {
  using clock = std::chrono::steady_clock;
  set_num_threads(config_.threads);
  ModelImpl& m = model_.impl();
  m.check_image_size(data.train, "training");
  m.check_image_size(data.test, "test");
  const int d = m.input_dim();
  const int64_t n = config_.train_limit > 0 ? std::min(config_.train_limit, data.train.count) : data.train.count;
  const int64_t steps_per_epoch = (n + config_.batch - 1) / config_.batch;
  const int64_t total_steps = steps_per_epoch * config_.epochs;
  const bool binarize = m.config.likelihood == Likelihood::Bernoulli;
  const int batch = static_cast<int>(std::min<int64_t>(config_.batch, n));

  ensure_optimizer_state();
  m.prepare(batch);
  Tensor x({batch, d}, m.device);
  Tensor loss_sums({3}, m.device);  // sum over the epoch's rows of [loss, recon, kl]
  // The training set lives on the backend's device as uint8 for the whole run (on the CPU that is
  // the data set itself); batches are gathered and binarised there.
  const DeviceArray<uint8_t> pixels = DeviceArray<uint8_t>::mirror(data.train.pixels, m.device);

  EvalOptions eval;
  eval.limit = config_.test_limit;
  std::vector<EpochMetrics> history;
  const auto run_start = clock::now();
  int64_t samples_done = 0;
  for (int epoch = 1; epoch <= config_.epochs; ++epoch) {
    const auto epoch_start = clock::now();
    const std::vector<int32_t> host_perm = epoch_permutation(n, config_.seed, epoch);
    const DeviceArray<int32_t> perm = DeviceArray<int32_t>::mirror(host_perm, m.device);  // one upload per epoch
    loss_sums.fill(0.0f);
    std::vector<float> sums(3, 0.0f);
    double last_beta = 0, last_lr = 0;
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      const int64_t first = s * config_.batch;
      const int rows = static_cast<int>(std::min<int64_t>(config_.batch, n - first));
      const int64_t global = (epoch - 1) * steps_per_epoch + s;
      last_beta = kl_weight(config_, global, steps_per_epoch);
      last_lr = learning_rate(config_, global, total_steps);
      m.backend->gather_pixels(pixels.data(), perm.data() + first, rows, d, binarize, config_.seed, kStreamBinarize,
                               static_cast<uint64_t>(global_step_), x.data());
      m.forward_backward(x.data(), rows, static_cast<float>(last_beta), config_.seed,
                         static_cast<uint64_t>(global_step_));
      ++global_step_;
      m.backend->adam_step(m.params.data(), m.grads.data(), adam_m_.data(), adam_v_.data(), m.params.numel(),
                           adam_args(config_, last_lr, global_step_), grad_norm_.data());
      m.backend->accumulate_scaled(m.loss.data(), 3, static_cast<float>(rows), loss_sums.data());
      samples_done += rows;
      const bool last = s + 1 == steps_per_epoch;
      if (!last && (s + 1) % kReadLossEvery != 0) continue;
      sums = loss_sums.to_host();
      if (!std::isfinite(sums[0]))
        throw Error("training diverged in epoch " + std::to_string(epoch) + " by step " + std::to_string(s + 1) +
                    " (the loss is not finite); lower --lr or set clip_norm");
      if (on_step) {
        const double elapsed = std::chrono::duration<double>(clock::now() - run_start).count();
        StepProgress p;
        p.epoch = epoch;
        p.step = s + 1;
        p.steps_per_epoch = steps_per_epoch;
        p.loss = sums[0] / static_cast<double>(first + rows);
        p.samples_per_s = samples_done / std::max(elapsed, 1e-9);
        const int64_t steps_left = total_steps - ((epoch - 1) * steps_per_epoch + s + 1);
        p.eta_s = elapsed / static_cast<double>(total_steps - steps_left) * static_cast<double>(steps_left);
        on_step(p);
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
