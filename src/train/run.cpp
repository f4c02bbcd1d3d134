#include "vae/run.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <random>
#include <sstream>

#include "io/atomic_file.hpp"
#include "io/checkpoint_contents.hpp"
#include "io/folder_lock.hpp"
#include "vae/error.hpp"
#include "vae/generate.hpp"

namespace vae {
namespace fs = std::filesystem;

void read_run_config(const std::string& path, ModelConfig& model, TrainConfig& train, RunIdentity* run) {
  const auto bytes = read_file_bytes(path, "config file");
  try {
    run_config_from_json(std::string(bytes.begin(), bytes.end()), model, train, run);
  } catch (const Error& e) {
    throw Error("config file '" + path + "': " + e.what());
  }
}

namespace {

// Whether the folder holds a run worth keeping: anything a finished epoch (or a stop) writes. A run
// that never got that far left at most config.json, and a new run may take its place.
bool holds_a_run(const fs::path& dir) {
  std::error_code ec;
  for (const std::string& f : TrainingRun::files())
    if (f != "config.json" && fs::exists(dir / f, ec)) return true;
  return false;
}

// The lines of a run's metrics.jsonl for epochs 1..epochs (empty when there is none). A crash after a
// checkpoint but before its metrics line leaves that epoch without one; lines beyond the checkpoint
// never stay.
std::string metrics_up_to(const fs::path& file, int epochs) {
  if (!fs::exists(file)) return {};
  const auto bytes = read_file_bytes(file.string(), "metrics file");
  std::stringstream lines(std::string(bytes.begin(), bytes.end()));
  std::string kept, line;
  while (std::getline(lines, line)) {
    try {
      if (nlohmann::json::parse(line).at("epoch").get<int>() <= epochs) kept += line + "\n";
    } catch (const nlohmann::json::exception&) {
    }
  }
  return kept;
}

// A new run's image size, and a conditional model's classes, from its data.
void take_shape_from_data(ModelConfig& model, const TrainConfig& train, const Dataset& data) {
  model.image_channels = data.train.channels;
  model.image_height = data.train.height;
  model.image_width = data.train.width;
  if (model.conditional) {
    if (data.train.labels.empty())
      throw Error("--conditional needs labels: '" + train.data_dir + "' has none (IDX label files, --labels "
                  "labels.npy for a .npy, or one sub-folder per class of PNGs)");
    int classes = static_cast<int>(data.class_names.size());
    for (const auto* set : {&data.train, &data.test})
      for (int32_t y : set->labels) classes = std::max(classes, y + 1);
    model.classes = classes;
  }
  model.validate();
}

// The run's data, its content hash (of the data as loaded: the validation set is a split of it that
// the configuration decides), and its validation set held out.
Dataset load_run_data(const TrainConfig& c, std::string& hash) {
  DataOptions d;
  d.labels = c.labels_path;
  d.test_fraction = c.test_fraction;
  Dataset data = load_dataset(c.data_dir, d);
  hash = dataset_hash(data);
  hold_out_validation(data, c.validation_fraction, c.validation_split == ValidationSplit::Tail);
  return data;
}

// A path as a run records it: absolute, so that the run can be resumed and its checkpoints read
// from any working folder.
std::string absolute_path(const std::string& path) {
  if (path.empty()) return path;
  std::error_code ec;
  const fs::path p = fs::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

// 128 random bits as 32 hex digits: a new run's id.
std::string new_run_id() {
  std::random_device rd;
  static const char hex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 4; ++i) {
    const uint32_t word = rd();
    for (int k = 0; k < 8; ++k) id += hex[(word >> (4 * k)) & 15];
  }
  return id;
}

RunOrigin origin_of(const TrainConfig& train, const RunIdentity& run) {
  RunOrigin o;
  o.run_id = run.id;
  o.data = train.data_dir;
  o.labels = train.labels_path;
  o.test_fraction = train.test_fraction;
  o.data_hash = run.data_hash;
  return o;
}

// The model configuration and run id a file of the folder (the state, or a checkpoint paired with
// an old state) was written for, checked against config.json's: a file copied in from another run
// or configuration would continue the wrong model.
void check_same_run(const SafeTensorsFile& file, const std::string& path, const ModelConfig& model,
                    const RunIdentity& run, const std::string& config_path) {
  if (const auto it = file.metadata.find("vae_config"); it != file.metadata.end()) {
    ModelConfig theirs;
    try {
      theirs = ModelConfig::from_json(it->second);
    } catch (const Error& e) {
      throw Error("'" + path + "' has an invalid model configuration: " + e.what());
    }
    if (theirs.to_json() != model.to_json())
      throw Error("'" + path + "' holds a model of another configuration than '" + config_path +
                  "' describes; the folder mixes files of different runs (start a new run with --out elsewhere, or "
                  "put back this run's own files)");
  }
  if (const auto it = file.metadata.find("vae_run"); it != file.metadata.end() && !run.id.empty()) {
    const RunOrigin theirs = RunOrigin::from_json(it->second, "'" + path + "'");
    if (theirs.run_id != run.id)
      throw Error("'" + path + "' belongs to run " + theirs.run_id + " but '" + config_path + "' to run " + run.id +
                  "; the folder mixes files of different runs (start a new run with --out elsewhere, or put back this "
                  "run's own files)");
  }
}

}  // namespace

struct TrainingRun::State {
  TrainConfig config;
  ProcessGroup group;
  bool resumed = false, overwrite = false;
  fs::path out;
  FolderLock lock;  // rank 0's, for the run's life: one run per folder
  Dataset data;
  RunIdentity run;
  std::optional<Model> model;
  std::optional<Trainer> trainer;
  std::string metrics_lines;
  bool stopped = false;

  std::string path(const char* file) const { return (out / file).string(); }
  bool root() const { return group.is_root(); }

  // Rank 0, on resuming: what a crash after the state's write left behind it, rebuilt from the
  // state (the checkpoint, the best model when the state's epoch was the best, the metrics lines,
  // and for a finished run its samples).
  void restore_from_state(bool finished) {
    if (!root()) return;
    const TrainProgress& p = trainer->progress();
    const auto step_of = [&](const char* file) {
      std::error_code missing;
      return fs::exists(out / file, missing) ? checkpoint_step(path(file)) : int64_t{-1};
    };
    if (step_of("model.safetensors") != p.global_step) save_checkpoint(*model, path("model.safetensors"), p.global_step);
    if (p.best_epoch == p.epochs_done && p.steps_into_epoch == 0 && p.epochs_done > 0 &&
        step_of("best.safetensors") != p.global_step)
      save_checkpoint(*model, path("best.safetensors"), p.global_step);
    write_file_atomic(path("metrics.jsonl"), metrics_lines);
    std::error_code ec;
    if (finished && !fs::exists(out / "samples.png", ec)) write_samples();
  }

  // 64 prior samples; a conditional model's grid has one row of 8 per class.
  void write_samples() {
    if (!root()) return;
    SampleOptions o;
    o.seed = config.seed;
    if (model->config().conditional) {
      o.n = 8 * model->config().classes;
      for (int i = 0; i < o.n; ++i) o.labels.push_back(i / 8);
    }
    std::vector<std::string> rows;  // a conditional model's rows: their class
    for (int k = 0; k < model->config().classes && model->config().conditional; ++k)
      rows.push_back(std::to_string(k) + (k < static_cast<int>(data.class_names.size()) ? " " + data.class_names[static_cast<size_t>(k)] : ""));
    const std::vector<float> samples = sample_images(*model, o);
    write_png_grid_scaled(path("samples.png"), samples, o.n, model->config().image_channels, model->config().image_height,
                          model->config().image_width, 8, 1, rows);
  }
};

TrainingRun::TrainingRun(std::unique_ptr<State> s) : s_(std::move(s)) {}
TrainingRun::TrainingRun(TrainingRun&&) noexcept = default;
TrainingRun& TrainingRun::operator=(TrainingRun&&) noexcept = default;
TrainingRun::~TrainingRun() = default;

const std::vector<std::string>& TrainingRun::files() {
  static const std::vector<std::string> names = {"config.json",   "model.safetensors", "train_state.safetensors",
                                                 "best.safetensors", "metrics.jsonl",  "samples.png"};
  return names;
}

TrainingRun TrainingRun::start(ModelConfig model, TrainConfig train, bool overwrite, ProcessGroup group) {
  model.validate();
  train.validate();
  auto s = std::make_unique<State>();
  s->group = group;
  s->overwrite = overwrite;
  s->out = train.out_dir;
  // The lock now when the folder exists (a run may be writing it); else prepare_folder takes it
  // when it creates the folder, so that a run refused before then leaves nothing behind.
  std::error_code ec;
  if (s->root() && fs::is_directory(s->out, ec)) s->lock = FolderLock(train.out_dir, "output folder");
  if (s->root() && holds_a_run(s->out) && !overwrite)
    throw Error("output folder '" + train.out_dir + "' already holds a run; pass --resume " + train.out_dir +
                " to continue it, --overwrite to replace it, or --out with another folder");
  train.data_dir = absolute_path(train.data_dir);
  train.labels_path = absolute_path(train.labels_path);
  std::string hash;
  s->data = load_run_data(train, hash);
  take_shape_from_data(model, train, s->data);
  s->run = {new_run_id(), hash};
  if (train.device == Device::CUDA && group.size() > 1) group.select_cuda_device();
  s->model.emplace(model, train.device);
  s->model->initialize(train.seed);
  s->model->set_origin(origin_of(train, s->run));
  s->config = std::move(train);
  s->trainer.emplace(*s->model, s->config, group);
  return TrainingRun(std::move(s));
}

TrainingRun TrainingRun::resume(const std::string& dir_name, const RunChanges& changes, ProcessGroup group) {
  const fs::path dir(dir_name);
  const auto cannot_resume = [&] {
    return Error("cannot resume '" + dir.string() + "': it needs config.json and train_state.safetensors, as a run "
                 "of vae train writes after its first epoch or when interrupted" +
                 (group.size() > 1 ? " (every rank reads them: the folder must be on a file system all the job's "
                                     "machines share)" : ""));
  };
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw cannot_resume();
  // The lock first: a run still writing the folder is named as such, whatever it has written yet.
  FolderLock lock = group.is_root() ? FolderLock(dir.string(), "run folder") : FolderLock();
  const std::string config_path = (dir / "config.json").string();
  if (fs::is_regular_file(dir / "config.json") && !holds_a_run(dir))
    throw Error("cannot resume '" + dir.string() + "': its run stopped before finishing an epoch, so there is nothing "
                "to continue; start it again with vae train --config " + config_path + " --out " + dir.string());
  if (!fs::is_regular_file(dir / "config.json") || !fs::is_regular_file(dir / "train_state.safetensors"))
    throw cannot_resume();
  ModelConfig model;
  TrainConfig train;
  RunIdentity run;
  read_run_config(config_path, model, train, &run);
  train.out_dir = dir.string();
  // (A run from before paths were recorded absolute has them relative to where it started.)
  train.data_dir = absolute_path(train.data_dir);
  train.labels_path = absolute_path(train.labels_path);
  const TrainConfig recorded = train;
  if (changes) {
    const std::string model_before = model.to_json();
    TrainConfig before = train;
    changes(model, train);
    train.data_dir = absolute_path(train.data_dir);
    train.labels_path = absolute_path(train.labels_path);
    before.epochs = train.epochs;
    before.threads = train.threads;
    before.data_dir = train.data_dir;
    before.labels_path = train.labels_path;
    if (model.to_json() != model_before || run_config_to_json(model, before) != run_config_to_json(model, train))
      throw Error("a resumed run keeps the configuration in '" + config_path +
                  "'; only the epochs, the threads and the data's place (--data, --labels) may change");
  }
  model.validate();
  train.validate();
  auto s = std::make_unique<State>();
  s->group = group;
  s->resumed = true;
  s->out = train.out_dir;
  s->lock = std::move(lock);
  // The training state is the run's commit point: it holds the model it continues and the metrics
  // lines, and everything else in the folder is written after it and rebuilt from it
  // (prepare_folder). A state from before it held the model pairs with model.safetensors.
  const std::string state_path = s->path("train_state.safetensors"), model_path = s->path("model.safetensors");
  const SafeTensorsFile state = read_safetensors(state_path);
  check_same_run(state, state_path, model, run, config_path);
  const std::string where = "training state '" + state_path + "'";
  const bool holds_model = state.metadata.count("vae_config") > 0;
  std::optional<SafeTensorsFile> paired;  // an old state's model.safetensors
  if (!holds_model) {
    paired.emplace(read_safetensors(model_path));
    check_same_run(*paired, model_path, model, run, config_path);
  }
  // The data, checked against the run's: the same content (wherever it now is), or a clear refusal.
  const bool moved = train.data_dir != recorded.data_dir || train.labels_path != recorded.labels_path;
  std::string hash;
  try {
    s->data = load_run_data(train, hash);
  } catch (const Error& e) {
    if (moved) throw;
    throw Error(std::string(e.what()) + " (the data of the run in '" + dir.string() + "'; if it moved, pass --data " +
                "with its new place and --resume " + dir.string() + ": its content hash must match the run's)");
  }
  if (!run.data_hash.empty() && hash != run.data_hash)
    throw Error("the data at '" + train.data_dir + "' is not the data the run in '" + dir.string() + "' trained on (content " +
                "hash " + hash.substr(0, 19) + "..., the run's " + run.data_hash.substr(0, 19) + "...)" +
                (moved ? "; pass --data with the run's own data (it was at '" + recorded.data_dir + "')"
                       : "; it changed since the run started: put back the run's data, or start a new run"));
  run.data_hash = hash;  // a run from before the hash was recorded takes it now
  if (run.id.empty()) {  // likewise its id: the state's, when it has one
    const auto it = state.metadata.find("vae_run");
    run.id = it != state.metadata.end() ? RunOrigin::from_json(it->second, where).run_id : new_run_id();
  }
  s->run = run;
  if (train.device == Device::CUDA && group.size() > 1) group.select_cuda_device();
  const int64_t state_step = holds_model ? checkpoint_step(state, state_path) : checkpoint_step(*paired, model_path);
  s->model.emplace(holds_model ? model_from_contents(state, state_path, train.device, "optimizer.")
                               : model_from_contents(*paired, model_path, train.device, ""));
  s->model->set_origin(origin_of(train, run));
  s->config = std::move(train);
  Trainer& trainer = s->trainer.emplace(*s->model, s->config, group);
  trainer.load_state(state, where, state_step);
  const TrainProgress& p = trainer.progress();
  if (const auto it = state.metadata.find("vae_metrics"); it != state.metadata.end()) s->metrics_lines = it->second;
  else if (s->root()) s->metrics_lines = metrics_up_to(s->out / "metrics.jsonl", p.epochs_done);
  if (trainer.stopped_early()) {
    s->restore_from_state(true);
    throw Error("the run in '" + s->config.out_dir + "' stopped early after epoch " + std::to_string(p.epochs_done) +
                ": its validation bound has not improved on epoch " + std::to_string(p.best_epoch) + "'s for " +
                std::to_string(s->config.early_stopping) + " epochs (its model is " + s->config.out_dir +
                "/best.safetensors); to train longer, start a new run with a larger --early-stopping");
  }
  if (p.epochs_done >= s->config.epochs) {
    s->restore_from_state(true);  // a crash after the last epoch's state: its files, complete
    throw Error("the run in '" + s->config.out_dir + "' has finished its " + std::to_string(p.epochs_done) +
                " epochs; pass --epochs N with N above " + std::to_string(p.epochs_done) + " to train further");
  }
  return TrainingRun(std::move(s));
}

int TrainingRun::prepare_folder() {
  State& s = *s_;
  if (!s.root()) return 0;
  std::error_code ec;
  fs::create_directories(s.out, ec);
  if (ec) throw Error("cannot create output folder '" + s.config.out_dir + "': " + ec.message());
  if (!s.lock.held()) s.lock = FolderLock(s.config.out_dir, "output folder");
  const int stale = remove_stale_temporaries(s.out.string());
  if (!s.resumed && s.overwrite)
    for (const std::string& file : files()) fs::remove(s.out / file, ec);
  write_file_atomic(s.path("config.json"), run_config_to_json(s.model->config(), s.config, &s.run));
  if (s.resumed) s.restore_from_state(false);
  return stale;
}

std::vector<EpochMetrics> TrainingRun::fit(const std::function<void(const StepProgress&)>& on_step,
                                           const std::function<void(const EpochMetrics&)>& on_epoch,
                                           const std::function<bool()>& should_stop) {
  State& s = *s_;
  Model& model = *s.model;
  Trainer& trainer = *s.trainer;
  // The state first (the commit point: the model, the optimizer, the progress and the metrics lines
  // the folder should hold), then what is rebuilt from it after a crash (prepare_folder).
  auto save_state = [&] {
    const int64_t step = trainer.progress().global_step;
    SafeTensorsFile state = checkpoint_contents(model, s.path("train_state.safetensors"), step);
    SafeTensorsFile optimizer = trainer.state_contents();
    state.metadata.insert(optimizer.metadata.begin(), optimizer.metadata.end());
    for (SafeTensor& t : optimizer.tensors) state.tensors.push_back(std::move(t));
    state.metadata["vae_metrics"] = s.metrics_lines;
    write_safetensors(s.path("train_state.safetensors"), state);
  };
  auto save_run = [&] {
    if (!s.root()) return;
    save_state();
    save_checkpoint(model, s.path("model.safetensors"), trainer.progress().global_step);
  };
  std::vector<EpochMetrics> history = trainer.fit(
      s.data, on_step,
      [&](const EpochMetrics& m) {
        if (s.root()) {
          s.metrics_lines += m.to_json() + "\n";
          save_run();
          if (trainer.progress().best_epoch == m.epoch)
            save_checkpoint(model, s.path("best.safetensors"), trainer.progress().global_step);
          write_file_atomic(s.path("metrics.jsonl"), s.metrics_lines);
        }
        if (on_epoch) on_epoch(m);
      },
      should_stop);
  s.stopped = trainer.stopped();
  if (s.stopped && trainer.progress().steps_into_epoch > 0) save_run();  // an epoch's end was saved already
  s.write_samples();
  return history;
}

bool TrainingRun::stopped() const { return s_->stopped; }
bool TrainingRun::resumed() const { return s_->resumed; }
const std::string& TrainingRun::folder() const { return s_->config.out_dir; }
const TrainConfig& TrainingRun::config() const { return s_->config; }
const Dataset& TrainingRun::data() const { return s_->data; }
const RunIdentity& TrainingRun::identity() const { return s_->run; }
Model& TrainingRun::model() { return *s_->model; }
Trainer& TrainingRun::trainer() { return *s_->trainer; }
int64_t TrainingRun::train_images() const {
  const TrainConfig& c = s_->config;
  return c.train_limit > 0 ? std::min(c.train_limit, s_->data.train.count) : s_->data.train.count;
}

}  // namespace vae
