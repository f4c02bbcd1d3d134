// Image data sets in IDX format (MNIST, Fashion-MNIST), gzipped or raw.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vae {

struct ImageSet {
  int64_t count = 0;
  int height = 0;
  int width = 0;
  std::vector<uint8_t> pixels;  // count * height * width, row-major
  int pixels_per_image() const { return height * width; }
};

// Reads an IDX file of unsigned bytes with 3 dimensions (images). Validates the magic number,
// the dimensions and that the payload has exactly the announced length.
ImageSet read_idx_images(const std::string& path);

struct Dataset {
  ImageSet train;
  ImageSet test;
};

// Loads train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz] from dir. A missing folder
// names the Debian package to install.
Dataset load_dataset(const std::string& dir);

}  // namespace vae
