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

void write_png_grid(const std::string& path, const std::vector<float>& images, int n, int height, int width,
                    int columns) {
  if (n < 1 || height < 1 || width < 1 || columns < 1)
    throw Error("write_png_grid: need at least one image and a positive size");
  if (static_cast<int64_t>(images.size()) < static_cast<int64_t>(n) * height * width)
    throw Error("write_png_grid: " + std::to_string(images.size()) + " pixels for " + std::to_string(n) + " images");
  constexpr int kPad = 2;
  const int cols = std::min(columns, n);
  const int rows = (n + cols - 1) / cols;
  const int gw = cols * (width + kPad) + kPad, gh = rows * (height + kPad) + kPad;
  std::vector<uint8_t> grid(static_cast<size_t>(gw) * gh, 64);  // dark grey frame
  for (int i = 0; i < n; ++i) {
    const int oy = kPad + (i / cols) * (height + kPad), ox = kPad + (i % cols) * (width + kPad);
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) {
        const float v = images[static_cast<size_t>(i) * height * width + static_cast<size_t>(y) * width + x];
        const float c = std::isfinite(v) ? std::clamp(v, 0.0f, 1.0f) : 0.0f;
        grid[static_cast<size_t>(oy + y) * gw + ox + x] = static_cast<uint8_t>(std::lround(c * 255.0f));
      }
  }
  std::vector<uint8_t> png;
  auto sink = [](void* ctx, void* data, int size) {
    auto* out = static_cast<std::vector<uint8_t>*>(ctx);
    out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
  };
  if (!stbi_write_png_to_func(sink, &png, gw, gh, 1, grid.data(), gw))
    throw Error("PNG encoding failed for '" + path + "'");
  write_file_atomic(path, png.data(), png.size());
}

}  // namespace vae
