// libFuzzer harness: the PNG-folder reader. The input is cut into up to three PNG files at the
// bytes "\xffCUT\xff" (so the fuzzer can grow several images and mix their sizes and colour types),
// written into a scratch folder under /dev/shm (or $TMPDIR), and read back with read_png_folder;
// each piece is also decoded alone with decode_png.
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "vae/data.hpp"
#include "vae/error.hpp"

namespace {

std::filesystem::path scratch() {
  static const std::filesystem::path dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : (tmp ? tmp : "/tmp");
    auto d = base / ("vae-fuzz-png-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char kCut[] = "\xff" "CUT" "\xff";
  const std::string in(reinterpret_cast<const char*>(data), size);
  const auto dir = scratch();
  for (const auto& e : std::filesystem::directory_iterator(dir)) std::filesystem::remove(e.path());
  size_t start = 0;
  for (int i = 0; i < 3 && start <= in.size(); ++i) {
    size_t end = in.find(kCut, start, 5);
    if (end == std::string::npos || i == 2) end = in.size();
    const std::string piece = in.substr(start, end - start);
    std::ofstream(dir / ("img" + std::to_string(i) + ".png"), std::ios::binary) << piece;
    try {
      const vae::DecodedPng p = vae::decode_png(reinterpret_cast<const uint8_t*>(piece.data()), piece.size(), "fuzz");
      if (p.pixels.size() != static_cast<size_t>(p.channels) * p.height * p.width) __builtin_trap();
    } catch (const vae::Error&) {
    }
    start = end + 5;
  }
  try {
    const vae::ImageSet s = vae::read_png_folder(dir.string());
    if (s.pixels.size() != static_cast<size_t>(s.count) * s.pixels_per_image()) __builtin_trap();
  } catch (const vae::Error&) {
  }
  return 0;
}
