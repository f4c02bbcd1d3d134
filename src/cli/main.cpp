// The `vae` command: train (with --resume), eval, sample, reconstruct. Errors print one line on
// stderr ("vae: error: ...") and exit 1; usage errors exit 2 and suggest the nearest flag; a
// training run stopped by SIGINT/SIGTERM saves its checkpoint and state and exits 128 + signal.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <nlohmann/json.hpp>

#include <csignal>
#include <deque>
#include <functional>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include "cli/compare.hpp"
#include "cli/generate_commands.hpp"
#include "cli/progress.hpp"
#include "config_fields.hpp"
#include "io/atomic_file.hpp"
#include "vae/vae.hpp"

namespace {

using json = nlohmann::json;

// A flag of vae train that sets one configuration field (src/config_fields.hpp): where the value
// goes, how its text reads, and its range check, all from the field's one declaration.
struct FieldFlag {
  std::string flag;
  bool resumable = false;
  bool is_switch = false;
  json switch_value;
  std::optional<std::string> text;  // the value given after the flag
  bool switched = false;            // a switch that was given
  std::function<json(const std::string&)> from_text;
  std::function<void(vae::ModelConfig&, vae::TrainConfig&, const json&)> set;
  std::function<void(const vae::ModelConfig&, const vae::TrainConfig&)> check;
  bool given() const { return text.has_value() || switched; }
};

struct TrainFlags {
  std::optional<std::string> config_file, resume;
  bool overwrite = false;
  std::deque<FieldFlag> fields;  // stable addresses: CLI11 writes into them
};

// One FieldFlag per field with a flag, in the order they are applied: train, objective, model.
void add_field_flags(CLI::App& cmd, TrainFlags& flags) {
  auto add = [&](const auto& field, auto section) {
    if (field.flag.empty()) return;
    FieldFlag& f = flags.fields.emplace_back();
    f.flag = field.flag;
    f.resumable = field.resumable;
    f.is_switch = !field.switch_value.is_null();
    f.switch_value = field.switch_value;
    f.from_text = field.from_text;
    f.set = [read = field.read, section](vae::ModelConfig& m, vae::TrainConfig& t, const json& v) { read(section(m, t), v); };
    f.check = [check = field.check, section](const vae::ModelConfig& m, const vae::TrainConfig& t) {
      check(section(const_cast<vae::ModelConfig&>(m), const_cast<vae::TrainConfig&>(t)));
    };
    if (f.is_switch) cmd.add_flag(f.flag, f.switched, field.help);
    else cmd.add_option(f.flag, f.text, field.help)->type_name(field.type_name);
  };
  for (const auto& field : vae::config::train_fields())
    add(field, [](vae::ModelConfig&, vae::TrainConfig& t) -> vae::TrainConfig& { return t; });
  for (const auto& field : vae::config::objective_fields())
    add(field, [](vae::ModelConfig&, vae::TrainConfig& t) -> vae::ObjectiveConfig& { return t.objective; });
  for (const auto& field : vae::config::model_flag_fields())
    add(field, [](vae::ModelConfig& m, vae::TrainConfig&) -> vae::ModelConfig& { return m; });
}

// A flag's value that does not read or is out of range: a usage error naming the flag.
struct FlagError : vae::Error {
  using vae::Error::Error;
};

// Sets every given field flag, then checks each (so their order on the command line does not matter).
void apply_field_flags(const TrainFlags& flags, vae::ModelConfig& model, vae::TrainConfig& train) {
  auto named = [](const FieldFlag& f, const std::exception& e) {
    return FlagError(f.flag + (f.text ? " " + *f.text : std::string()) + ": " + e.what());
  };
  for (const FieldFlag& f : flags.fields) {
    if (!f.given()) continue;
    try {
      f.set(model, train, f.is_switch ? f.switch_value : f.from_text(*f.text));
    } catch (const vae::Error& e) {
      throw named(f, e);
    }
  }
  for (const FieldFlag& f : flags.fields) {
    if (!f.given()) continue;
    try {
      f.check(model, train);
    } catch (const vae::Error& e) {
      throw named(f, e);
    }
  }
}

// Exit codes: 0 done, 1 error, 2 usage error, 128 + signal for a run stopped by SIGINT/SIGTERM.
constexpr int kExitError = 1, kExitUsage = 2;

// SIGINT/SIGTERM: the first asks the run to stop after its current step (and write a checkpoint);
// a second ends the process at once.
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) {
  if (g_stop_signal != 0) {
    static const char msg[] = "\nvae: second interrupt: exiting at once (the last checkpoint is kept)\n";
    [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(128 + sig);
  }
  g_stop_signal = sig;
}

void install_stop_handlers() {
  struct sigaction sa{};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking read returns, the step loop polls the flag
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// Flags --resume cannot take: the run continues with its own configuration.
std::string flags_resume_forbids(const TrainFlags& f) {
  std::string bad;
  auto add = [&](bool given, const std::string& name) {
    if (given) bad += (bad.empty() ? "" : ", ") + name;
  };
  add(f.config_file.has_value(), "--config");
  for (const FieldFlag& field : f.fields) add(field.given() && !field.resumable, field.flag);
  add(f.overwrite, "--overwrite");
  return bad;
}

// A usage error found after parsing (exit 2): the whole message.
struct UsageError : vae::Error {
  using vae::Error::Error;
};

// Runs `work` on every rank of the job, then has the ranks agree whether it succeeded everywhere:
// if it failed on any, every rank throws JobFailed, rank 0 reporting the failure (naming the rank
// unless all failed). So a data path missing on one machine stops the whole job with one message,
// and no rank waits forever in a collective. In one process the failure is reported as it is.
void on_every_rank(const vae::ProcessGroup& group, const std::function<void()>& work) {
  std::optional<vae::RankFailure> failure;
  auto failed = [&](int code, std::string message) { failure = vae::RankFailure{group.rank(), 1, code, std::move(message)}; };
  try {
    work();
  } catch (const FlagError& e) {
    failed(kExitUsage, std::string(e.what()) + " (see vae train --help)");
  } catch (const UsageError& e) {
    failed(kExitUsage, e.what());
  } catch (const std::bad_alloc&) {
    failed(kExitError, "out of memory; try a smaller --batch, or a smaller model (--hidden, --latent)");
  } catch (const std::exception& e) {
    failed(kExitError, e.what());
  }
  vae::raise_first_failure(group, failure);
}

// The CUDA GPU of this rank, when a job of several processes trains or evaluates on CUDA.
void select_gpu(const vae::ProcessGroup& group, vae::Device device) {
  if (device == vae::Device::CUDA && group.size() > 1) group.select_cuda_device();
}

int run_train(const TrainFlags& f, const vae::ProcessGroup& group) {
  const bool resume = f.resume.has_value();
  const bool root = group.is_root();
  std::optional<vae::TrainingRun> opened;
  // Everything that reads (flags, config, data, the checkpoint to resume) on every rank, and
  // nothing written yet: a rank that fails here stops the job before any file changes.
  on_every_rank(group, [&] {
    if (resume) {
      if (const std::string bad = flags_resume_forbids(f); !bad.empty())
        throw UsageError("--resume continues a run with its own configuration; only --epochs and --threads may change "
                         "(remove " + bad + ")");
      opened.emplace(vae::TrainingRun::resume(
          *f.resume, [&](vae::ModelConfig& m, vae::TrainConfig& t) { apply_field_flags(f, m, t); }, group));
    } else {
      vae::ModelConfig model_cfg;
      vae::TrainConfig cfg;
      if (f.config_file) vae::read_run_config(*f.config_file, model_cfg, cfg);
      apply_field_flags(f, model_cfg, cfg);
      opened.emplace(vae::TrainingRun::start(model_cfg, cfg, f.overwrite, group));
    }
  });
  vae::TrainingRun& run = *opened;
  const vae::TrainConfig& cfg = run.config();
  vae::Model& model = run.model();
  vae::Trainer& trainer = run.trainer();

  // Rank 0 alone writes: the folder, its cleaning, config.json. The others wait for its word.
  on_every_rank(group, [&] {
    if (const int stale = run.prepare_folder(); stale > 0)
      std::printf("removed %d temporary file(s) an interrupted run left in %s\n", stale, cfg.out_dir.c_str());
  });

  const bool tty = root && ::isatty(STDERR_FILENO);
  vae::cli::ProgressBar bar(cfg.epochs);
  if (root) {
    if (resume) {
      std::printf("resuming %s at epoch %d, step %lld of the run (%d epochs in all)\n", cfg.out_dir.c_str(),
                  trainer.progress().epochs_done + 1, static_cast<long long>(trainer.progress().global_step), cfg.epochs);
      if (trainer.progress().processes != group.size())
        std::printf("note: the run was trained by %d process(es) and continues with %d: the same model up to "
                    "rounding, not the same bits as continuing with %d\n",
                    trainer.progress().processes, group.size(), trainer.progress().processes);
    }
    std::printf("training %lld parameters on %lld images of %dx%dx%d from %s (%s, batch %d, %d epochs%s) -> %s\n",
                static_cast<long long>(model.parameter_count()), static_cast<long long>(run.train_images()),
                model.config().image_channels, model.config().image_height, model.config().image_width,
                cfg.data_dir.c_str(), vae::to_string(cfg.device).c_str(), cfg.batch, cfg.epochs,
                group.size() > 1 ? (", " + std::to_string(group.size()) + " processes").c_str() : "", cfg.out_dir.c_str());
    std::fflush(stdout);
  }

  install_stop_handlers();
  try {
    run.fit(
        [&](const vae::StepProgress& p) { if (tty) bar.update(p); },
        [&](const vae::EpochMetrics& m) {
          if (!root) return;
          bar.finish_line();
          char validation[64] = "";
          if (m.validation.count > 0)
            std::snprintf(validation, sizeof validation, "  validation %s %.2f%s",
                          m.validation.k > 0 ? ("-log p(x), k=" + std::to_string(m.validation.k)).c_str() : "-ELBO",
                          m.validation.k > 0 ? m.validation.iwae_nll : m.validation.neg_elbo,
                          trainer.progress().best_epoch == m.epoch ? " (best)" : "");
          std::printf("epoch %d/%d  train loss %.2f%s  test -ELBO %.2f (recon %.2f, KL %.2f)  active units %d  %.1fs  %.0f samples/s%s\n",
                      m.epoch, cfg.epochs, m.train_loss, validation, m.test.neg_elbo, m.test.recon, m.test.kl, m.test.active_units,
                      m.seconds, m.samples_per_s,
                      m.skipped_steps ? ("  (" + std::to_string(m.skipped_steps) + " steps skipped: not finite)").c_str() : "");
          std::fflush(stdout);
        },
        [] { return g_stop_signal != 0; });
  } catch (const vae::TrainingDiverged& e) {
    // Every rank sees the same summed losses, so every rank diverges at the same step: agree, and
    // let rank 0 say it once.
    if (group.size() == 1) throw;
    on_every_rank(group, [&] { throw vae::Error(e.what()); });
  }
  if (run.stopped()) {
    bar.finish_line();
    const vae::TrainProgress& p = trainer.progress();
    if (root)
      std::fprintf(stderr, "vae: %s: stopped in epoch %d after step %lld; checkpoint and training state saved in %s.\n"
                           "Continue with: vae train --resume %s\n",
                   g_stop_signal == SIGTERM ? "terminated" : "interrupted", p.epochs_done + 1,
                   static_cast<long long>(p.global_step), cfg.out_dir.c_str(), cfg.out_dir.c_str());
    return 128 + static_cast<int>(g_stop_signal != 0 ? g_stop_signal : SIGINT);
  }
  if (root && trainer.stopped_early())
    std::printf("stopped early after epoch %d: the validation bound has not improved on epoch %d's %.3f for %d epochs; "
                "best.safetensors is epoch %d's model\n",
                trainer.progress().epochs_done, trainer.progress().best_epoch, trainer.progress().best_neg_elbo,
                cfg.early_stopping, trainer.progress().best_epoch);
  if (root)
    std::printf("wrote %s/{model.safetensors,best.safetensors,train_state.safetensors,config.json,metrics.jsonl,samples.png}\n",
                cfg.out_dir.c_str());
  return 0;
}

using vae::cli::load_model;

// vae eval; in a job of several processes the ranks split the test set and rank 0 prints.
int run_eval(const std::string& checkpoint, const vae::cli::DataFlags& data_flags, int k, bool as_json, int64_t limit, const std::string& device, bool strict_fp32,
             bool compare, const std::string& anchors_path, const vae::ProcessGroup& group) {
  // The anchors first: a malformed file is refused before minutes of evaluation. --anchors alone
  // asks for the comparison too.
  compare = compare || !anchors_path.empty();
  nlohmann::json anchors;
  if (compare && anchors_path.empty()) {
    anchors = vae::cli::read_anchors(vae::cli::builtin_anchors_json(), "bench/anchors.json (built in)");
  } else if (compare) {
    const auto bytes = vae::read_file_bytes(anchors_path, "anchors file");
    anchors = vae::cli::read_anchors(std::string(bytes.begin(), bytes.end()), anchors_path);
  }
  std::optional<vae::Model> loaded;
  std::optional<vae::Dataset> loaded_data;
  on_every_rank(group, [&] {
    if (group.size() > 1) select_gpu(group, vae::parse_device(device));
    loaded.emplace(load_model(checkpoint, device, strict_fp32));
    loaded_data.emplace(vae::cli::load_data_for(*loaded, data_flags, !group.is_root()));
  });
  vae::Model& model = *loaded;
  const vae::Dataset& data = *loaded_data;
  vae::EvalOptions opt;
  opt.k = k;
  opt.limit = limit;
  if (group.size() > 1) opt.group = group;
  const bool tty = group.is_root() && ::isatty(STDERR_FILENO);
  const auto start = std::chrono::steady_clock::now();
  auto last = start;
  bool drawn = false;
  if (tty)
    opt.on_progress = [&](int64_t done, int64_t total) {
      const auto now = std::chrono::steady_clock::now();
      if (done != total && now - last < std::chrono::milliseconds(100)) return;
      last = now;
      const double elapsed = std::chrono::duration<double>(now - start).count();
      const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(total - done) : 0.0;
      std::fprintf(stderr, "\r\033[Kevaluating %lld/%lld test images (%.0f%%)%s  ETA %s", static_cast<long long>(done),
                   static_cast<long long>(total), 100.0 * static_cast<double>(done) / static_cast<double>(total),
                   k > 0 ? (", k=" + std::to_string(k)).c_str() : "", vae::cli::format_duration(eta).c_str());
      std::fflush(stderr);
      drawn = true;
    };
  vae::EvalResult r = vae::evaluate(model, data.test, opt);
  if (drawn) std::fprintf(stderr, "\r\033[K");
  if (!group.is_root()) return 0;
  r.data_hash = vae::dataset_hash(data);
  r.checkpoint = checkpoint;
  r.checkpoint_step = vae::checkpoint_step(checkpoint);
  r.test_split = vae::test_split_description(data);
  const nlohmann::json compared = compare ? vae::cli::compare_with_anchors(r, anchors) : nlohmann::json();
  if (as_json) {
    if (!compare) {
      std::printf("%s\n", r.to_json().c_str());
    } else {
      nlohmann::json j = nlohmann::json::parse(r.to_json());
      j["compare"] = compared;
      std::printf("%s\n", j.dump().c_str());
    }
  } else {
    std::printf("test images      %lld\n", static_cast<long long>(r.count));
    std::printf("-ELBO            %.3f nats (reconstruction %.3f, KL %.3f)\n", r.neg_elbo, r.recon, r.kl);
    if (r.k > 0) {
      std::printf("-log p(x), k=%-4d %.3f +- %.3f nats (importance weighted; +- the standard error over images)\n", r.k,
                  r.iwae_nll, r.iwae_stderr);
      std::printf("effective samples %.1f of %d on average, %.1f at the worst image\n", r.ess_mean, r.k, r.ess_min);
    }
    std::printf("bits per dim     %.4f (ELBO)", r.bpd_elbo);
    if (r.k > 0) std::printf(", %.4f (k=%d)", r.bpd, r.k);
    std::printf("%s\n", r.bpd_from_density ? "  [Gaussian density x bin width 1/255: approximate]" : "");
    std::printf("active units     %d of %zu\n", r.active_units, r.mean_variance.size());
    for (size_t i = 0; i < r.level_sizes.size(); ++i)
      std::printf("level %zu%s  %4d units  KL %.3f nats  active units %d (by KL > 0.01 nats: %s)\n", i,
                  i == 0 ? " (top)" : "      ", r.level_sizes[i], r.kl_per_level[i], r.active_units_per_level[i],
                  r.kl_active_units_per_level[i] < 0 ? "n/a" : std::to_string(r.kl_active_units_per_level[i]).c_str());
    if (r.mi_samples > 0)
      std::printf("KL = I(x;z) + KL(q(z)||p(z)): %.3f + %.3f nats (at %d samples against %lld posteriors)\n",
                  r.mutual_info, r.aggregate_kl, r.mi_samples, static_cast<long long>(r.count));
    if (r.has_posterior_flow)
      std::printf("posterior flow   mean log|det| %.3f nats\n", r.posterior_flow_logdet);
    if (r.has_prior_flow)
      std::printf("prior flow       mean log|det| %.3f nats at the posterior samples\n", r.prior_flow_logdet);
    std::printf("protocol         %s test images (%s), %s, %s; data %s, model %s; %.1f s\n",
                std::to_string(r.count).c_str(), r.test_split.c_str(), r.likelihood.c_str(),
                r.likelihood != "bernoulli" ? "8-bit values"
                : r.binarized            ? "binarized once by a fixed seed (training: dynamically)"
                                         : "not binarized",
                r.data_hash.substr(0, 19).c_str(), r.model_config_hash.substr(0, 19).c_str(), r.seconds);
    if (r.kl_per_dim.empty()) {
      std::printf("KL per dimension (none: the %s prior does not factorise over dimensions)\n",
                  vae::to_string(model.config().prior.type).c_str());
    } else {
      std::printf("KL per dimension");
      for (double v : r.kl_per_dim) std::printf(" %.2f", v);
      std::printf("\n");
    }
    if (compare) std::printf("%s", vae::cli::comparison_text(compared).c_str());
  }
  return 0;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// " (did you mean --epochs?)" for an argument that is a near miss of one of the command's flags.
std::string nearest_flag_hint(const CLI::App& command, const std::string& arg) {
  const std::string word = arg.substr(0, arg.find('='));
  std::string best;
  size_t best_d = 3;  // at most two edits away
  for (const CLI::Option* o : command.get_options()) {
    for (const std::string& name : o->get_lnames()) {
      const std::string flag = "--" + name;
      const size_t d = edit_distance(word, flag);
      if (d < best_d || (flag.rfind(word, 0) == 0 && word.size() > 3 && best.empty())) best_d = d, best = flag;
    }
  }
  return best.empty() ? "" : " (did you mean " + best + "?)";
}

// CLI11's parse errors as one line (printed after the vae: error: prefix), with a suggestion for a
// mistyped flag and the help to read; every usage error exits 2.
std::string usage_message(const CLI::App& app, const CLI::ParseError& e) {
  const CLI::App* command = &app;
  for (const CLI::App* sub : app.get_subcommands())
    if (sub->parsed()) command = sub;
  std::string message = e.what(), hint;
  // "The following arguments were not expected: --epoch 3" -> the first unknown flag.
  if (const size_t colon = message.find("not expected:"); colon != std::string::npos) {
    std::stringstream rest(message.substr(colon + 13));
    std::string arg;
    while (rest >> arg)
      if (arg.rfind("-", 0) == 0) {
        hint = nearest_flag_hint(*command, arg);
        break;
      }
  }
  const std::string help = command == &app ? "vae --help" : "vae " + command->get_name() + " --help";
  return message + hint + " (see " + help + ")";
}

// An error that stops the command. In a job of several processes it reached only this rank, in the
// middle of the job, where the others cannot be told: say what and where, then end every process
// (MPI_Abort) rather than leave them waiting in a collective.
int report_error(const vae::ProcessGroup& group, bool whole_job, const std::string& message) {
  if (whole_job && group.size() > 1) {
    std::fprintf(stderr, "vae: error (%s): %s\n", group.describe().c_str(), message.c_str());
    std::fflush(stderr);
    group.abort(kExitError);
  }
  std::fprintf(stderr, "vae: error: %s\n", message.c_str());
  return kExitError;
}

}  // namespace

int main(int argc, char** argv) {
  // Under mpirun every process joins the job first (MPI_Init); without a launcher this is one process.
  const vae::ProcessGroup* group_ptr = nullptr;
  try {
    group_ptr = &vae::ProcessGroup::world();
  } catch (const vae::JobFailed& e) {
    if (e.report_here()) std::fprintf(stderr, "vae: error: %s\n", e.what());
    return e.exit_code();
  } catch (const vae::Error& e) {
    std::fprintf(stderr, "vae: error: %s\n", e.what());
    return kExitError;
  }
  const vae::ProcessGroup& group = *group_ptr;
  // A job's ranks all parse the same command line: rank 0 alone reports its usage errors.
  if (!group.is_root() && !std::freopen("/dev/null", "w", stdout)) return kExitError;
  CLI::App app{"vae: train, evaluate and sample variational autoencoders"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "vae 0.1.0");

  TrainFlags tf;
  auto* train = app.add_subcommand("train", "train a VAE and write model.safetensors, best.safetensors, "
                                            "train_state.safetensors, config.json, metrics.jsonl, samples.png");
  train->add_option("--config", tf.config_file,
                    "JSON file {\"model\": {...}, \"objective\": {...}, \"train\": {...}} (flags override it)");
  train->add_option("--resume", tf.resume, "continue the run in this folder where it stopped (same bits as never "
                                           "stopping); --epochs sets its new total");
  train->add_flag("--overwrite", tf.overwrite, "replace the run that --out holds");
  add_field_flags(*train, tf);

  std::string checkpoint, out_png, device = "cpu";
  vae::cli::DataFlags data_flags;
  int k = 0, threads = 0;
  int64_t limit = 0;
  bool as_json = false, strict_fp32 = false;
  auto* eval = app.add_subcommand("eval", "test -ELBO, importance-weighted -log p(x), active units, KL per dimension");
  eval->add_option("--checkpoint", checkpoint, "model.safetensors from vae train")->required();
  vae::cli::add_data_flags(eval, data_flags, true);
  eval->add_option("--k", k, "importance samples for -log p(x) (0 = ELBO only)")->check(CLI::Range(0, 1000000));
  eval->add_option("--limit", limit, "first N test images only")->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  eval->add_option("--threads", threads, "CPU threads, 0 = all cores")->check(CLI::Range(0, 1024));
  eval->add_option("--device", device, "cpu|cuda|auto");
  eval->add_flag("--json", as_json, "print one JSON object");
  bool compare = false;
  std::string anchors_path;
  eval->add_flag("--compare", compare,
                 "say which published results (bench/anchors.json) share this evaluation's protocol (data, likelihood, "
                 "binarization, k, test images) and how far the model is from each; --json adds them as \"compare\"");
  eval->add_option("--anchors", anchors_path, "compare against a published-results file of bench/anchors.json's form "
                   "instead of the built-in one (implies --compare)");
  eval->add_flag("--strict-fp32", strict_fp32, "CUDA: strict FP32 GEMMs instead of TF32 tensor cores");

  vae::cli::GenerateCommands gen;
  vae::cli::add_generate_commands(app, gen);

  int n_recon = 16, recon_scale = 1;
  auto* recon = app.add_subcommand("reconstruct", "test images above their reconstructions, as a PNG grid");
  recon->add_option("--checkpoint", checkpoint, "model.safetensors from vae train")->required();
  recon->add_option("--n", n_recon, "number of test images (default 16)")->check(CLI::Range(1, 1024));
  vae::cli::add_data_flags(recon, data_flags, true);
  recon->add_option("--out", out_png, "PNG file to write")->required();
  recon->add_option("--scale", recon_scale, "draw each pixel as S x S (default 1)")->check(CLI::Range(1, 16));
  bool keep_levels = false;
  int resamples = 3;
  uint64_t recon_seed = 0;
  float recon_temperature = 1.0f;
  recon->add_flag("--keep-levels", keep_levels,
                  "hierarchical models: below the reconstructions, rows that keep the top k levels (k = levels - 1 "
                  "down to 1) at their posterior means and draw the levels below from their priors");
  recon->add_option("--resamples", resamples, "--keep-levels: rows drawn for each k (default 3)")->check(CLI::Range(1, 16));
  recon->add_option("--temperature", recon_temperature, "--keep-levels: the drawn levels' temperature (default 1)")
      ->check(CLI::Range(0.0, 100.0));
  recon->add_option("--seed", recon_seed, "--keep-levels: the draws' seed (default 0)");
  recon->add_option("--threads", threads, "CPU threads, 0 = all cores")->check(CLI::Range(0, 1024));
  recon->add_option("--device", device, "cpu|cuda|auto");
  recon->add_flag("--strict-fp32", strict_fp32, "CUDA: strict FP32 GEMMs instead of TF32 tensor cores");

  // The command line's outcome when it ends the command here: a usage error (exit 2), or --help and
  // --version (exit 0, printed by CLI11). A job's ranks agree on it, so none waits for another that
  // stopped; rank 0 reports it.
  std::optional<vae::RankFailure> parse_outcome;
  // CLI11 would only say "a subcommand is required"; name the word it did not know.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names, hint;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
      if (edit_distance(argv[1], sub->get_name()) <= 2) hint = " (did you mean " + sub->get_name() + "?)";
    }
    if (!known)
      parse_outcome = vae::RankFailure{group.rank(), 1, kExitUsage,
                                       "unknown command '" + std::string(argv[1]) + "'" + hint + ": expected one of " +
                                           names + " (see vae --help)"};
  }
  if (!parse_outcome) {
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      if (e.get_exit_code() == 0) parse_outcome = vae::RankFailure{group.rank(), 1, app.exit(e), ""};
      else parse_outcome = vae::RankFailure{group.rank(), 1, kExitUsage, usage_message(app, e)};
    }
  }
  try {
    vae::raise_first_failure(group, parse_outcome);
  } catch (const vae::JobFailed& e) {
    if (e.report_here() && e.exit_code() != 0) std::fprintf(stderr, "vae: error: %s\n", e.what());
    return e.exit_code();
  }

  try {
    if (*train) return run_train(tf, group);
    if (*eval) {
      vae::set_num_threads(threads > 0 || group.size() == 1
                               ? threads
                               : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / group.local_size()));
      return run_eval(checkpoint, data_flags, k, as_json, limit, device, strict_fp32, compare, anchors_path, group);
    }
    // Sampling, encoding and reconstructing run in one process: in a job, rank 0 does it alone.
    if (!group.is_root()) return 0;
    if (const int rc = vae::cli::run_generate_commands(gen); rc >= 0) return rc;
    if (*recon) {
      vae::set_num_threads(threads);
      vae::Model model = load_model(checkpoint, device, strict_fp32);
      const vae::Dataset data = vae::cli::load_data_for(model, data_flags);
      const auto [inputs, outputs] = vae::reconstruct_images(model, data.test, n_recon);
      // Rows of up to 8: a row of test images, then the row of their reconstructions (and, keeping
      // levels, the rows that keep the top k levels, resamples rows for each k).
      const int cols = std::min(n_recon, 8), d = model.config().input_dim();
      std::vector<std::vector<float>> rows_of = {inputs.to_host(), outputs.to_host()};
      std::vector<std::string> kinds = {"test", "recon."};
      if (keep_levels) {
        const int levels = static_cast<int>(model.config().levels.size());
        if (levels < 2) throw vae::Error("--keep-levels needs a hierarchical model (train one with --levels)");
        for (int keep = levels - 1; keep >= 1; --keep)
          for (int r = 0; r < resamples; ++r) {
            rows_of.push_back(vae::reconstruct_keeping_levels(model, data.test, n_recon, keep, recon_temperature,
                                                              recon_seed + static_cast<uint64_t>(r)).to_host());
            kinds.push_back("top " + std::to_string(keep));
          }
      }
      std::vector<float> grid;
      std::vector<std::string> row_labels;
      int tiles = 0;
      for (int first = 0; first < n_recon; first += cols) {
        row_labels.insert(row_labels.end(), kinds.begin(), kinds.end());
        for (const auto* src : [&] {
               std::vector<const std::vector<float>*> p;
               for (const auto& r : rows_of) p.push_back(&r);
               return p;
             }())
          for (int i = first; i < first + cols; ++i) {
            if (i < n_recon) grid.insert(grid.end(), src->begin() + static_cast<int64_t>(i) * d, src->begin() + static_cast<int64_t>(i + 1) * d);
            else grid.insert(grid.end(), static_cast<size_t>(d), 0.0f);
            ++tiles;
          }
      }
      const std::string made = vae::cli::create_parent_folder(out_png);
      try {
        vae::write_png_grid_scaled(out_png, grid, tiles, model.config().image_channels, model.config().image_height,
                                   model.config().image_width, cols, recon_scale, row_labels);
      } catch (...) {
        vae::cli::remove_if_empty(made);
        throw;
      }
      std::printf("wrote %d test images and their reconstructions to %s\n", n_recon, out_png.c_str());
      return 0;
    }
  } catch (const vae::JobFailed& e) {
    // Every rank of the job knows; rank 0 (or the only process) says what failed.
    if (e.report_here()) std::fprintf(stderr, "vae: error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::bad_alloc&) {
    // Say what to shrink for the command that ran out: the model and batch in training, the
    // importance samples in evaluation, the sample count in sampling.
    const char* advice = *train ? "try a smaller --batch, or a smaller model (--hidden, --latent)"
                         : *eval ? "try a smaller --k, or --limit"
                                   : "try a smaller --n";
    return report_error(group, *train || *eval, std::string("out of memory; ") + advice);
  } catch (const std::exception& e) {
    return report_error(group, *train || *eval, e.what());
  }
  return 0;
}
