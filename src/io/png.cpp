// PNG image grids through stb_image_write (Debian's libstb-dev), encoded in memory and written atomically.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb_image_write.h>

#include <algorithm>
#include <cmath>

#include "io/atomic_file.hpp"
#include "vae/error.hpp"
#include "vae/train.hpp"

namespace vae {

void write_png_grid(const std::string& path, const std::vector<float>& images, int n, int channels, int height,
                    int width, int columns) {
  if (n < 1 || height < 1 || width < 1 || columns < 1 || channels < 1 || channels > 4)
    throw Error("write_png_grid: need at least one image, 1 to 4 channels and a positive size");
  if (static_cast<int64_t>(images.size()) < static_cast<int64_t>(n) * channels * height * width)
    throw Error("write_png_grid: " + std::to_string(images.size()) + " pixels for " + std::to_string(n) + " images");
  constexpr int kPad = 2;
  const int cols = std::min(columns, n);
  const int rows = (n + cols - 1) / cols;
  const int gw = cols * (width + kPad) + kPad, gh = rows * (height + kPad) + kPad;
  // Interleaved pixels (PNG's order) from planar images [n, C, H, W]; a dark grey frame (opaque).
  std::vector<uint8_t> grid(static_cast<size_t>(gw) * gh * channels, 64);
  if (channels == 2 || channels == 4)
    for (size_t p = 0; p < static_cast<size_t>(gw) * gh; ++p) grid[p * channels + channels - 1] = 255;
  const size_t plane = static_cast<size_t>(height) * width;
  for (int i = 0; i < n; ++i) {
    const int oy = kPad + (i / cols) * (height + kPad), ox = kPad + (i % cols) * (width + kPad);
    for (int c = 0; c < channels; ++c)
      for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x) {
          const float v = images[(static_cast<size_t>(i) * channels + c) * plane + static_cast<size_t>(y) * width + x];
          const float f = std::isfinite(v) ? std::clamp(v, 0.0f, 1.0f) : 0.0f;
          grid[(static_cast<size_t>(oy + y) * gw + ox + x) * channels + c] = static_cast<uint8_t>(std::lround(f * 255.0f));
        }
  }
  std::vector<uint8_t> png;
  auto sink = [](void* ctx, void* data, int size) {
    auto* out = static_cast<std::vector<uint8_t>*>(ctx);
    out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
  };
  if (!stbi_write_png_to_func(sink, &png, gw, gh, channels, grid.data(), gw * channels))
    throw Error("PNG encoding failed for '" + path + "'");
  write_file_atomic(path, png.data(), png.size());
}

}  // namespace vae
