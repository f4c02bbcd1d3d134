// A training run in a folder, as `vae train` keeps one and the Python package's vae.run does:
//   config.json              the run configuration (written before the first step)
//   train_state.safetensors  the commit point: the model, the optimizer state, the progress and the
//                            metrics lines, written first at each epoch's end (and at a stop)
//   model.safetensors        the checkpoint at the end of the last finished epoch (or at a stop)
//   best.safetensors         the checkpoint of the epoch with the lowest test -ELBO
//   metrics.jsonl            one line per finished epoch (EpochMetrics::to_json)
//   samples.png              64 prior samples at the end (a conditional model: 8 per class)
// A run remembers its data: config.json holds the data's absolute path, labels and split, and its
// "run" section the run's id and the data's content hash (dataset_hash), which the state and every
// checkpoint carry too (Model::origin). Resume refuses data with another hash (--data may point at
// data that moved) and a state or checkpoint of another run or configuration.
// The policy lives here once: one run per folder (rank 0 holds an exclusive lock on DIR/.vae-lock
// for the run's life; a second run on the folder is refused at once, naming the holder's pid);
// a new run refuses a folder that holds one (a finished epoch's or a stop's files; a run that never
// got that far left only config.json, and is replaced) unless told to overwrite;
// a resumed run keeps its configuration (only the epochs and threads may change); the image size
// and a conditional model's classes come from the data; in a job of several processes every rank
// reads and only rank 0 writes; after each epoch the training state first, then the checkpoint,
// the best model and the metrics, each file written to a temporary and renamed. A crash at any
// point leaves either the old state (the epoch is trained again, to the same bits) or the new one,
// from which resume rebuilds whatever the crash cut short: no metrics line is lost and the best
// model, the checkpoint and the state never disagree (EndToEnd.CrashAtEveryRenameLosesNothing ends
// the process before every rename of a run). A folder left by a run that never finished an epoch
// (only config.json) is taken by a new run without --overwrite.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vae/config.hpp"
#include "vae/data.hpp"
#include "vae/distributed.hpp"
#include "vae/model.hpp"
#include "vae/train.hpp"

namespace vae {

// Reads a run configuration file (config.json's form: run_config_from_json), naming the file in
// any error.
void read_run_config(const std::string& path, ModelConfig& model, TrainConfig& train, RunIdentity* run = nullptr);

// Applied to a resumed run's configuration as read from its folder: it may change the epochs (to
// train further), the threads, and where the data and labels are (data that moved: its content hash
// must match the run's), nothing else (TrainingRun::resume refuses any other change).
using RunChanges = std::function<void(ModelConfig&, TrainConfig&)>;

class TrainingRun {
 public:
  // A new run of `model` trained as `train` says into train.out_dir, on the data at train.data_dir:
  // reads the data and builds and initialises the model, and writes nothing (prepare_folder does).
  // Throws when the folder holds a run and overwrite is false.
  static TrainingRun start(ModelConfig model, TrainConfig train, bool overwrite, ProcessGroup group = {});
  // The run in folder `dir`, continued from its checkpoint and training state with its own
  // configuration, changed only as `changes` says. Writes nothing. Throws when the folder lacks the
  // files, the changes touch more than the epochs, threads and data's place, the data's content
  // differs from the run's, the state belongs to another run or configuration, or the run has
  // finished its epochs.
  static TrainingRun resume(const std::string& dir, const RunChanges& changes = {}, ProcessGroup group = {});
  TrainingRun(TrainingRun&&) noexcept;
  TrainingRun& operator=(TrainingRun&&) noexcept;
  ~TrainingRun();

  // Rank 0 (nothing on the others): creates the folder, removes the temporaries an interrupted run
  // left and, when overwriting, the old run's files, and writes config.json. Returns how many
  // temporaries it removed.
  int prepare_folder();
  // Trains to the configured epochs. After each epoch rank 0 writes the checkpoint, the training
  // state, the best model and metrics.jsonl, then on_epoch runs (on every rank). A stop
  // (should_stop, or Trainer's divergence error) leaves the last finished epoch's files; a stop
  // mid-epoch also saves the exact state to continue from. samples.png at the end and at a stop.
  std::vector<EpochMetrics> fit(const std::function<void(const StepProgress&)>& on_step = {},
                                const std::function<void(const EpochMetrics&)>& on_epoch = {},
                                const std::function<bool()>& should_stop = {});
  // Whether fit returned because should_stop asked.
  bool stopped() const;

  bool resumed() const;
  const std::string& folder() const;
  const TrainConfig& config() const;
  const Dataset& data() const;
  // The run's id and its data's content hash (config.json's "run" section).
  const RunIdentity& identity() const;
  Model& model();
  Trainer& trainer();
  // Training images per epoch (the train limit applied).
  int64_t train_images() const;

  // The files a run writes into its folder; a folder holding any of them holds a run.
  static const std::vector<std::string>& files();

 private:
  struct State;
  explicit TrainingRun(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace vae
