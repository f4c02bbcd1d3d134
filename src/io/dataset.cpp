#include <filesystem>

#include "vae/data.hpp"
#include "vae/error.hpp"

namespace vae {
namespace {

std::string find_idx(const std::filesystem::path& dir, const std::string& stem) {
  for (const char* suffix : {".gz", ""}) {
    const auto p = dir / (stem + suffix);
    std::error_code ec;
    if (std::filesystem::is_regular_file(p, ec)) return p.string();
  }
  throw Error("data folder '" + dir.string() + "' has no " + stem + "[.gz]; point --data at a folder with the "
              "Fashion-MNIST IDX files (apt-get install dataset-fashion-mnist puts them in "
              "/usr/share/datasets/fashion-mnist)");
}

}  // namespace

Dataset load_dataset(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw Error("data folder '" + dir + "' not found; install Fashion-MNIST with "
                "'apt-get install dataset-fashion-mnist' or pass --data DIR");
  Dataset d;
  d.train = read_idx_images(find_idx(dir, "train-images-idx3-ubyte"));
  d.test = read_idx_images(find_idx(dir, "t10k-images-idx3-ubyte"));
  if (d.train.height != d.test.height || d.train.width != d.test.width)
    throw Error("data folder '" + dir + "': training images are " + std::to_string(d.train.height) + "x" +
                std::to_string(d.train.width) + " but test images are " + std::to_string(d.test.height) + "x" +
                std::to_string(d.test.width));
  return d;
}

}  // namespace vae
