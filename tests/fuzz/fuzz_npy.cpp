// libFuzzer harness: the .npy readers (images in every layout and dtype, and labels).
#include <cstdint>

#include "vae/data.hpp"
#include "vae/error.hpp"

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
  return 0;
}
