// Image data sets: IDX files (MNIST, Fashion-MNIST, gzipped or raw), numpy .npy arrays, and
// folders of PNG images. Every source becomes the same thing: uint8 pixels [N, C, H, W] and, when
// the source has them, one integer label per image.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vae {

struct ImageSet {
  int64_t count = 0;
  int channels = 1;  // 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA)
  int height = 0;
  int width = 0;
  std::vector<uint8_t> pixels;   // count * channels * height * width, [N, C, H, W]
  std::vector<int32_t> labels;   // count labels in [0, classes), or empty
  int pixels_per_image() const { return channels * height * width; }
};

// The largest data set a reader accepts: 2^34 bytes (16 GiB) of pixels, checked against what a
// file announces before anything of that size is allocated or inflated.
inline constexpr uint64_t kMaxDatasetBytes = uint64_t{1} << 34;

// Reads an IDX file of unsigned bytes with 3 dimensions (images). Validates the magic number and
// the dimensions before reading the payload, and that the payload has exactly the announced
// length; a gzipped file is inflated only as far as its header says.
ImageSet read_idx_images(const std::string& path);
// Reads an IDX file of unsigned bytes with 1 dimension (labels).
std::vector<int32_t> read_idx_labels(const std::string& path);
// The same from bytes in memory (what names the source in messages).
ImageSet parse_idx_images(const uint8_t* data, size_t size, const std::string& what);
std::vector<int32_t> parse_idx_labels(const uint8_t* data, size_t size, const std::string& what);

// A numpy .npy array (format versions 1-3, C order) of images: uint8, or float32 in [0, 1]
// (rounded to the nearest 1/255, as every source is stored in 8 bits). Shapes and layout:
//   [N, H, W]     one channel
//   [N, H, W, C]  when the last dimension is 1 to 4 (numpy's and PIL's channels-last convention)
//   [N, C, H, W]  otherwise, when the second dimension is 1 to 4
ImageSet read_npy_images(const std::string& path);
ImageSet parse_npy_images(const uint8_t* data, size_t size, const std::string& what);
// A 1-D .npy array of integer labels (any signed or unsigned integer dtype) in [0, 2^31).
std::vector<int32_t> read_npy_labels(const std::string& path);
std::vector<int32_t> parse_npy_labels(const uint8_t* data, size_t size, const std::string& what);

// A PNG image decoded to uint8 [C, H, W], C = 1 for grey and 3 for colour (an alpha channel is
// composited onto black); channels = 3 forces colour, 1 forces grey.
struct DecodedPng {
  int channels = 0, height = 0, width = 0;
  std::vector<uint8_t> pixels;
};
DecodedPng decode_png(const uint8_t* data, size_t size, const std::string& what, int channels = 0);
// A folder of PNG images (*.png, any letter case), all of one size. Images directly in the folder,
// or in sub-folders, one per class: labels number the sub-folders in sorted name order and
// class_names (when given) receives those names. Files are read in sorted name order. When any
// image is in colour, every image is read as RGB.
ImageSet read_png_folder(const std::string& dir, std::vector<std::string>* class_names = nullptr);

struct Dataset {
  ImageSet train;
  ImageSet test;
  ImageSet validation;                   // held out of the training images by hold_out_validation; empty when none
  std::string source;                    // what was loaded, for messages and logs
  std::vector<std::string> class_names;  // PNG class folders, when the source has them
  double test_fraction = 0;              // the share held out as the test set; 0: the source's own test split
};

struct DataOptions {
  // Held-out share for a source without its own test split (a .npy array, a PNG folder, an IDX
  // folder without t10k files): the test set is a fixed pseudo-random subset of this share, the same
  // in every run, so that `vae eval` with the same --data and --test-fraction sees the same images.
  double test_fraction = 0.1;
  std::string labels;  // a .npy of labels for a .npy source (optional)
};

// Loads a data set from `path`:
//  - a folder with train-images-idx3-ubyte[.gz] (and t10k-images-idx3-ubyte[.gz], and the matching
//    *-labels-idx1-ubyte[.gz] files when present): the IDX layout of MNIST and Fashion-MNIST;
//  - a .npy file of images (labels from options.labels);
//  - any other folder: PNG images (see read_png_folder).
// A missing path names the Debian package that installs Fashion-MNIST.
Dataset load_dataset(const std::string& path, const DataOptions& options = {});

// Where a data set's test split came from, in words (what an evaluation's protocol records): "the
// source's own test split", or the held-out fraction and the source.
std::string test_split_description(const Dataset& d);

// Moves round(fraction * N) of the N training images (at least one, and at least one left to train
// on) into d.validation, both parts keeping the source's order (and their labels): with tail, the
// last ones (vae_vampprior's fixed validation set: Fashion-MNIST's last 10,000 at 1/6); otherwise a
// fixed pseudo-random share, the same for every training seed and run. fraction 0 does nothing.
void hold_out_validation(Dataset& d, double fraction, bool tail);

// The content hash of a data set as loaded: "sha256:" and 64 hex digits of SHA-256 over the training
// and then the test split, each as its count, channels, height and width (little-endian int64), its
// pixels, and its labels (their count as int64, then each as little-endian int32). The same images,
// split and labels give the same hash whatever file format held them (a validation set held out of
// the training split is not part of it: hash before hold_out_validation), and any changed pixel,
// label or split another one. SHA-256 runs at about 1.5 GB/s on a CPU with SHA instructions: 0.04 s
// for Fashion-MNIST (55 MB).
std::string dataset_hash(const Dataset& data);
// The same hash over one image set's first `count` images (all when count is out of [0, N]), as one
// split of dataset_hash hashes it: what an evaluation records of the images it evaluated.
std::string image_set_hash(const ImageSet& set, int64_t count = -1);

// A uniformly random permutation of 0..n-1 (Fisher-Yates driven by Philox), a function of (seed,
// epoch): the order of each training epoch, and (epoch 0 of a fixed seed) the held-out test split.
std::vector<int32_t> epoch_permutation(int64_t n, uint64_t seed, int epoch);

// The files the tools exchange. Writes images [n, channels*height*width] (planar, [C, H, W] each) in [0, 1] as a PNG grid with
// `columns` per row (atomic write); 1 channel is grey, 3 RGB, 2 and 4 add alpha.
void write_png_grid(const std::string& path, const std::vector<float>& images, int n, int channels, int height,
                    int width, int columns);
// Writes images as a PNG grid like write_png_grid, each pixel drawn scale x scale; with row_labels,
// a margin on the left holds each row's label (white text; a label per grid row, or fewer: the rest
// unlabelled).
void write_png_grid_scaled(const std::string& path, const std::vector<float>& images, int n, int channels, int height,
                           int width, int columns, int scale, const std::vector<std::string>& row_labels = {});
// A numpy .npy file of a float32 or int32 array (C order, format 1.0), written atomically.
void write_npy(const std::string& path, const std::vector<float>& values, const std::vector<int64_t>& shape);
void write_npy(const std::string& path, const std::vector<int32_t>& values, const std::vector<int64_t>& shape);
// A float32 .npy array of latent codes or images; shape receives its dimensions. Throws naming the
// file for any other dtype, a Fortran-order array, or bytes that disagree with the shape.
std::vector<float> read_npy_floats(const std::string& path, std::vector<int64_t>& shape);
std::vector<float> parse_npy_floats(const uint8_t* data, size_t size, const std::string& what, std::vector<int64_t>& shape);

}  // namespace vae
