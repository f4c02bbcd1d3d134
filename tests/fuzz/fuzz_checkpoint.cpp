// libFuzzer harness: loading a model checkpoint (safetensors + the vae_config metadata, the shape
// checks against the configuration, the model-size bound) from arbitrary bytes.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>

#include "vae/error.hpp"
#include "vae/model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = [] {
    const std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    return base + "/vae-fuzz-ckpt-" + std::to_string(::getpid()) + ".safetensors";
  }();
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  try {
    const vae::Model m = vae::load_checkpoint(path);
    if (m.parameter_count() != m.config().parameter_count()) __builtin_trap();
  } catch (const vae::Error&) {
  }
  return 0;
}
