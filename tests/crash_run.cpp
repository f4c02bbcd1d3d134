// A small training run that ends itself (_exit, as kill -9 would) just before the Nth file rename of
// this process: the driver of EndToEnd.CrashAtEveryRenameLosesNothing (test_end_to_end.cpp).
//   vae_crash_run DATA OUT N   (N = 0: no crash)
// A folder that holds a training state is resumed; otherwise a new run starts there. Either way it
// trains to 3 epochs of a small model.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <filesystem>
#include <string>

#include "io/atomic_file.hpp"
#include "vae/vae.hpp"

namespace {

long crash_at = 0, renames = 0;

void count_rename(const std::string&) {
  if (++renames == crash_at) _exit(9);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: vae_crash_run DATA OUT N\n");
    return 2;
  }
  crash_at = std::strtol(argv[3], nullptr, 10);
  vae::set_rename_hook(count_rename);
  try {
    const std::string out = argv[2];
    std::optional<vae::TrainingRun> run;
    if (std::filesystem::exists(std::filesystem::path(out) / "train_state.safetensors")) {
      run.emplace(vae::TrainingRun::resume(out));
    } else {
      vae::ModelConfig m;
      m.encoder.hidden = {32};
      m.latent = 4;
      vae::TrainConfig t;
      t.data_dir = argv[1];
      t.out_dir = out;
      t.epochs = 3;
      t.batch = 50;
      t.train_limit = 500;
      t.test_limit = 100;
      t.threads = 1;
      t.seed = 3;
      run.emplace(vae::TrainingRun::start(m, t, false));
    }
    run->prepare_folder();
    run->fit();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vae_crash_run: %s\n", e.what());
    return 1;
  }
  return 0;
}
