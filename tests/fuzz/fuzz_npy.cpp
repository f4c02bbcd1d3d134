// libFuzzer harness: the .npy readers (images in every layout and dtype, labels, and float32 latent codes).
#include <cstdint>

#include "vae/data.hpp"
#include "vae/error.hpp"
#include "vae/generate.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const vae::ImageSet s = vae::parse_npy_images(data, size, "fuzz");
    if (s.pixels.size() != static_cast<size_t>(s.count) * s.pixels_per_image() || s.channels < 1 || s.channels > 4)
      __builtin_trap();
  } catch (const vae::Error&) {
  }
  try {
    for (int32_t l : vae::parse_npy_labels(data, size, "fuzz"))
      if (l < 0) __builtin_trap();
  } catch (const vae::Error&) {
  }
  try {
    std::vector<int64_t> shape;
    const std::vector<float> v = vae::parse_npy_floats(data, size, "fuzz", shape);
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    if (n != static_cast<int64_t>(v.size())) __builtin_trap();
  } catch (const vae::Error&) {
  }
  return 0;
}
