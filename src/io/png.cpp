// PNG image grids through stb_image_write (Debian's libstb-dev), encoded in memory and written atomically.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb_image_write.h>
#include <stb_easy_font.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "io/atomic_file.hpp"
#include "vae/error.hpp"
#include "vae/generate.hpp"
#include "vae/train.hpp"

namespace vae {

namespace {

// PNG bytes of interleaved pixels, written atomically.
void write_png_pixels(const std::string& path, const std::vector<uint8_t>& pixels, int width, int height, int channels) {
  std::vector<uint8_t> png;
  auto sink = [](void* ctx, void* data, int size) {
    auto* out = static_cast<std::vector<uint8_t>*>(ctx);
    out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
  };
  if (!stbi_write_png_to_func(sink, &png, width, height, channels, pixels.data(), width * channels))
    throw Error("PNG encoding failed for '" + path + "'");
  write_file_atomic(path, png.data(), png.size());
}

}  // namespace

void write_png_grid(const std::string& path, const std::vector<float>& images, int n, int channels, int height,
                    int width, int columns) {
  write_png_grid_scaled(path, images, n, channels, height, width, columns, 1);
}

namespace {

// stb_easy_font's text as filled rectangles at an integer scale, in text coordinates (x right, y
// down from the top of the line): each quad's corners.
template <class Fill>
void easy_font_quads(const std::string& s, int scale, Fill fill) {
  std::vector<char> buf(s.begin(), s.end());
  buf.push_back(0);
  std::vector<char> quads(60000);
  const int n = stb_easy_font_print(0, 0, buf.data(), nullptr, quads.data(), static_cast<int>(quads.size()));
  for (int q = 0; q < n; ++q) {
    const float* v = reinterpret_cast<const float*>(quads.data() + q * 64);  // 4 vertices of 16 bytes: x, y, z, rgba
    fill(static_cast<int>(v[0]) * scale, static_cast<int>(v[1]) * scale, static_cast<int>(v[8]) * scale,
         static_cast<int>(v[9]) * scale);
  }
}

int easy_font_width(const std::string& s, int scale) {
  std::vector<char> buf(s.begin(), s.end());
  buf.push_back(0);
  return stb_easy_font_width(buf.data()) * scale;
}

constexpr int kGlyphHeight = 7;  // stb_easy_font's capital letters and digits, at scale 1

}  // namespace

void write_png_grid_scaled(const std::string& path, const std::vector<float>& images, int n, int channels, int height,
                           int width, int columns, int scale, const std::vector<std::string>& row_labels) {
  if (n < 1 || height < 1 || width < 1 || columns < 1 || channels < 1 || channels > 4 || scale < 1 || scale > 64)
    throw Error("write_png_grid: need at least one image, 1 to 4 channels, a positive size and a scale of 1 to 64");
  if (static_cast<int64_t>(images.size()) < static_cast<int64_t>(n) * channels * height * width)
    throw Error("write_png_grid: " + std::to_string(images.size()) + " pixels for " + std::to_string(n) + " images");
  constexpr int kPad = 2;
  const int cols = std::min(columns, n);
  const int rows = (n + cols - 1) / cols;
  const int th = height * scale, tw = width * scale;
  // The labels' margin: text as tall as a third of a tile where it fits (at least stb_easy_font's 7
  // pixels), its width the longest label's.
  const int text_scale = std::clamp(th / (3 * kGlyphHeight), 1, 4);
  int margin = 0;
  for (const std::string& label : row_labels) margin = std::max(margin, easy_font_width(label, text_scale) + 2 * kPad);
  const int64_t gw = margin + int64_t(cols) * (tw + kPad) + kPad, gh = int64_t(rows) * (th + kPad) + kPad;
  if (gw * gh > (int64_t{1} << 28)) throw Error("write_png_grid: the grid would be above 2^28 pixels; use a smaller --scale or --n");
  // Interleaved pixels (PNG's order) from planar images [n, C, H, W]; a dark grey frame (opaque).
  std::vector<uint8_t> grid(static_cast<size_t>(gw * gh) * channels, 64);
  if (channels == 2 || channels == 4)
    for (size_t p = 0; p < static_cast<size_t>(gw * gh); ++p) grid[p * channels + channels - 1] = 255;
  const size_t plane = static_cast<size_t>(height) * width;
  for (int i = 0; i < n; ++i) {
    const int64_t oy = kPad + int64_t(i / cols) * (th + kPad), ox = margin + kPad + int64_t(i % cols) * (tw + kPad);
    for (int c = 0; c < channels; ++c)
      for (int y = 0; y < th; ++y)
        for (int x = 0; x < tw; ++x) {
          const float v = images[(static_cast<size_t>(i) * channels + c) * plane + static_cast<size_t>(y / scale) * width + x / scale];
          const float f = std::isfinite(v) ? std::clamp(v, 0.0f, 1.0f) : 0.0f;
          grid[static_cast<size_t>((oy + y) * gw + ox + x) * channels + c] = static_cast<uint8_t>(std::lround(f * 255.0f));
        }
  }
  // Each row's label in white, centred on the row's height (the colour channels; alpha stays opaque).
  const int colour_channels = channels == 2 || channels == 4 ? channels - 1 : channels;
  for (int r = 0; r < rows && r < static_cast<int>(row_labels.size()); ++r) {
    const int64_t oy = kPad + int64_t(r) * (th + kPad) + std::max(0, (th - kGlyphHeight * text_scale) / 2);
    easy_font_quads(row_labels[static_cast<size_t>(r)], text_scale, [&](int x0, int y0, int x1, int y1) {
      for (int64_t y = oy + y0; y < std::min<int64_t>(oy + y1, gh); ++y)
        for (int64_t x = kPad + x0; x < std::min<int64_t>(kPad + x1, margin); ++x)
          for (int c = 0; c < colour_channels; ++c) grid[static_cast<size_t>(y * gw + x) * channels + c] = 255;
    });
  }
  write_png_pixels(path, grid, static_cast<int>(gw), static_cast<int>(gh), channels);
}

namespace {

// An RGB canvas with the few drawing operations a scatter plot needs; text through stb_easy_font
// (its quads filled, drawn at an integer scale).
struct Canvas {
  int w, h;
  std::vector<uint8_t> px;
  Canvas(int width, int height) : w(width), h(height), px(static_cast<size_t>(width) * height * 3, 255) {}
  void put(int x, int y, const uint8_t c[3]) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    for (int k = 0; k < 3; ++k) px[(static_cast<size_t>(y) * w + x) * 3 + k] = c[k];
  }
  void rect(int x0, int y0, int x1, int y1, const uint8_t c[3]) {
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) put(x, y, c);
  }
  void text(int x, int y, const std::string& s, int scale, const uint8_t c[3]) {
    easy_font_quads(s, scale, [&](int x0, int y0, int x1, int y1) { rect(x + x0, y + y0, x + x1, y + y1, c); });
  }
  static int text_width(const std::string& s, int scale) { return easy_font_width(s, scale); }
};

// Matplotlib's tab10 palette.
constexpr uint8_t kPalette[10][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189},
                                     {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};

}  // namespace

void write_scatter_png(const std::string& path, const std::vector<float>& points, int64_t n,
                       const std::vector<int32_t>& labels, const std::vector<std::string>& class_names,
                       const std::string& title, const std::string& x_name, const std::string& y_name) {
  if (n < 1 || static_cast<int64_t>(points.size()) != 2 * n) throw Error("write_scatter_png: expected points [n, 2]");
  if (!labels.empty() && static_cast<int64_t>(labels.size()) != n) throw Error("write_scatter_png: one label per point");
  constexpr int W = 900, H = 700, left = 70, right = 700, top = 50, bottom = 630;
  Canvas cv(W, H);
  // Axis ranges from the 0.5% and 99.5% quantiles, so a few far points do not squash the rest.
  auto range = [&](int axis, float& lo, float& hi) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = points[static_cast<size_t>(i * 2 + axis)];
    std::sort(v.begin(), v.end());
    lo = v[static_cast<size_t>(std::floor(0.005 * double(n - 1)))];
    hi = v[static_cast<size_t>(std::ceil(0.995 * double(n - 1)))];
    const float pad = std::max(1e-6f, (hi - lo) * 0.05f);
    lo -= pad, hi += pad;
  };
  float x0, x1, y0, y1;
  range(0, x0, x1);
  range(1, y0, y1);
  const uint8_t black[3] = {0, 0, 0}, grey[3] = {200, 200, 200};
  int classes = 1;
  for (int32_t y : labels) classes = std::max(classes, y + 1);
  // Data coordinates to pixels.
  const auto to_x = [&](float v) { return left + static_cast<int>((v - x0) / (x1 - x0) * (right - left)); };
  const auto to_y = [&](float v) { return bottom - static_cast<int>((v - y0) / (y1 - y0) * (bottom - top)); };
  for (int64_t i = 0; i < n; ++i) {
    const float px = points[static_cast<size_t>(i * 2)], py = points[static_cast<size_t>(i * 2 + 1)];
    if (!(px >= x0 && px <= x1 && py >= y0 && py <= y1)) continue;
    const int sx = to_x(px), sy = to_y(py);
    const uint8_t* c = labels.empty() ? kPalette[0] : kPalette[labels[static_cast<size_t>(i)] % 10];
    cv.rect(sx - 1, sy - 1, sx + 2, sy + 2, c);
  }
  // Frame, zero lines, ticks at the range's ends, names, title.
  if (x0 < 0 && x1 > 0) cv.rect(to_x(0), top, to_x(0) + 1, bottom, grey);
  if (y0 < 0 && y1 > 0) cv.rect(left, to_y(0), right, to_y(0) + 1, grey);
  cv.rect(left, top, right, top + 1, black);
  cv.rect(left, bottom, right + 1, bottom + 1, black);
  cv.rect(left, top, left + 1, bottom, black);
  cv.rect(right, top, right + 1, bottom, black);
  auto number = [](float v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2f", v);
    return std::string(b);
  };
  cv.text(left, bottom + 8, number(x0), 2, black);
  cv.text(right - Canvas::text_width(number(x1), 2), bottom + 8, number(x1), 2, black);
  cv.text(8, bottom - 14, number(y0), 2, black);
  cv.text(8, top, number(y1), 2, black);
  cv.text((left + right - Canvas::text_width(x_name, 2)) / 2, bottom + 30, x_name, 2, black);
  cv.text(8, (top + bottom) / 2, y_name, 2, black);
  cv.text(left, 14, title, 2, black);
  if (!labels.empty())
    for (int c = 0; c < classes && c < 40; ++c) {
      const int ly = top + 10 + c * 22;
      cv.rect(right + 20, ly, right + 32, ly + 12, kPalette[c % 10]);
      const std::string name = c < static_cast<int>(class_names.size()) ? class_names[static_cast<size_t>(c)] : "class " + std::to_string(c);
      cv.text(right + 40, ly - 1, name, 2, black);
    }
  write_png_pixels(path, cv.px, W, H, 3);
}

}  // namespace vae
