// libFuzzer harness: the IDX reader (images and labels, raw and gzipped). Any input must either
// parse into a consistent set or throw vae::Error; nothing else (crash, leak, sanitizer report,
// allocation beyond what the header is allowed to announce).
#include <cstdint>

#include "vae/data.hpp"
#include "vae/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const vae::ImageSet s = vae::parse_idx_images(data, size, "fuzz");
    if (s.pixels.size() != static_cast<size_t>(s.count) * s.pixels_per_image()) __builtin_trap();
  } catch (const vae::Error&) {
  }
  try {
    const std::vector<int32_t> l = vae::parse_idx_labels(data, size, "fuzz");
    if (l.empty()) __builtin_trap();
  } catch (const vae::Error&) {
  }
  return 0;
}
