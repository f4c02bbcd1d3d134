#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "backend/cpu/flush_denormals.hpp"
#include "backend/device_array.hpp"
#include "condition.cuh"
#include "distributed/device_collectives.hpp"
#include "elementwise.cuh"
#include "gather_pixels.cuh"
#include "model/model_impl.hpp"
#include "model/model_use.hpp"
#include "philox.cuh"
#include "rows.cuh"
#include "train/level_report.hpp"
#include "train/schedule.hpp"
#include "vae/error.hpp"
#include "vae/safetensors.hpp"
#include "vae/train.hpp"

namespace vae {
namespace {

// Loss sums travel to the host this often (and at the end of each epoch): on a GPU every read is a
// synchronisation, so the step loop must not read each step.
constexpr int64_t kReadLossEvery = 25;

// A full batch must give every rank of a data-parallel job at least one row.
void check_batch_covers_ranks(int batch, int ranks) {
  if (ranks > 1 && batch < ranks)
    throw Error("batch " + std::to_string(batch) + " is smaller than the job's " + std::to_string(ranks) +
                " processes: every rank needs at least one image of a full batch; use --batch " + std::to_string(ranks) +
                " or more, or fewer processes");
}

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
  j["skipped_steps"] = skipped_steps;
  j["test_neg_elbo"] = test.neg_elbo;
  j["test_recon"] = test.recon;
  j["test_kl"] = test.kl;
  j["active_units"] = test.active_units;
  if (test.mi_samples > 0) {
    j["mutual_info"] = test.mutual_info;
    j["aggregate_kl"] = test.aggregate_kl;
  }
  if (capacity > 0) j["capacity"] = capacity;
  if (test.has_posterior_flow) j["posterior_flow_logdet"] = test.posterior_flow_logdet;
  if (test.has_prior_flow) j["prior_flow_logdet"] = test.prior_flow_logdet;
  if (validation.count > 0) {
    j["validation_neg_elbo"] = validation.neg_elbo;
    j["validation_recon"] = validation.recon;
    j["validation_kl"] = validation.kl;
    if (validation.k > 0) {  // an importance-weighted objective's bound, which judges the run
      j["validation_iwae_nll"] = validation.iwae_nll;
      j["validation_k"] = validation.k;
    }
  }
  j["kl_per_dim"] = test.kl_per_dim;
  if (!test.level_sizes.empty()) {
    j["kl_per_level"] = test.kl_per_level;
    j["active_units_per_level"] = test.active_units_per_level;
    j["kl_active_units_per_level"] = kl_active_json(test.kl_active_units_per_level);
  }
  j["seconds"] = seconds;
  j["samples_per_s"] = samples_per_s;
  return j.dump();
}

Trainer::Trainer(Model& model, TrainConfig config, ProcessGroup group)
    : model_(model), config_(std::move(config)), group_(group) {
  const ModelUse use(model_, "Trainer");
  config_.validate();
  if (config_.device != model_.device())
    throw Error("Trainer: the config asks for device " + to_string(config_.device) + " but the model lives on " +
                to_string(model_.device()));
  model_.set_numerics({config_.tf32, config_.fused_epilogues});
  model_.impl().set_objective(config_.objective);
  const int ranks = group_.size();
  if (ranks > 1 && (config_.objective.free_bits > 0 || config_.objective.capacity > 0))
    throw Error(std::string("objective.") + (config_.objective.capacity > 0 ? "capacity" : "free_bits") +
                " decides the KL term's weight from the whole batch's KL, which data-parallel training does not "
                "gather within a step; train it in one process (without mpirun), or use beta and warm-up instead");
  check_batch_covers_ranks(config_.batch, ranks);
}

bool Trainer::stopped_early() const {
  return config_.early_stopping > 0 && progress_.epochs_done > 0 &&
         progress_.epochs_done - std::max(progress_.best_epoch, config_.objective.warmup_epochs) >= config_.early_stopping;
}

void Trainer::ensure_optimizer_state() {
  const int64_t n = model_.impl().params().numel();
  if (adam_m_.numel() == n) return;
  adam_m_ = Tensor::zeros({n}, model_.device());
  adam_v_ = Tensor::zeros({n}, model_.device());
  grad_norm_ = Tensor::zeros({1}, model_.device());
}

double Trainer::step(const std::vector<float>& images, int rows, const std::vector<int32_t>& labels) {
  const ModelTraining training(model_, "Trainer::step");
  ModelImpl& m = model_.impl();
  if (rows < 1 || static_cast<int64_t>(images.size()) != static_cast<int64_t>(rows) * m.input_dim())
    throw Error("Trainer::step: expected " + std::to_string(rows) + " rows of " + std::to_string(m.input_dim()) +
                " pixels, got " + std::to_string(images.size()) + " values");
  m.check_labels(&labels, rows, "Trainer::step");
  ensure_optimizer_state();
  const FlushDenormalsScope flush_denormals;
  const Tensor x = Tensor::from_host(images, {rows, m.input_dim()}, m.device);
  const Tensor y = m.config.conditional ? m.labels_on_device(labels) : Tensor();
  const float* yp = m.config.conditional ? y.data() : nullptr;
  if (progress_.global_step == 0) m.initialize_from_data(x.data(), rows, config_.seed, yp);
  // The step's one-entry table: the values fit() would put in its epoch table, without the schedules
  // (beta, the capacity and the learning rate as configured).
  StepScalars s;
  s.philox_step = static_cast<uint64_t>(progress_.global_step);
  s.beta = config_.objective.beta;
  s.kl_grad_weight = s.beta / static_cast<float>(rows);
  s.capacity = config_.objective.capacity;
  s.adam = adam_coefficients(adam_args(config_, config_.lr, progress_.global_step + 1));
  const StepScalars* record = m.single_step().write(s);
  m.forward_backward(x.data(), rows, config_.seed, record, yp);
  ++progress_.global_step;
  m.backend->adam_step(m.params().data(), m.grads().data(), adam_m_.data(), adam_v_.data(), m.params().numel(),
                       config_.clip_norm, record, grad_norm_.data(), {});
  return m.loss().to_host()[0];
}

namespace {

// Rows whose loss reached the epoch sums: a skipped step adds nothing (a short last batch may be
// the skipped one, so this is exact except in that case).
double rows_counted(int64_t rows, double skipped_steps, int64_t batch) {
  return static_cast<double>(rows) - skipped_steps * static_cast<double>(batch);
}

// The divergence rule, applied to each window of steps between two loss reads (about 25 steps).
// A window whose mean loss lies more than 10 * max(|level|, 1) above the run's level (the lowest
// window mean so far) has blown up: for a Bernoulli model near 240 nats that is above ~2600, which a
// healthy run never reaches, while an exploding one passes it within a window or two. A window in
// which at least half of 4 or more steps were skipped (non-finite loss or gradient) is stuck.
class DivergenceWatch {
 public:
  void start_epoch() { last_sums_.assign(4, 0.0), last_steps_ = 0, last_rows_ = 0; }
  // sums: the epoch's [loss, recon, kl, skipped] so far; steps: steps taken in the epoch; rows: rows in them.
  void check(const std::vector<double>& sums, int64_t steps, int64_t rows, int64_t batch, int epoch) {
    const double skipped = sums[3] - last_sums_[3];
    const int64_t window = steps - last_steps_;
    if (!std::isfinite(sums[0]))
      fail(epoch, steps, "the loss sum overflowed to " + std::to_string(sums[0]));
    if (window >= 4 && skipped * 2 >= static_cast<double>(window))
      fail(epoch, steps, std::to_string(static_cast<int64_t>(skipped)) + " of its last " + std::to_string(window) +
                             " steps had a loss or gradient that was not finite and were skipped");
    const double counted = rows_counted(rows - last_rows_, skipped, batch);
    if (counted > 0) {
      const double mean = (sums[0] - last_sums_[0]) / counted;
      if (have_level_ && mean > level_ + 10.0 * std::max(std::fabs(level_), 1.0)) {
        char what[160];
        std::snprintf(what, sizeof what, "its mean loss over the last %lld steps is %.4g, far above its running level %.4g",
                      static_cast<long long>(window), mean, level_);
        fail(epoch, steps, what);
      }
      level_ = have_level_ ? std::min(level_, mean) : mean;
      have_level_ = true;
    }
    last_sums_ = sums;
    last_steps_ = steps;
    last_rows_ = rows;
  }
  [[noreturn]] static void fail(int epoch, int64_t step, const std::string& what) {
    fail(epoch, "by step " + std::to_string(step) + ": " + what);
  }
  // Also for what the host sees after an epoch (a test -ELBO that is not finite).
  [[noreturn]] static void fail(int epoch, const std::string& where_and_what) {
    throw TrainingDiverged("training diverged in epoch " + std::to_string(epoch) + " " + where_and_what +
                           ". The parameters were not saved; the run folder keeps the last good checkpoint (if an "
                           "epoch finished). Try a lower --lr (the default is 1e-3), --clip-norm 1, or --warmup-epochs");
  }

 private:
  std::vector<double> last_sums_ = std::vector<double>(4, 0.0);
  int64_t last_steps_ = 0, last_rows_ = 0;
  double level_ = 0;
  bool have_level_ = false;
};

}  // namespace

std::vector<EpochMetrics> Trainer::fit(const Dataset& data, const std::function<void(const StepProgress&)>& on_step,
                                       const std::function<void(const EpochMetrics&)>& on_epoch,
                                       const std::function<bool()>& should_stop) {
  const ModelTraining training(model_, "train");
  using clock = std::chrono::steady_clock;
  // The ranks of a job on one machine share its cores: with --threads 0 each takes its share.
  const int local_ranks = group_.size() > 1 ? group_.local_size() : 1;
  set_num_threads(config_.threads > 0 || local_ranks == 1
                      ? config_.threads
                      : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local_ranks));
  // For the whole run, on every thread that computes (see flush_denormals.hpp).
  const FlushDenormalsScope flush_denormals;
  stopped_ = false;
  ModelImpl& m = model_.impl();
  Backend& be = *m.backend;
  m.check_image_size(data.train, "training");
  m.check_image_size(data.test, "test");
  const bool validating = data.validation.count > 0;
  if (validating) m.check_image_size(data.validation, "validation");
  if (config_.early_stopping > 0 && !validating)
    throw Error("early_stopping judges the run on a validation set, and the data has none: hold one out with "
                "validation_fraction (--validation-fraction)");
  const int d = m.input_dim();
  const int64_t n = config_.train_limit > 0 ? std::min(config_.train_limit, data.train.count) : data.train.count;
  const int64_t steps_per_epoch = (n + config_.batch - 1) / config_.batch;
  const int64_t total_steps = steps_per_epoch * config_.epochs;
  const bool binarize = m.likelihood_model->binarized_data();
  if (m.config.likelihood == Likelihood::DiscretizedLogistic || m.config.likelihood == Likelihood::MixtureDiscretizedLogistic) {
    // 256 grey levels are what these likelihoods model: on two of them they would learn a spike at
    // each end and report bits per dimension that compare with nothing.
    const bool two_levels = std::all_of(data.train.pixels.begin(), data.train.pixels.begin() + n * d,
                                        [](uint8_t v) { return v == 0 || v == 255; });
    if (two_levels)
      throw Error("the training images are binary (every pixel 0 or 255), but the " + to_string(m.config.likelihood) +
                  " likelihood models 8-bit grey levels; train binary data with --likelihood bernoulli");
  }
  const int batch = static_cast<int>(std::min<int64_t>(config_.batch, n));
  if (progress_.global_step != progress_.epochs_done * steps_per_epoch + progress_.steps_into_epoch)
    throw Error("cannot continue this run: it took " + std::to_string(progress_.global_step) + " steps, which at " +
                std::to_string(steps_per_epoch) + " steps an epoch is not epoch " + std::to_string(progress_.epochs_done) +
                " plus " + std::to_string(progress_.steps_into_epoch) + " steps; resume with the data, --batch and "
                "--train-limit of the run");
  const bool parallel = group_.collective();
  const int ranks = group_.size();
  check_batch_covers_ranks(batch, ranks);  // the batch may be the (smaller) training set
  // This rank's shard of a step's global batch of R rows (ProcessGroup::share): first row and count.
  auto shard = [&](int global_rows) {
    const auto [lo, hi] = group_.share(global_rows);
    return std::pair<int, int>(static_cast<int>(lo), static_cast<int>(hi - lo));
  };

  // Everything a step touches is allocated here, once: the step itself allocates nothing, and a
  // recorded graph's pointers stay valid for the whole run.
  ensure_optimizer_state();
  m.prepare(batch);
  Tensor x({batch, d}, m.device);
  // Sums over the epoch's rows of [loss, recon, kl], and the count of skipped steps.
  Tensor loss_sums({4}, m.device);
  // The training set lives on the backend's device as uint8 for the whole run (on the CPU that is
  // the data set itself); batches are gathered and binarised there.
  const DeviceArray<uint8_t> pixels = DeviceArray<uint8_t>::mirror(data.train.pixels, m.device);
  // A conditional model's labels travel beside the pixels and are gathered with them.
  const bool conditional = m.config.conditional;
  if (conditional) {
    m.check_labels(&data.train.labels, data.train.count, "training set");
    m.check_labels(&data.test.labels, data.test.count, "test set");
    if (validating) m.check_labels(&data.validation.labels, data.validation.count, "validation set");
  }
  const DeviceArray<int32_t> labels =
      conditional ? DeviceArray<int32_t>::mirror(data.train.labels, m.device) : DeviceArray<int32_t>{};
  Tensor y = conditional ? Tensor({batch}, m.device) : Tensor();
  float* const yp = conditional ? y.data() : nullptr;
  DeviceArray<int32_t> perm = DeviceArray<int32_t>::allocate(static_cast<size_t>(n), m.device);
  DeviceArray<StepScalars> table = DeviceArray<StepScalars>::allocate(static_cast<size_t>(steps_per_epoch), m.device);
  DeviceArray<StepScalars> current = DeviceArray<StepScalars>::allocate(1, m.device);
  DeviceArray<int64_t> cursor = DeviceArray<int64_t>::allocate(1, m.device);
  const std::unique_ptr<HostReadback> readback = be.make_readback(4);
  // A fresh run's flows take their ActNorm initialisation from the first `batch` training images
  // (binarised as step 0 would), before any step.
  if (progress_.global_step == 0 && m.latent_block.has_flows()) {
    std::vector<int32_t> first_images(static_cast<size_t>(batch));
    for (int i = 0; i < batch; ++i) first_images[static_cast<size_t>(i)] = i;
    const DeviceArray<int32_t> idx = DeviceArray<int32_t>::mirror(first_images, m.device);
    ops::gather_pixels(be, pixels.data(), idx.data(), batch, d, binarize, config_.seed, kStreamBinarize, 0, nullptr, x.data());
    if (conditional) ops::gather_labels(be, labels.data(), idx.data(), batch, nullptr, yp);
    m.initialize_from_data(x.data(), batch, config_.seed, yp);
  }
  // A job's collectives (made together on every rank: on CUDA the NCCL communicator), then rank 0's
  // parameters on every rank, after any data-dependent initialisation.
  const std::unique_ptr<DeviceCollectives> collectives = parallel ? make_device_collectives(group_, be) : nullptr;
  if (collectives) collectives->broadcast(m.params().data(), m.params().numel(), 0);

  // One training step, all of it queued on the backend: select this step's scalars, gather and
  // binarise the batch, forward, loss, backward, guarded optimizer, and add the loss to the sums.
  // In a job each rank does this for its shard, and the gradient and the loss are summed over the
  // ranks, weighted by each shard's share of the batch, before the optimizer.
  auto enqueue_step = [&](int global_rows) {
    const auto [first_row, rows] = shard(global_rows);
    be.select_step(table.data(), steps_per_epoch, cursor.data(), current.data());
    if (rows > 0) {
      ops::gather_pixels(be, pixels.data(), perm.data(), rows, d, binarize, config_.seed, kStreamBinarize, 0, current.data(),
                       x.data());
      if (conditional) ops::gather_labels(be, labels.data(), static_cast<const int32_t*>(perm.data()), rows, current.data(), yp);
      m.forward_backward(x.data(), rows, config_.seed, current.data(), yp, first_row);
    } else {  // a short last batch with fewer rows than ranks: this rank adds nothing
      ops::fill(be, m.grads().data(), m.grads().numel(), 0.0f);
      ops::fill(be, m.loss().data(), 3, 0.0f);
    }
    if (collectives) {
      if (rows != global_rows) {
        const float share = static_cast<float>(rows) / static_cast<float>(global_rows);
        ops::scale_values(be, m.grads().data(), m.grads().numel(), share);
        ops::scale_values(be, m.loss().data(), 3, share);
      }
      collectives->sum({{m.grads().data(), m.grads().numel()}, {m.loss().data(), 3}});
    }
    // The guard reads m.loss() where it is now: the evaluator may reallocate the workspace between
    // epochs (which also retires the recorded steps, so they are recorded again with this pointer).
    const StepGuard guard{m.loss().data(), loss_sums.data() + 3};
    be.adam_step(m.params().data(), m.grads().data(), adam_m_.data(), adam_v_.data(), m.params().numel(), config_.clip_norm,
                 current.data(), grad_norm_.data(), guard);
    ops::accumulate_scaled(be, m.loss().data(), 3, static_cast<float>(global_rows), loss_sums.data());
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
  if (parallel) eval.group = group_;
  // The validation set, every image of it, judges the run by the bound it trains: the -ELBO, or for
  // the importance-weighted objectives their k-sample bound (no mutual information).
  EvalOptions validation_eval = eval;
  validation_eval.limit = 0;
  validation_eval.mi_samples = 0;
  validation_eval.k = config_.objective.importance_weighted() ? config_.objective.k : 0;
  // Whether to stop after the step that made `steps` steps of the epoch (0: at the epoch's end). A
  // job stops only where every rank asks, at the same step: every kReadLossEvery steps, a vote.
  auto asked_to_stop = [&](int64_t steps) {
    if (ranks == 1) return should_stop && should_stop();
    if (steps % kReadLossEvery != 0) return false;
    return group_.any(should_stop && should_stop());
  };
  // The ranks' parameters must be the same bits (every rank applies the same summed gradient); a
  // difference means a collective or a device went wrong, and training on would mix models.
  auto check_ranks_agree = [&](int epoch) {
    const std::vector<float> p = m.params().to_host();
    uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a over the parameters' bytes
    for (const unsigned char* b = reinterpret_cast<const unsigned char*>(p.data()),
                               *e = b + p.size() * sizeof(float); b != e; ++b)
      h = (h ^ *b) * 0x100000001b3ULL;
    if (!group_.all_equal(h))
      throw Error("after epoch " + std::to_string(epoch) + " the job's ranks hold different parameters, although "
                  "each applied the same summed gradient: a collective or a device went wrong. Resume from the last "
                  "checkpoint; if it happens again, run with NCCL_DEBUG=WARN or on fewer processes to find the rank");
  };
  std::vector<EpochMetrics> history;
  const auto run_start = clock::now();
  const int64_t first_step = progress_.global_step;
  int64_t samples_done = 0;
  std::vector<StepScalars> host_table(static_cast<size_t>(steps_per_epoch));
  auto rows_of_step = [&](int64_t s) {
    return static_cast<int>(std::min<int64_t>(config_.batch, n - s * config_.batch));
  };
  DivergenceWatch watch;
  for (int epoch = progress_.epochs_done + 1; epoch <= config_.epochs && !stopped_early(); ++epoch) {
    const auto epoch_start = clock::now();
    const int64_t first = progress_.steps_into_epoch;  // > 0 when resuming inside this epoch
    const int64_t epoch_first_global = progress_.global_step - first;
    // The epoch's uploads, before its first step: permutation, step table, cursor, sums.
    const std::vector<int32_t> host_perm = epoch_permutation(n, config_.seed, epoch);
    perm.upload(host_perm.data(), host_perm.size());
    double last_beta = 0, last_lr = 0, last_capacity = 0;
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      const int rows = rows_of_step(s);
      const int64_t global = epoch_first_global + s;
      last_beta = kl_weight(config_, global, steps_per_epoch);
      last_lr = learning_rate(config_, global, total_steps);
      StepScalars& t = host_table[static_cast<size_t>(s)];
      const auto [first_row, shard_rows] = shard(rows);
      t.philox_step = static_cast<uint64_t>(global);
      t.row0 = s * config_.batch + first_row;
      t.beta = static_cast<float>(last_beta);
      t.kl_grad_weight = shard_rows > 0 ? t.beta / static_cast<float>(shard_rows) : 0.0f;
      last_capacity = capacity_at(config_, global, steps_per_epoch);
      t.capacity = static_cast<float>(last_capacity);
      t.adam = adam_coefficients(adam_args(config_, last_lr, global + 1));
    }
    table.upload(host_table.data(), host_table.size());
    cursor.upload(&first, 1);
    const std::vector<float> start_sums(progress_.epoch_sums.begin(), progress_.epoch_sums.end());
    loss_sums.copy_from_host(start_sums.data(), 4);
    int64_t rows_done = 0;
    for (int64_t s = 0; s < first; ++s) rows_done += rows_of_step(s);
    const int64_t resumed_rows = rows_done;
    watch.start_epoch();
    watch.check(progress_.epoch_sums, first, rows_done, config_.batch, epoch);

    // Loss sums reach the host asynchronously: every kReadLossEvery steps a copy is queued (unless
    // one is still in flight), and its values are reported once it has landed, without the host
    // waiting for the GPU. The epoch's last step, and a stop, wait for their own copy.
    std::vector<double> sums(progress_.epoch_sums);
    bool pending = false;
    int64_t pending_step = 0, pending_rows = 0, pending_samples = 0;
    auto queue_read = [&](int64_t step, int64_t rows_read) {
      readback->start(loss_sums.data());
      pending = true;
      pending_step = step;
      pending_rows = rows_read;
      pending_samples = samples_done;
    };
    auto report = [&](const float* values) {
      sums.assign(values, values + 4);
      pending = false;
      watch.check(sums, pending_step, pending_rows, config_.batch, epoch);
      if (!on_step) return;
      const double elapsed = std::chrono::duration<double>(clock::now() - run_start).count();
      StepProgress p;
      p.epoch = epoch;
      p.step = pending_step;
      p.steps_per_epoch = steps_per_epoch;
      const double counted = rows_counted(pending_rows, sums[3], config_.batch);
      p.loss = counted > 0 ? sums[0] / counted : 0.0;
      p.samples_per_s = static_cast<double>(pending_samples) / std::max(elapsed, 1e-9);
      const int64_t steps_done = (epoch - 1) * steps_per_epoch + pending_step - first_step;
      p.eta_s = steps_done > 0 ? elapsed / static_cast<double>(steps_done) *
                                     static_cast<double>(total_steps - (epoch - 1) * steps_per_epoch - pending_step)
                               : 0.0;
      on_step(p);
    };
    for (int64_t s = first; s < steps_per_epoch; ++s) {
      const int rows = rows_of_step(s);
      run_step(rows);
      ++progress_.global_step;
      samples_done += rows;
      rows_done += rows;
      const bool stop = s + 1 < steps_per_epoch && asked_to_stop(s + 1);
      if (s + 1 == steps_per_epoch || stop) {
        if (pending) report(readback->wait());
        queue_read(s + 1, rows_done);
        report(readback->wait());
      } else {
        // The run's first step is read too: its loss is the level a blow-up is measured against
        // (with a learning rate far too high the first 25 steps may already have exploded).
        const bool first_of_run = progress_.global_step == first_step + 1;
        if (!pending && ((s + 1) % kReadLossEvery == 0 || first_of_run)) queue_read(s + 1, rows_done);
        if (pending && readback->ready()) report(readback->wait());
      }
      if (stop) {  // mid-epoch: the state to continue from, exactly
        progress_.steps_into_epoch = s + 1;
        progress_.epoch_sums = sums;
        stopped_ = true;
        be.synchronize();
        return history;
      }
    }
    const double train_seconds = std::chrono::duration<double>(clock::now() - epoch_start).count();
    EpochMetrics em;
    em.epoch = epoch;
    const double counted = rows_counted(n, sums[3], config_.batch);
    em.train_loss = counted > 0 ? sums[0] / counted : 0.0;
    em.train_recon = counted > 0 ? sums[1] / counted : 0.0;
    em.train_kl = counted > 0 ? sums[2] / counted : 0.0;
    em.skipped_steps = static_cast<int64_t>(sums[3]);
    em.beta = last_beta;
    em.capacity = config_.objective.capacity > 0 ? last_capacity : 0.0;
    em.lr = last_lr;
    em.grad_norm = grad_norm_.to_host()[0];
    em.seconds = train_seconds;
    em.samples_per_s = static_cast<double>(rows_done - resumed_rows) / train_seconds;
    em.test = evaluate(model_, data.test, eval);
    if (validating) em.validation = evaluate(model_, data.validation, validation_eval);
    if (ranks > 1) check_ranks_agree(epoch);
    if (!std::isfinite(em.test.neg_elbo)) DivergenceWatch::fail(epoch, "at its end: the test -ELBO is " + std::to_string(em.test.neg_elbo));
    progress_.epochs_done = epoch;
    progress_.steps_into_epoch = 0;
    progress_.epoch_sums.assign(4, 0.0);
    const double judged = !validating ? em.test.neg_elbo : validation_eval.k > 0 ? em.validation.iwae_nll : em.validation.neg_elbo;
    if (judged < progress_.best_neg_elbo) {
      progress_.best_neg_elbo = judged;
      progress_.best_epoch = epoch;
    }
    history.push_back(em);
    if (on_epoch) on_epoch(em);
    if (epoch < config_.epochs && !stopped_early() && asked_to_stop(0)) {
      stopped_ = true;
      return history;
    }
  }
  return history;
}

void Trainer::save_state(const std::string& path) const { write_safetensors(path, state_contents()); }

void Trainer::load_state(const std::string& path, int64_t checkpoint_step) {
  load_state(read_safetensors(path), "training state '" + path + "'", checkpoint_step);
}

SafeTensorsFile Trainer::state_contents() const {
  nlohmann::json j;
  j["global_step"] = progress_.global_step;
  j["epochs_done"] = progress_.epochs_done;
  j["steps_into_epoch"] = progress_.steps_into_epoch;
  j["epoch_sums"] = progress_.epoch_sums;
  if (std::isfinite(progress_.best_neg_elbo)) j["best_neg_elbo"] = progress_.best_neg_elbo;
  j["best_epoch"] = progress_.best_epoch;
  j["parameters"] = model_.impl().params().numel();
  j["processes"] = group_.size();
  SafeTensorsFile file;
  file.metadata["vae_train_state"] = j.dump();
  file.metadata["vae_model_config"] = model_.config().to_json();
  file.metadata["vae_train_config"] = config_.to_json();
  // Before the first step the moments do not exist yet; they are zero.
  const int64_t n = model_.impl().params().numel();
  const auto moments = [n](const Tensor& t) { return t.numel() == n ? t.to_host() : std::vector<float>(n, 0.0f); };
  file.tensors.push_back({"optimizer.adam_m", {n}, moments(adam_m_)});
  file.tensors.push_back({"optimizer.adam_v", {n}, moments(adam_v_)});
  return file;
}

void Trainer::load_state(const SafeTensorsFile& file, const std::string& where, int64_t checkpoint_step) {
  const auto meta = [&](const char* key) -> const std::string& {
    const auto it = file.metadata.find(key);
    if (it == file.metadata.end()) throw Error(where + " lacks its " + std::string(key) + " metadata; it is not a vae training state");
    return it->second;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(meta("vae_train_state"));
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + " has malformed vae_train_state metadata: " + e.what());
  }
  if (ModelConfig::from_json(meta("vae_model_config")).to_json() != model_.config().to_json())
    throw Error(where + " belongs to a different model configuration than the checkpoint beside it");
  const TrainConfig saved = TrainConfig::from_json(meta("vae_train_config"));
  if (saved.seed != config_.seed || saved.batch != config_.batch || saved.train_limit != config_.train_limit)
    throw Error(where + " was written with seed " + std::to_string(saved.seed) + ", batch " + std::to_string(saved.batch) +
                " and train_limit " + std::to_string(saved.train_limit) + "; a resumed run must keep them");
  ensure_optimizer_state();
  const int64_t n = adam_m_.numel();
  // Integers are read only from JSON integers within [0, 2^40]: nothing converts a float or an
  // out-of-range number silently.
  const auto count = [&](const char* key) -> int64_t {
    if (!j.is_object() || !j.contains(key) || !j[key].is_number_integer())
      throw Error(where + ": vae_train_state lacks the integer '" + key + "'");
    const int64_t v = j[key].is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(j[key].get<uint64_t>(), uint64_t{1} << 41))
                                                  : j[key].get<int64_t>();
    if (v < 0 || v > (int64_t{1} << 40)) throw Error(where + ": vae_train_state has an impossible " + key + " " + j[key].dump());
    return v;
  };
  TrainProgress p;
  if (count("parameters") != n) throw Error(where + " is for a model of a different size");
  p.global_step = count("global_step");
  p.epochs_done = static_cast<int>(std::min<int64_t>(count("epochs_done"), 100000));
  p.steps_into_epoch = count("steps_into_epoch");
  p.best_epoch = static_cast<int>(std::min<int64_t>(count("best_epoch"), 100000));
  const auto& sums = j["epoch_sums"];
  if (!sums.is_array() || sums.size() != 4) throw Error(where + ": vae_train_state lacks its 4 epoch_sums");
  for (size_t i = 0; i < 4; ++i) {
    if (!sums[i].is_number() || !std::isfinite(sums[i].get<double>())) throw Error(where + ": epoch_sums must be finite numbers");
    p.epoch_sums[i] = sums[i].get<double>();
  }
  if (j.contains("processes")) p.processes = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(count("processes"), 1 << 20)));
  if (j.contains("best_neg_elbo")) {
    if (!j["best_neg_elbo"].is_number()) throw Error(where + ": best_neg_elbo must be a number");
    p.best_neg_elbo = j["best_neg_elbo"].get<double>();
  }
  if (p.global_step != checkpoint_step)
    throw Error(where + " is from step " + std::to_string(p.global_step) + " but the model checkpoint beside it is from step " +
                std::to_string(checkpoint_step) + " (a crash between the two writes?); the run cannot be continued "
                "exactly: start it again with --overwrite");
  for (const char* name : {"optimizer.adam_m", "optimizer.adam_v"}) {
    const SafeTensor* t = file.find(name);
    if (!t || t->shape != std::vector<int64_t>{n}) throw Error(where + " lacks tensor " + name + " of shape [" + std::to_string(n) + "]");
    for (float v : t->values)
      if (!std::isfinite(v)) throw Error(where + ": " + name + " holds a value that is not finite");
  }
  adam_m_.copy_from_host(file.find("optimizer.adam_m")->values.data(), n);
  adam_v_.copy_from_host(file.find("optimizer.adam_v")->values.data(), n);
  progress_ = p;
}

}  // namespace vae
