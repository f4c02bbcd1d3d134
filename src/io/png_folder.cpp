// PNG images in, through libpng's simplified API (Debian's libpng-dev): decode_png for one image,
// read_png_folder for a folder of them, with labels from class sub-folders.
#include <png.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

#include "io/atomic_file.hpp"
#include "vae/data.hpp"
#include "vae/error.hpp"

namespace vae {
namespace {

namespace fs = std::filesystem;

// libpng's simplified reader; png_image_free runs whatever happens.
struct PngReader {
  png_image image{};
  PngReader() {
    std::memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
  }
  ~PngReader() { png_image_free(&image); }
  PngReader(const PngReader&) = delete;
  PngReader& operator=(const PngReader&) = delete;
};

bool is_png_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".png";
}

// Sorted regular *.png files directly in dir.
std::vector<fs::path> png_files(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file(ec) && is_png_name(e.path())) out.push_back(e.path());
  if (ec) throw Error("cannot list folder '" + dir.string() + "': " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

// Width, height and whether the image is in colour, from the header alone.
struct PngHeader {
  int width = 0, height = 0;
  bool colour = false;
};

PngHeader png_header(PngReader& r, const uint8_t* data, size_t size, const std::string& what) {
  if (!png_image_begin_read_from_memory(&r.image, data, size))
    throw Error("'" + what + "' is not a readable PNG image (" + r.image.message + ")");
  PngHeader h;
  if (r.image.width < 1 || r.image.height < 1 || r.image.width > 4096 || r.image.height > 4096)
    throw Error("PNG image '" + what + "' is " + std::to_string(r.image.width) + "x" + std::to_string(r.image.height) +
                "; images must be 1 to 4096 pixels a side");
  h.width = static_cast<int>(r.image.width);
  h.height = static_cast<int>(r.image.height);
  h.colour = (r.image.format & PNG_FORMAT_FLAG_COLOR) != 0;
  return h;
}

}  // namespace

DecodedPng decode_png(const uint8_t* data, size_t size, const std::string& what, int channels) {
  if (channels != 0 && channels != 1 && channels != 3)
    throw Error("decode_png: channels must be 0 (as stored), 1 or 3");
  PngReader r;
  const PngHeader h = png_header(r, data, size, what);
  DecodedPng out;
  out.channels = channels ? channels : (h.colour ? 3 : 1);
  out.height = h.height;
  out.width = h.width;
  // 8-bit grey or RGB; an alpha channel is composited onto the zeroed buffer, i.e. onto black.
  r.image.format = out.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  const size_t plane = static_cast<size_t>(h.width) * h.height;
  std::vector<uint8_t> interleaved(plane * out.channels, 0);
  if (!png_image_finish_read(&r.image, nullptr, interleaved.data(), 0, nullptr))
    throw Error("PNG image '" + what + "' is corrupt (" + r.image.message + ")");
  if (out.channels == 1) {
    out.pixels = std::move(interleaved);
  } else {  // HWC -> CHW
    out.pixels.resize(interleaved.size());
    for (size_t p = 0; p < plane; ++p)
      for (int c = 0; c < out.channels; ++c) out.pixels[c * plane + p] = interleaved[p * out.channels + c];
  }
  return out;
}

ImageSet read_png_folder(const std::string& dir, std::vector<std::string>* class_names) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error("image folder '" + dir + "' does not exist");
  // Images directly in the folder, or in class sub-folders; not both (which images would be unlabelled?).
  std::vector<fs::path> files = png_files(dir);
  std::vector<int32_t> labels;
  std::vector<std::string> classes;
  std::vector<fs::path> subdirs;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_directory(ec)) subdirs.push_back(e.path());
  std::sort(subdirs.begin(), subdirs.end());
  std::vector<std::pair<fs::path, int32_t>> labelled;
  for (const auto& sub : subdirs) {
    const std::vector<fs::path> in_sub = png_files(sub);
    if (in_sub.empty()) continue;
    const auto label = static_cast<int32_t>(classes.size());
    classes.push_back(sub.filename().string());
    for (const auto& f : in_sub) labelled.emplace_back(f, label);
  }
  if (!files.empty() && !labelled.empty())
    throw Error("image folder '" + dir + "' holds PNG images both directly and in sub-folders; put every image in a "
                "class sub-folder (labelled) or all of them directly in the folder (unlabelled)");
  if (!labelled.empty()) {
    files.clear();
    for (const auto& [f, label] : labelled) {
      files.push_back(f);
      labels.push_back(label);
    }
  }
  if (files.empty())
    throw Error("image folder '" + dir + "' holds no *.png images (directly or in class sub-folders); point --data at "
                "a folder of PNG images, a .npy array, or a folder of IDX files");

  // Pass 1: headers only, so that sizes are checked and memory sized before anything is decoded.
  std::vector<std::vector<uint8_t>> bytes(files.size());
  PngHeader first;
  bool colour = false;
  for (size_t i = 0; i < files.size(); ++i) {
    bytes[i] = read_file_bytes(files[i].string(), "PNG image");
    PngReader r;
    const PngHeader h = png_header(r, bytes[i].data(), bytes[i].size(), files[i].string());
    if (i == 0) first = h;
    if (h.width != first.width || h.height != first.height)
      throw Error("image folder '" + dir + "' mixes image sizes: '" + files[0].string() + "' is " +
                  std::to_string(first.width) + "x" + std::to_string(first.height) + " but '" + files[i].string() +
                  "' is " + std::to_string(h.width) + "x" + std::to_string(h.height) + "; resize them to one size");
    colour = colour || h.colour;
  }
  ImageSet set;
  set.count = static_cast<int64_t>(files.size());
  set.channels = colour ? 3 : 1;
  set.height = first.height;
  set.width = first.width;
  const uint64_t per_image = static_cast<uint64_t>(set.pixels_per_image());
  if (per_image * files.size() > kMaxDatasetBytes)
    throw Error("image folder '" + dir + "' holds more than 16 GiB of pixels");
  set.pixels.resize(per_image * files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    const DecodedPng img = decode_png(bytes[i].data(), bytes[i].size(), files[i].string(), set.channels);
    std::copy(img.pixels.begin(), img.pixels.end(), set.pixels.begin() + static_cast<int64_t>(i * per_image));
    std::vector<uint8_t>().swap(bytes[i]);
  }
  set.labels = std::move(labels);
  if (class_names) *class_names = std::move(classes);
  return set;
}

}  // namespace vae
