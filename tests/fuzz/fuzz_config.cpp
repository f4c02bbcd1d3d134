// libFuzzer harness: both configuration parsers (model and training). A configuration that parses
// must be valid, and must write and parse back to the same JSON.
#include <cstdint>
#include <string>

#include "vae/config.hpp"
#include "vae/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const vae::ModelConfig m = vae::ModelConfig::from_json(text);
    if (vae::ModelConfig::from_json(m.to_json()).to_json() != m.to_json()) __builtin_trap();
  } catch (const vae::Error&) {
  }
  try {
    const vae::TrainConfig t = vae::TrainConfig::from_json(text);
    if (vae::TrainConfig::from_json(t.to_json()).to_json() != t.to_json()) __builtin_trap();
  } catch (const vae::Error&) {
  }
  return 0;
}
