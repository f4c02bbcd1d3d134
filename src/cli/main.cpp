// The `vae` command: train, eval, sample, reconstruct. Errors print one line on stderr and exit 1;
// bad flags exit 2 (CLI11's convention) with the offending flag named.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include "cli/progress.hpp"
#include "io/atomic_file.hpp"
#include "vae/vae.hpp"

namespace {

using json = nlohmann::json;

struct TrainFlags {
  std::optional<std::string> config_file, data, out, hidden, likelihood, activation, optimizer, schedule, device;
  std::optional<int> epochs, batch, latent, warmup_epochs, threads;
  std::optional<float> lr, beta, weight_decay, clip_norm;
  std::optional<uint64_t> seed;
  std::optional<int64_t> train_limit, test_limit;
  bool no_cuda_graph = false, strict_fp32 = false, no_fused_epilogues = false;
};

std::vector<int> parse_hidden(const std::string& text) {
  std::vector<int> widths;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < 1)
      throw vae::Error("--hidden expects comma-separated positive widths such as 512,256; got '" + text + "'");
    widths.push_back(v);
  }
  if (widths.empty()) throw vae::Error("--hidden expects at least one width, such as 512,256");
  return widths;
}

void load_config_file(const std::string& path, vae::ModelConfig& model, vae::TrainConfig& train) {
  const auto bytes = vae::read_file_bytes(path, "config file");
  json j;
  try {
    j = json::parse(bytes.begin(), bytes.end());
  } catch (const json::exception& e) {
    throw vae::Error("config file '" + path + "' is not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw vae::Error("config file '" + path + "' must hold a JSON object with 'model' and/or 'train'");
  for (const auto& [key, value] : j.items())
    if (key != "model" && key != "train")
      throw vae::Error("config file '" + path + "': unknown top-level key '" + key + "' (expected 'model' and 'train')");
  if (j.contains("model")) model = vae::ModelConfig::from_json(j["model"].dump());
  if (j.contains("train")) train = vae::TrainConfig::from_json(j["train"].dump(), train);
}

std::string run_config_json(const vae::ModelConfig& model, const vae::TrainConfig& train) {
  json j;
  j["model"] = json::parse(model.to_json());
  j["train"] = json::parse(train.to_json());
  return j.dump(2) + "\n";
}

int run_train(const TrainFlags& f) {
  vae::ModelConfig model_cfg;
  vae::TrainConfig cfg;
  if (f.config_file) load_config_file(*f.config_file, model_cfg, cfg);
  if (f.data) cfg.data_dir = *f.data;
  if (f.out) cfg.out_dir = *f.out;
  if (f.epochs) cfg.epochs = *f.epochs;
  if (f.batch) cfg.batch = *f.batch;
  if (f.lr) cfg.lr = *f.lr;
  if (f.beta) cfg.beta = *f.beta;
  if (f.warmup_epochs) cfg.warmup_epochs = *f.warmup_epochs;
  if (f.seed) cfg.seed = *f.seed;
  if (f.threads) cfg.threads = *f.threads;
  if (f.weight_decay) cfg.weight_decay = *f.weight_decay;
  if (f.clip_norm) cfg.clip_norm = *f.clip_norm;
  if (f.optimizer) cfg.optimizer = vae::parse_optimizer(*f.optimizer);
  if (f.schedule) cfg.schedule = vae::parse_schedule(*f.schedule);
  if (f.train_limit) cfg.train_limit = *f.train_limit;
  if (f.test_limit) cfg.test_limit = *f.test_limit;
  if (f.device) cfg.device = vae::parse_device(*f.device);
  if (f.no_cuda_graph) cfg.cuda_graph = false;
  if (f.strict_fp32) cfg.tf32 = false;
  if (f.no_fused_epilogues) cfg.fused_epilogues = false;
  if (f.latent) model_cfg.latent = *f.latent;
  if (f.hidden) model_cfg.hidden = parse_hidden(*f.hidden);
  if (f.likelihood) model_cfg.likelihood = vae::parse_likelihood(*f.likelihood);
  if (f.activation) model_cfg.activation = vae::parse_activation(*f.activation);
  model_cfg.validate();
  cfg.validate();

  const vae::Dataset data = vae::load_dataset(cfg.data_dir);
  model_cfg.image_height = data.train.height;
  model_cfg.image_width = data.train.width;
  std::error_code ec;
  std::filesystem::create_directories(cfg.out_dir, ec);
  if (ec) throw vae::Error("cannot create output folder '" + cfg.out_dir + "': " + ec.message());
  const std::filesystem::path out(cfg.out_dir);
  vae::write_file_atomic((out / "config.json").string(), run_config_json(model_cfg, cfg));

  vae::Model model(model_cfg, cfg.device);
  model.initialize(cfg.seed);
  vae::Trainer trainer(model, cfg);
  const bool tty = ::isatty(STDERR_FILENO);
  vae::cli::ProgressBar bar(cfg.epochs);
  std::string metrics_lines;
  std::printf("training %lld parameters on %lld images (%s, batch %d, %d epochs) -> %s\n",
              static_cast<long long>(model.parameter_count()),
              static_cast<long long>(cfg.train_limit > 0 ? std::min(cfg.train_limit, data.train.count) : data.train.count),
              vae::to_string(cfg.device).c_str(), cfg.batch, cfg.epochs, cfg.out_dir.c_str());
  std::fflush(stdout);
  trainer.fit(
      data, [&](const vae::StepProgress& p) { if (tty) bar.update(p); },
      [&](const vae::EpochMetrics& m) {
        bar.finish_line();
        metrics_lines += m.to_json() + "\n";
        vae::write_file_atomic((out / "metrics.jsonl").string(), metrics_lines);
        vae::save_checkpoint(model, (out / "model.safetensors").string());
        std::printf("epoch %d/%d  train loss %.2f  test -ELBO %.2f (recon %.2f, KL %.2f)  active units %d  %.1fs  %.0f samples/s\n",
                    m.epoch, cfg.epochs, m.train_loss, m.test.neg_elbo, m.test.recon, m.test.kl, m.test.active_units,
                    m.seconds, m.samples_per_s);
        std::fflush(stdout);
      });
  const vae::Tensor samples = vae::sample_images(model, 64, 1.0f, cfg.seed);
  vae::write_png_grid((out / "samples.png").string(), samples.to_host(), 64, model_cfg.image_channels, model_cfg.image_height,
                      model_cfg.image_width, 8);
  std::printf("wrote %s/{model.safetensors,config.json,metrics.jsonl,samples.png}\n", cfg.out_dir.c_str());
  return 0;
}

// A saved model on the asked-for device, with the GEMM numerics eval, sample and reconstruct share.
vae::Model load_model(const std::string& checkpoint, const std::string& device, bool strict_fp32) {
  vae::Model model = vae::load_checkpoint(checkpoint, vae::parse_device(device));
  model.set_numerics({!strict_fp32, true});
  return model;
}

int run_eval(const std::string& checkpoint, const std::string& data_dir, int k, bool as_json, int threads,
             int64_t limit, const std::string& device, bool strict_fp32) {
  vae::set_num_threads(threads);
  vae::Model model = load_model(checkpoint, device, strict_fp32);
  const vae::Dataset data = vae::load_dataset(data_dir);
  vae::EvalOptions opt;
  opt.k = k;
  opt.limit = limit;
  const vae::EvalResult r = vae::evaluate(model, data.test, opt);
  if (as_json) {
    json j;
    j["count"] = r.count;
    j["neg_elbo"] = r.neg_elbo;
    j["recon"] = r.recon;
    j["kl"] = r.kl;
    j["active_units"] = r.active_units;
    j["kl_per_dim"] = r.kl_per_dim;
    j["k"] = r.k;
    if (r.k > 0) j["iwae_nll"] = r.iwae_nll;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("test images      %lld\n", static_cast<long long>(r.count));
    std::printf("-ELBO            %.3f nats (reconstruction %.3f, KL %.3f)\n", r.neg_elbo, r.recon, r.kl);
    if (r.k > 0) std::printf("-log p(x), k=%-4d %.3f nats (importance weighted)\n", r.k, r.iwae_nll);
    std::printf("active units     %d of %zu\n", r.active_units, r.kl_per_dim.size());
    std::printf("KL per dimension");
    for (double v : r.kl_per_dim) std::printf(" %.2f", v);
    std::printf("\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vae: train, evaluate and sample variational autoencoders"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "vae 0.1.0");

  TrainFlags tf;
  auto* train = app.add_subcommand("train", "train a VAE and write model.safetensors, config.json, metrics.jsonl, samples.png");
  train->add_option("--config", tf.config_file, "JSON file {\"model\": {...}, \"train\": {...}} (flags override it)");
  train->add_option("--data", tf.data, "folder with the IDX files (default /usr/share/datasets/fashion-mnist)");
  train->add_option("--out", tf.out, "run folder (default runs/latest)");
  train->add_option("--epochs", tf.epochs, "epochs (default 10)")->check(CLI::Range(1, 100000));
  train->add_option("--batch", tf.batch, "batch size (default 128)")->check(CLI::Range(1, 1 << 20));
  train->add_option("--latent", tf.latent, "latent dimensions (default 32)")->check(CLI::Range(1, 4096));
  train->add_option("--hidden", tf.hidden, "encoder widths, decoder mirrors (default 512,256)");
  train->add_option("--lr", tf.lr, "learning rate (default 1e-3)")->check(CLI::Range(1e-9, 10.0));
  train->add_option("--beta", tf.beta, "KL weight (default 1)")->check(CLI::Range(0.0, 1000.0));
  train->add_option("--warmup-epochs", tf.warmup_epochs, "linear beta warm-up epochs (default 0)")->check(CLI::Range(0, 100000));
  train->add_option("--likelihood", tf.likelihood, "bernoulli|gaussian (default bernoulli)");
  train->add_option("--activation", tf.activation, "relu|leaky_relu|tanh|silu (default relu)");
  train->add_option("--optimizer", tf.optimizer, "adam|adamw (default adam)");
  train->add_option("--weight-decay", tf.weight_decay, "weight decay (default 0)")->check(CLI::Range(0.0, 10.0));
  train->add_option("--clip-norm", tf.clip_norm, "global gradient-norm clipping, 0 = off")->check(CLI::Range(0.0, 1e6));
  train->add_option("--schedule", tf.schedule, "constant|cosine learning rate (default constant)");
  train->add_option("--seed", tf.seed, "random seed (default 0)");
  train->add_option("--threads", tf.threads, "CPU threads, 0 = all cores (default 0)")->check(CLI::Range(0, 1024));
  train->add_option("--train-limit", tf.train_limit, "train on the first N images only")->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  train->add_option("--test-limit", tf.test_limit, "evaluate on the first N test images only")->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  train->add_option("--device", tf.device, "cpu|cuda|auto (default cpu)");
  train->add_flag("--no-cuda-graph", tf.no_cuda_graph,
                  "CUDA: launch every kernel of each step instead of replaying one recorded graph (debugging)");
  train->add_flag("--strict-fp32", tf.strict_fp32, "CUDA: strict FP32 GEMMs instead of TF32 tensor cores");
  train->add_flag("--no-fused-epilogues", tf.no_fused_epilogues,
                  "CUDA: bias, ReLU and their gradients as separate kernels, not in the cuBLASLt GEMM (debugging)");

  std::string checkpoint, data_dir = "/usr/share/datasets/fashion-mnist", out_png, device = "cpu";
  int k = 0, n = 64, threads = 0;
  int64_t limit = 0;
  bool as_json = false, strict_fp32 = false;
  float temperature = 1.0f;
  uint64_t seed = 0;
  auto* eval = app.add_subcommand("eval", "test -ELBO, importance-weighted -log p(x), active units, KL per dimension");
  eval->add_option("--checkpoint", checkpoint, "model.safetensors from vae train")->required();
  eval->add_option("--data", data_dir, "folder with the IDX files");
  eval->add_option("--k", k, "importance samples for -log p(x) (0 = ELBO only)")->check(CLI::Range(0, 1000000));
  eval->add_option("--limit", limit, "first N test images only")->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  eval->add_option("--threads", threads, "CPU threads, 0 = all cores")->check(CLI::Range(0, 1024));
  eval->add_option("--device", device, "cpu|cuda|auto");
  eval->add_flag("--json", as_json, "print one JSON object");
  eval->add_flag("--strict-fp32", strict_fp32, "CUDA: strict FP32 GEMMs instead of TF32 tensor cores");

  auto* sample = app.add_subcommand("sample", "decode samples from the prior into a PNG grid");
  sample->add_option("--checkpoint", checkpoint, "model.safetensors from vae train")->required();
  sample->add_option("--n", n, "number of samples (default 64)")->check(CLI::Range(1, 65536));
  sample->add_option("--temperature", temperature, "prior standard deviation (default 1)")->check(CLI::Range(0.0, 100.0));
  sample->add_option("--seed", seed, "random seed (default 0)");
  sample->add_option("--out", out_png, "PNG file to write")->required();
  sample->add_option("--device", device, "cpu|cuda|auto");
  sample->add_flag("--strict-fp32", strict_fp32, "CUDA: strict FP32 GEMMs instead of TF32 tensor cores");

  int n_recon = 16;
  auto* recon = app.add_subcommand("reconstruct", "test images above their reconstructions, as a PNG grid");
  recon->add_option("--checkpoint", checkpoint, "model.safetensors from vae train")->required();
  recon->add_option("--n", n_recon, "number of test images (default 16)")->check(CLI::Range(1, 1024));
  recon->add_option("--data", data_dir, "folder with the IDX files");
  recon->add_option("--out", out_png, "PNG file to write")->required();
  recon->add_option("--device", device, "cpu|cuda|auto");
  recon->add_flag("--strict-fp32", strict_fp32, "CUDA: strict FP32 GEMMs instead of TF32 tensor cores");

  // CLI11 would only say "a subcommand is required"; name the word it did not know.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "vae: unknown command '%s': expected one of %s (see vae --help)\n", argv[1], names.c_str());
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints the message; --help and --version exit 0, every usage error exits 2.
    return app.exit(e) == 0 ? 0 : 2;
  }

  try {
    if (*train) return run_train(tf);
    if (*eval) return run_eval(checkpoint, data_dir, k, as_json, threads, limit, device, strict_fp32);
    if (*sample) {
      vae::Model model = load_model(checkpoint, device, strict_fp32);
      const vae::Tensor images = vae::sample_images(model, n, temperature, seed);
      vae::write_png_grid(out_png, images.to_host(), n, model.config().image_channels, model.config().image_height, model.config().image_width,
                          std::min(n, 8));
      std::printf("wrote %d samples to %s\n", n, out_png.c_str());
      return 0;
    }
    if (*recon) {
      vae::Model model = load_model(checkpoint, device, strict_fp32);
      const vae::Dataset data = vae::load_dataset(data_dir);
      const auto [inputs, outputs] = vae::reconstruct_images(model, data.test, n_recon);
      // Rows of up to 8: a row of test images, then the row of their reconstructions.
      const int cols = std::min(n_recon, 8), d = model.config().input_dim();
      const std::vector<float> a = inputs.to_host(), b = outputs.to_host();
      std::vector<float> grid;
      int tiles = 0;
      for (int first = 0; first < n_recon; first += cols) {
        for (const auto* src : {&a, &b})
          for (int i = first; i < first + cols; ++i) {
            if (i < n_recon) grid.insert(grid.end(), src->begin() + static_cast<int64_t>(i) * d, src->begin() + static_cast<int64_t>(i + 1) * d);
            else grid.insert(grid.end(), static_cast<size_t>(d), 0.0f);
            ++tiles;
          }
      }
      vae::write_png_grid(out_png, grid, tiles, model.config().image_channels, model.config().image_height, model.config().image_width, cols);
      std::printf("wrote %d test images and their reconstructions to %s\n", n_recon, out_png.c_str());
      return 0;
    }
  } catch (const vae::Error& e) {
    std::fprintf(stderr, "vae: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "vae: error: out of memory; try a smaller --batch\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vae: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
