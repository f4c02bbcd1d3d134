// load_dataset: the IDX folder, a .npy array or a PNG folder, with a held-out test split for
// sources that have none.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <numeric>
#include <tuple>

#include "io/sha256.hpp"
#include "philox.cuh"
#include "vae/data.hpp"
#include "vae/error.hpp"

namespace vae {
namespace {

namespace fs = std::filesystem;

// The held-out split's permutation seed: fixed, not the training seed, so every run and `vae eval`
// hold out the same images of a source.
constexpr uint64_t kSplitSeed = 0x5b117e57ULL;
// Likewise the validation set's, held out of the training split.
constexpr uint64_t kValidationSeed = 0x7a11da7eULL;

std::string find_idx(const fs::path& dir, const std::string& stem, bool required) {
  for (const char* suffix : {".gz", ""}) {
    const auto p = dir / (stem + suffix);
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  if (!required) return {};
  throw Error("data folder '" + dir.string() + "' has no " + stem + "[.gz]; point --data at a folder with the "
              "Fashion-MNIST IDX files (apt-get install dataset-fashion-mnist puts them in "
              "/usr/share/datasets/fashion-mnist), a .npy array or a folder of PNG images");
}

void attach_labels(ImageSet& set, std::vector<int32_t> labels, const std::string& from) {
  if (static_cast<int64_t>(labels.size()) != set.count)
    throw Error("labels '" + from + "' hold " + std::to_string(labels.size()) + " labels for " +
                std::to_string(set.count) + " images; give one label per image");
  set.labels = std::move(labels);
}

ImageSet take_rows(const ImageSet& all, const std::vector<int32_t>& rows) {
  ImageSet s;
  s.count = static_cast<int64_t>(rows.size());
  s.channels = all.channels;
  s.height = all.height;
  s.width = all.width;
  const auto per = static_cast<size_t>(all.pixels_per_image());
  s.pixels.resize(rows.size() * per);
  for (size_t i = 0; i < rows.size(); ++i)
    std::copy_n(all.pixels.begin() + static_cast<int64_t>(rows[i] * per), per, s.pixels.begin() + static_cast<int64_t>(i * per));
  if (!all.labels.empty())
    for (int32_t r : rows) s.labels.push_back(all.labels[static_cast<size_t>(r)]);
  return s;
}

// Splits all into {kept, held out}: round(fraction * N) images held out (at least one, and at least
// one kept), the last ones of `order`; both parts keep the source's order. what names the held-out
// part in messages ("testing").
std::pair<ImageSet, ImageSet> hold_out(const ImageSet& all, double fraction, const std::vector<int32_t>& order,
                                       const std::string& source, const char* what) {
  if (all.count < 2)
    throw Error(source + " holds " + std::to_string(all.count) + " image; at least 2 are needed to hold one out for " + what);
  const auto held = std::clamp<int64_t>(std::llround(fraction * static_cast<double>(all.count)), 1, all.count - 1);
  std::vector<int32_t> out(order.end() - held, order.end()), kept(order.begin(), order.end() - held);
  std::sort(out.begin(), out.end());
  std::sort(kept.begin(), kept.end());
  return {take_rows(all, kept), take_rows(all, out)};
}

// The test set of a source without one: a fixed permutation's share.
void split(Dataset& d, const ImageSet& all, double fraction, const std::string& source) {
  if (!(fraction > 0.0 && fraction < 1.0))
    throw Error("--test-fraction must be in (0, 1) for '" + source + "', which has no test split of its own; got " +
                std::to_string(fraction));
  d.test_fraction = fraction;
  std::tie(d.train, d.test) = hold_out(all, fraction, epoch_permutation(all.count, kSplitSeed, 0), "'" + source + "'", "testing");
}

bool ends_with_npy(const std::string& p) {
  std::string ext = fs::path(p).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".npy";
}

}  // namespace

std::string test_split_description(const Dataset& d) {
  return d.test_fraction > 0 ? "held-out fraction " + std::to_string(d.test_fraction) + " of " + d.source
                             : "the source's own test split";
}

void hold_out_validation(Dataset& d, double fraction, bool tail) {
  if (fraction == 0.0) return;
  if (!(fraction > 0.0 && fraction < 1.0))
    throw Error("--validation-fraction must be in [0, 1), got " + std::to_string(fraction));
  if (!d.validation.pixels.empty() || d.validation.count > 0)
    throw Error("the data set already holds a validation set; hold one out only once");
  std::vector<int32_t> order(static_cast<size_t>(d.train.count));
  if (tail) std::iota(order.begin(), order.end(), 0);
  else order = epoch_permutation(d.train.count, kValidationSeed, 0);
  std::tie(d.train, d.validation) = hold_out(d.train, fraction, order, "the training set", "validation");
}

Dataset load_dataset(const std::string& path, const DataOptions& options) {
  std::error_code ec;
  Dataset d;
  d.source = path;
  if (!options.labels.empty() && !ends_with_npy(path))
    throw Error("--labels goes with a .npy image array; '" + path + "' is not one (IDX folders take labels from their "
                "*-labels-idx1-ubyte files, PNG folders from class sub-folders)");
  if (fs::is_regular_file(path, ec)) {
    if (!ends_with_npy(path))
      throw Error("data file '" + path + "' is not a .npy array; --data takes a .npy file, a folder of PNG images, or a "
                  "folder of IDX files");
    ImageSet all = read_npy_images(path);
    if (!options.labels.empty()) attach_labels(all, read_npy_labels(options.labels), options.labels);
    split(d, all, options.test_fraction, path);
    return d;
  }
  if (!fs::is_directory(path, ec))
    throw Error("data '" + path + "' not found; install Fashion-MNIST with 'apt-get install dataset-fashion-mnist' "
                "or pass --data with a folder of IDX files, a .npy array or a folder of PNG images");
  const fs::path dir(path);
  const std::string train_images = find_idx(dir, "train-images-idx3-ubyte", false);
  if (train_images.empty()) {
    ImageSet all = read_png_folder(path, &d.class_names);
    split(d, all, options.test_fraction, path);
    return d;
  }
  ImageSet train = read_idx_images(train_images);
  if (const std::string l = find_idx(dir, "train-labels-idx1-ubyte", false); !l.empty())
    attach_labels(train, read_idx_labels(l), l);
  const std::string test_images = find_idx(dir, "t10k-images-idx3-ubyte", false);
  if (test_images.empty()) {
    split(d, train, options.test_fraction, path);
    return d;
  }
  d.train = std::move(train);
  d.test = read_idx_images(test_images);
  if (const std::string l = find_idx(dir, "t10k-labels-idx1-ubyte", false); !l.empty())
    attach_labels(d.test, read_idx_labels(l), l);
  if (d.train.height != d.test.height || d.train.width != d.test.width)
    throw Error("data folder '" + path + "': training images are " + std::to_string(d.train.height) + "x" +
                std::to_string(d.train.width) + " but test images are " + std::to_string(d.test.height) + "x" +
                std::to_string(d.test.width));
  if (d.train.labels.empty() != d.test.labels.empty()) {  // labels for one split only: use none
    d.train.labels.clear();
    d.test.labels.clear();
  }
  return d;
}

namespace {

// One split into the hash: its count and shape (little-endian int64), its pixels, and its labels
// (their count as int64, then each as little-endian int32).
void add_image_set(Sha256& h, const ImageSet& set, int64_t count) {
  for (const int64_t v : {count, int64_t{set.channels}, int64_t{set.height}, int64_t{set.width}})
    h.add_int(static_cast<uint64_t>(v), 8);
  h.add(set.pixels.data(), static_cast<size_t>(count) * static_cast<size_t>(set.pixels_per_image()));
  const size_t labels_n = set.labels.empty() ? 0 : static_cast<size_t>(count);
  h.add_int(labels_n, 8);
  std::vector<uint8_t> labels(labels_n * 4);
  for (size_t i = 0; i < labels_n; ++i)
    for (int k = 0; k < 4; ++k) labels[i * 4 + k] = static_cast<uint8_t>(static_cast<uint32_t>(set.labels[i]) >> (8 * k));
  h.add(labels.data(), labels.size());
}

}  // namespace

std::string dataset_hash(const Dataset& data) {
  Sha256 h("the data set");
  for (const ImageSet* set : {&data.train, &data.test}) add_image_set(h, *set, set->count);
  return h.hex();
}

std::string image_set_hash(const ImageSet& set, int64_t count) {
  if (count < 0 || count > set.count) count = set.count;
  Sha256 h("the image set");
  add_image_set(h, set, count);
  return h.hex();
}

std::vector<int32_t> epoch_permutation(int64_t n, uint64_t seed, int epoch) {
  std::vector<int32_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t i = n - 1; i > 0; --i) {
    const Philox4 r = philox_block(seed, kStreamShuffle, static_cast<uint64_t>(epoch), 0, static_cast<uint64_t>(i));
    // 64 random bits keep the modulo bias below 2^-40 for any n this engine sees.
    const uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
    const int64_t j = static_cast<int64_t>(bits % static_cast<uint64_t>(i + 1));
    std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
  }
  return perm;
}

}  // namespace vae
