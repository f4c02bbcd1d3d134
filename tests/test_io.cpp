// IDX loading (raw and gzip, every malformed case), the data-set folder, PNG grids, atomic writes.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/atomic_file.hpp"
#include "test_util.hpp"
#include "vae/data.hpp"
#include "vae/error.hpp"
#include "vae/train.hpp"

namespace vae {
namespace {

std::vector<uint8_t> idx_bytes(uint32_t count, uint32_t rows, uint32_t cols, uint8_t type = 0x08, uint8_t ndim = 3) {
  std::vector<uint8_t> b{0, 0, type, ndim};
  for (uint32_t v : {count, rows, cols})
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
  for (uint32_t i = 0; i < count * rows * cols; ++i) b.push_back(static_cast<uint8_t>(i * 7));
  return b;
}

void write_raw(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

void write_gz(const std::string& path, const std::vector<uint8_t>& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, b.data(), static_cast<unsigned>(b.size()));
  gzclose(f);
}

void expect_idx_error(const std::string& path, const std::string& fragment) {
  try {
    read_idx_images(path);
    FAIL() << "expected an error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Idx, ReadsRawAndGzip) {
  test::ScratchDir dir("idx");
  const auto b = idx_bytes(3, 2, 5);
  write_raw(dir.file("a.idx"), b);
  write_gz(dir.file("a.idx.gz"), b);
  for (const char* name : {"a.idx", "a.idx.gz"}) {
    const ImageSet s = read_idx_images(dir.file(name));
    EXPECT_EQ(s.count, 3);
    EXPECT_EQ(s.height, 2);
    EXPECT_EQ(s.width, 5);
    ASSERT_EQ(s.pixels.size(), 30u);
    EXPECT_EQ(s.pixels[29], static_cast<uint8_t>(29 * 7));
  }
}

TEST(Idx, RejectsMalformedFiles) {
  test::ScratchDir dir("idx_bad");
  auto b = idx_bytes(3, 2, 5);
  write_raw(dir.file("short"), {0, 0});
  expect_idx_error(dir.file("short"), "too short");
  auto bad_magic = b;
  bad_magic[0] = 1;
  write_raw(dir.file("magic"), bad_magic);
  expect_idx_error(dir.file("magic"), "magic");
  write_raw(dir.file("type"), idx_bytes(1, 1, 1, 0x0d));
  expect_idx_error(dir.file("type"), "element type");
  write_raw(dir.file("ndim"), idx_bytes(1, 1, 1, 0x08, 1));
  expect_idx_error(dir.file("ndim"), "dimensions");
  write_raw(dir.file("trunc"), std::vector<uint8_t>(b.begin(), b.end() - 1));
  expect_idx_error(dir.file("trunc"), "truncated");
  auto longer = b;
  longer.push_back(9);
  write_raw(dir.file("trail"), longer);
  expect_idx_error(dir.file("trail"), "trailing");
  write_raw(dir.file("header"), std::vector<uint8_t>(b.begin(), b.begin() + 10));
  expect_idx_error(dir.file("header"), "header");
  write_raw(dir.file("zero"), idx_bytes(0, 2, 5));
  expect_idx_error(dir.file("zero"), "implausible");
  // A gzip "bomb": a few KB that inflate to 64 MB behind a header announcing 1 image of 2x5. The
  // reader inflates the header and the 10 announced bytes, then stops at the first byte too many.
  {
    std::vector<uint8_t> bomb = idx_bytes(1, 2, 5);
    bomb.resize(bomb.size() + (64u << 20), 0);
    write_gz(dir.file("bomb.gz"), bomb);
    EXPECT_LT(std::filesystem::file_size(dir.file("bomb.gz")), 1u << 20);
    expect_idx_error(dir.file("bomb.gz"), "trailing");
    // A header announcing 2^31-1 images of 4096x4096 is refused before anything is inflated.
    auto huge = idx_bytes(0, 4096, 4096);
    huge[4] = 0x7f, huge[5] = 0xff, huge[6] = 0xff, huge[7] = 0xff;
    write_gz(dir.file("huge.gz"), huge);
    expect_idx_error(dir.file("huge.gz"), "implausible");
  }
  // A gzip file cut in the middle.
  write_gz(dir.file("full.gz"), idx_bytes(50, 20, 20));
  std::ifstream in(dir.file("full.gz"), std::ios::binary);
  std::vector<uint8_t> gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_raw(dir.file("cut.gz"), std::vector<uint8_t>(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(gz.size() / 2)));
  expect_idx_error(dir.file("cut.gz"), "gzip");
  expect_idx_error(dir.file("does-not-exist"), "does not exist");
}

TEST(Dataset, MissingFolderNamesThePackage) {
  try {
    load_dataset("/nonexistent/fashion");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dataset-fashion-mnist"), std::string::npos) << e.what();
  }
  test::ScratchDir dir("ds");
  write_raw(dir.file("train-images-idx3-ubyte"), idx_bytes(4, 3, 3));
  // No t10k files: a test split is held out (10%, at least one image).
  const Dataset held = load_dataset(dir.path().string());
  EXPECT_EQ(held.train.count, 3);
  EXPECT_EQ(held.test.count, 1);
  write_gz(dir.file("t10k-images-idx3-ubyte.gz"), idx_bytes(2, 3, 3));
  const Dataset d = load_dataset(dir.path().string());
  EXPECT_EQ(d.train.count, 4);
  EXPECT_EQ(d.test.count, 2);
}

TEST(Png, GridHasPngSignatureAndSize) {
  test::ScratchDir dir("png");
  const std::vector<float> images = test::random_vector<float>(5 * 4 * 3, 1, 0, 1);
  write_png_grid(dir.file("g.png"), images, 5, 1, 4, 3, 2);
  const auto bytes = read_file_bytes(dir.file("g.png"), "png");
  ASSERT_GT(bytes.size(), 24u);
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  EXPECT_EQ(std::memcmp(bytes.data(), sig, 8), 0);
  auto be32 = [&](size_t at) { return (uint32_t(bytes[at]) << 24) | (uint32_t(bytes[at + 1]) << 16) | (uint32_t(bytes[at + 2]) << 8) | bytes[at + 3]; };
  // IHDR: width, height. 2 columns x 3 rows of 3x4 tiles with a 2-pixel frame.
  EXPECT_EQ(be32(16), 2u * (3 + 2) + 2);
  EXPECT_EQ(be32(20), 3u * (4 + 2) + 2);
  EXPECT_THROW(write_png_grid(dir.file("none/g.png"), images, 5, 1, 4, 3, 2), Error);
  EXPECT_FALSE(std::filesystem::exists(dir.file("none")));
}

TEST(AtomicFile, StaleTemporariesAreRemovedAndOthersKept) {
  test::ScratchDir dir("atomic_stale");
  write_raw(dir.file(".model.safetensors.vae-tmp-123-0"), {1, 2, 3});  // what kill -9 mid-write leaves
  write_raw(dir.file("model.safetensors"), {4});
  write_raw(dir.file(".hidden-but-mine"), {5});
  EXPECT_EQ(remove_stale_temporaries(dir.path().string()), 1);
  EXPECT_FALSE(std::filesystem::exists(dir.file(".model.safetensors.vae-tmp-123-0")));
  EXPECT_TRUE(std::filesystem::exists(dir.file("model.safetensors")));
  EXPECT_TRUE(std::filesystem::exists(dir.file(".hidden-but-mine")));
}

TEST(AtomicFile, ReplacesWholeFileAndLeavesNoTemporary) {
  test::ScratchDir dir("atomic");
  write_file_atomic(dir.file("f.txt"), std::string("first version, longer"));
  write_file_atomic(dir.file("f.txt"), std::string("second"));
  const auto b = read_file_bytes(dir.file("f.txt"), "f");
  EXPECT_EQ(std::string(b.begin(), b.end()), "second");
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

}  // namespace
}  // namespace vae
