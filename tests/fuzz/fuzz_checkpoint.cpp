// libFuzzer harness: loading a model checkpoint (safetensors + the vae_config metadata, the shape
// checks against the configuration, the model-size bound) and a training state (the Adam moments
// and progress that --resume reads, checked against a fixed small model) from arbitrary bytes.
// Seeds: a checkpoint and a training state of a 2x2-pixel model (hidden 3, latent 1, batch 32).
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>

#include "vae/error.hpp"
#include "vae/model.hpp"
#include "vae/train.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = [] {
    const std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    return base + "/vae-fuzz-ckpt-" + std::to_string(::getpid()) + ".safetensors";
  }();
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  try {
    const vae::Model m = vae::load_checkpoint(path);
    if (m.parameter_count() != m.config().parameter_count()) __builtin_trap();
    (void)vae::checkpoint_step(path);
  } catch (const vae::Error&) {
  }
  try {
    static vae::Model model = [] {
      vae::ModelConfig c;
      c.image_height = 2;
      c.image_width = 2;
      c.encoder.hidden = {3};
      c.latent = 1;
      return vae::Model(c);
    }();
    vae::TrainConfig t;
    t.batch = 32;
    vae::Trainer trainer(model, t);
    trainer.load_state(path, /*checkpoint_step=*/1);
    if (trainer.progress().global_step != 1) __builtin_trap();
  } catch (const vae::Error&) {
  }
  return 0;
}
