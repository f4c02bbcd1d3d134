// Own data: .npy arrays (dtypes, layouts, labels, every malformed case), folders of PNG images
// (grey, colour, class sub-folders, mixed sizes, empty), and load_dataset's held-out split.
#include <gtest/gtest.h>
#include <png.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <set>

#include "test_util.hpp"
#include "vae/data.hpp"
#include "vae/error.hpp"

namespace vae {
namespace {

// A .npy file as numpy.save writes it (format 1.0, header padded to 64 bytes).
std::vector<uint8_t> npy_bytes(const std::string& descr, const std::vector<uint64_t>& shape, const void* data,
                               size_t bytes, bool fortran = false) {
  std::string dims;
  for (uint64_t d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.erase(dims.size() - 2);
  std::string header = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                       ", 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  const uint8_t magic[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<uint8_t>(header.size() & 0xff),
                             static_cast<uint8_t>(header.size() >> 8)};
  std::vector<uint8_t> out(10 + header.size() + bytes);
  std::memcpy(out.data(), magic, 10);
  std::memcpy(out.data() + 10, header.data(), header.size());
  if (bytes) std::memcpy(out.data() + 10 + header.size(), data, bytes);
  return out;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// Writes an 8-bit PNG with libpng: channels 1 (grey), 2 (grey+alpha), 3 (RGB); pixels interleaved.
void write_png(const std::string& path, int width, int height, int channels, const std::vector<uint8_t>& pixels) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = static_cast<png_uint_32>(width);
  img.height = static_cast<png_uint_32>(height);
  img.format = channels == 1 ? PNG_FORMAT_GRAY : channels == 2 ? PNG_FORMAT_GA : PNG_FORMAT_RGB;
  ASSERT_TRUE(png_image_write_to_file(&img, path.c_str(), 0, pixels.data(), 0, nullptr)) << img.message;
}

template <class F>
void expect_error(F&& f, const std::string& fragment) {
  try {
    f();
    FAIL() << "expected an error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Npy, ReadsEveryLayoutAndDtype) {
  // 2 images of 2x5, 3 channels, values v = 10*img + 60*channel + pixel index. (Width 5, not 1 to 4:
  // a last dimension of 1 to 4 would make the first array channels-last, by the documented rule.)
  std::vector<uint8_t> nchw(2 * 3 * 10), nhwc(2 * 10 * 3);
  for (int i = 0; i < 2; ++i)
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 10; ++p) {
        const auto v = static_cast<uint8_t>(10 * i + 60 * c + p);
        nchw[(i * 3 + c) * 10 + p] = v;
        nhwc[(i * 10 + p) * 3 + c] = v;
      }
  const auto chw = npy_bytes("|u1", {2, 3, 2, 5}, nchw.data(), nchw.size());
  const ImageSet a = parse_npy_images(chw.data(), chw.size(), "nchw");
  const auto hwc = npy_bytes("|u1", {2, 2, 5, 3}, nhwc.data(), nhwc.size());
  const ImageSet b = parse_npy_images(hwc.data(), hwc.size(), "nhwc");
  for (const ImageSet* s : {&a, &b}) {
    EXPECT_EQ(s->count, 2);
    EXPECT_EQ(s->channels, 3);
    EXPECT_EQ(s->height, 2);
    EXPECT_EQ(s->width, 5);
    EXPECT_EQ(s->pixels, nchw);
  }
  // float32 [N, H, W] in [0, 1], rounded to the nearest 1/255.
  const std::vector<float> f = {0.0f, 1.0f, 0.5f, 0.25f};
  const auto fb = npy_bytes("<f4", {1, 2, 2}, f.data(), f.size() * 4);
  const ImageSet g = parse_npy_images(fb.data(), fb.size(), "grey");
  EXPECT_EQ(g.channels, 1);
  EXPECT_EQ(g.pixels, (std::vector<uint8_t>{0, 255, 128, 64}));
}

TEST(Npy, RejectsMalformedFiles) {
  const std::vector<uint8_t> px(12, 7);
  const auto parse = [](const std::vector<uint8_t>& b) { return parse_npy_images(b.data(), b.size(), "x"); };
  expect_error([&] { parse({1, 2, 3}); }, "not a .npy file");
  expect_error([&] { parse(npy_bytes("<f8", {1, 3, 4}, px.data(), 12)); }, "dtype '<f8'");
  expect_error([&] { parse(npy_bytes("|u1", {1, 3, 4}, px.data(), 12, true)); }, "Fortran order");
  expect_error([&] { parse(npy_bytes("|u1", {1, 3, 4}, px.data(), 11)); }, "truncated");
  expect_error([&] { parse(npy_bytes("|u1", {12}, px.data(), 12)); }, "expected [N, H, W]");
  expect_error([&] { parse(npy_bytes("|u1", {1, 6, 5, 6}, px.data(), 12)); }, "expected [N, H, W]");
  expect_error([&] { parse(npy_bytes("|u1", {0, 3, 4}, px.data(), 0)); }, "at least one image");
  // A shape whose element count wraps around 2^64 is refused before any multiply overflows.
  expect_error([&] { parse(npy_bytes("|u1", {4294967296ull, 4096, 4096}, px.data(), 12)); }, "pixels a side");
  expect_error([&] { parse(npy_bytes("|u1", {1u << 30, 4096, 4096}, px.data(), 12)); }, "more than");
  const std::vector<float> bad = {0.5f, 1.5f};
  expect_error([&] { parse(npy_bytes("<f4", {1, 1, 2}, bad.data(), 8)); }, "must lie in [0, 1]");
  auto b = npy_bytes("|u1", {1, 3, 4}, px.data(), 12);
  b[6] = 9;
  expect_error([&] { parse(b); }, "version 9");
  b = npy_bytes("|u1", {1, 3, 4}, px.data(), 12);
  b[8] = 0xff, b[9] = 0x7f;
  expect_error([&] { parse(b); }, "header length");
}

TEST(Npy, ReadsLabelsOfAnyIntegerType) {
  const std::vector<int64_t> l64 = {3, 0, 9};
  const auto b = npy_bytes("<i8", {3}, l64.data(), 24);
  EXPECT_EQ(parse_npy_labels(b.data(), b.size(), "l"), (std::vector<int32_t>{3, 0, 9}));
  const std::vector<uint8_t> l8 = {1, 2};
  const auto c = npy_bytes("|u1", {2}, l8.data(), 2);
  EXPECT_EQ(parse_npy_labels(c.data(), c.size(), "l"), (std::vector<int32_t>{1, 2}));
  const std::vector<int32_t> neg = {1, -1};
  const auto d = npy_bytes("<i4", {2}, neg.data(), 8);
  expect_error([&] { parse_npy_labels(d.data(), d.size(), "l"); }, "label -1");
  const std::vector<float> fl = {1.0f};
  const auto e = npy_bytes("<f4", {1}, fl.data(), 4);
  expect_error([&] { parse_npy_labels(e.data(), e.size(), "l"); }, "dtype '<f4'");
}

TEST(PngFolder, ReadsGreyColourAndClassFolders) {
  test::ScratchDir dir("pngs");
  std::filesystem::create_directories(dir.path() / "cats");
  std::filesystem::create_directories(dir.path() / "dogs");
  std::filesystem::create_directories(dir.path() / "empty");
  write_png(dir.file("dogs/b.png"), 3, 2, 1, {1, 2, 3, 4, 5, 6});
  write_png(dir.file("cats/a.PNG"), 3, 2, 1, {6, 5, 4, 3, 2, 1});
  write_png(dir.file("dogs/a.png"), 3, 2, 3, std::vector<uint8_t>(18, 200));
  std::ofstream(dir.file("dogs/notes.txt")) << "not an image";
  std::vector<std::string> classes;
  const ImageSet s = read_png_folder(dir.path().string(), &classes);
  EXPECT_EQ(classes, (std::vector<std::string>{"cats", "dogs"}));
  EXPECT_EQ(s.count, 3);
  EXPECT_EQ(s.channels, 3);  // one colour image makes the set RGB
  EXPECT_EQ(s.height, 2);
  EXPECT_EQ(s.width, 3);
  EXPECT_EQ(s.labels, (std::vector<int32_t>{0, 1, 1}));
  // cats/a.PNG, grey, read as RGB: every channel plane equals the grey image.
  for (int c = 0; c < 3; ++c)
    EXPECT_EQ(std::vector<uint8_t>(s.pixels.begin() + c * 6, s.pixels.begin() + c * 6 + 6),
              (std::vector<uint8_t>{6, 5, 4, 3, 2, 1}));
  EXPECT_EQ(s.pixels[18], 200);  // dogs/a.png, the second image
  EXPECT_EQ(s.pixels[53], 6);    // dogs/b.png's last pixel, blue plane
}

TEST(PngFolder, RejectsBadFolders) {
  test::ScratchDir dir("pngs_bad");
  expect_error([&] { read_png_folder(dir.path().string()); }, "holds no *.png images");
  write_png(dir.file("a.png"), 3, 2, 1, std::vector<uint8_t>(6, 1));
  write_png(dir.file("b.png"), 2, 3, 1, std::vector<uint8_t>(6, 1));
  expect_error([&] { read_png_folder(dir.path().string()); }, "mixes image sizes");
  std::filesystem::remove(dir.file("b.png"));
  std::ofstream(dir.file("c.png")) << "this is not a png";
  expect_error([&] { read_png_folder(dir.path().string()); }, "not a readable PNG");
  std::filesystem::remove(dir.file("c.png"));
  std::filesystem::create_directories(dir.path() / "cls");
  write_png(dir.file("cls/d.png"), 3, 2, 1, std::vector<uint8_t>(6, 1));
  expect_error([&] { read_png_folder(dir.path().string()); }, "both directly and in sub-folders");
  // A PNG cut short after its header.
  std::filesystem::remove_all(dir.path() / "cls");
  write_png(dir.file("big.png"), 3, 2, 1, std::vector<uint8_t>(6, 1));
  auto bytes = std::vector<uint8_t>(std::filesystem::file_size(dir.file("big.png")));
  std::ifstream(dir.file("big.png"), std::ios::binary).read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(bytes.size() - 20);
  expect_error([&] { decode_png(bytes.data(), bytes.size(), "cut"); }, "cut");
  // Grey + alpha is composited onto black.
  write_png(dir.file("ga.png"), 1, 1, 2, {200, 0});
  std::vector<uint8_t> ga(std::filesystem::file_size(dir.file("ga.png")));
  std::ifstream(dir.file("ga.png"), std::ios::binary).read(reinterpret_cast<char*>(ga.data()), static_cast<std::streamsize>(ga.size()));
  EXPECT_EQ(decode_png(ga.data(), ga.size(), "ga").pixels, std::vector<uint8_t>{0});
}

TEST(Dataset, NpyWithLabelsIsSplitTheSameWayEveryTime) {
  test::ScratchDir dir("npyds");
  std::vector<uint8_t> px(50 * 4);
  std::vector<int64_t> labels(50);
  for (int i = 0; i < 50; ++i) {
    for (int p = 0; p < 4; ++p) px[i * 4 + p] = static_cast<uint8_t>(i);
    labels[i] = i % 5;
  }
  write_bytes(dir.file("x.npy"), npy_bytes("|u1", {50, 2, 2}, px.data(), px.size()));
  write_bytes(dir.file("y.npy"), npy_bytes("<i8", {50}, labels.data(), 400));
  DataOptions opt;
  opt.labels = dir.file("y.npy");
  opt.test_fraction = 0.2;
  const Dataset a = load_dataset(dir.file("x.npy"), opt), b = load_dataset(dir.file("x.npy"), opt);
  EXPECT_EQ(a.train.count, 40);
  EXPECT_EQ(a.test.count, 10);
  EXPECT_EQ(a.test.pixels, b.test.pixels);
  std::set<int> seen;
  for (const ImageSet* s : {&a.train, &a.test})
    for (int64_t i = 0; i < s->count; ++i) {
      const int id = s->pixels[static_cast<size_t>(i) * 4];
      EXPECT_EQ(s->labels[static_cast<size_t>(i)], id % 5);  // labels travel with their images
      seen.insert(id);
    }
  EXPECT_EQ(seen.size(), 50u);  // a partition: every image once
  opt.labels.clear();
  EXPECT_TRUE(load_dataset(dir.file("x.npy"), opt).train.labels.empty());
  write_bytes(dir.file("short.npy"), npy_bytes("<i8", {49}, labels.data(), 392));
  opt.labels = dir.file("short.npy");
  expect_error([&] { load_dataset(dir.file("x.npy"), opt); }, "49 labels for 50 images");
  opt.labels.clear();
  opt.test_fraction = 1.0;
  expect_error([&] { load_dataset(dir.file("x.npy"), opt); }, "--test-fraction");
  std::ofstream(dir.file("x.csv")) << "1,2";
  expect_error([&] { load_dataset(dir.file("x.csv")); }, "not a .npy array");
}

// The content hash is what data.hpp defines (the reference value is Python's hashlib over the
// documented byte stream), and any change of a pixel, a label or the split changes it.
TEST(Dataset, ContentHashFollowsItsDefinition) {
  Dataset d;
  d.train.count = 2, d.train.height = 2, d.train.width = 2;
  d.train.pixels = {0, 1, 2, 3, 4, 5, 6, 7};
  d.train.labels = {0, 1};
  d.test.count = 1, d.test.height = 2, d.test.width = 2;
  d.test.pixels = {9, 9, 9, 9};
  const std::string h = dataset_hash(d);
  EXPECT_EQ(h, "sha256:166eedc52555d0fd96e9101ce182bf10af2dfb1146798e6befb1528c2e82dda9");
  Dataset pixel = d, label = d, moved = d;
  pixel.test.pixels[3] = 8;
  label.train.labels[1] = 2;
  // The same 12 bytes of pixels with another image in the test split.
  moved.train.count = 1, moved.test.count = 2;
  moved.train.pixels = {0, 1, 2, 3};
  moved.test.pixels = {4, 5, 6, 7, 9, 9, 9, 9};
  moved.train.labels = {0};
  moved.test.labels = {1};
  for (const Dataset* other : {&pixel, &label, &moved}) EXPECT_NE(dataset_hash(*other), h);

  test::ScratchDir dir("hashds");
  std::vector<uint8_t> px(30 * 4);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 7);
  write_bytes(dir.file("x.npy"), npy_bytes("|u1", {30, 2, 2}, px.data(), px.size()));
  DataOptions opt;
  EXPECT_EQ(dataset_hash(load_dataset(dir.file("x.npy"), opt)), dataset_hash(load_dataset(dir.file("x.npy"), opt)));
  opt.test_fraction = 0.2;
  EXPECT_NE(dataset_hash(load_dataset(dir.file("x.npy"), opt)), dataset_hash(load_dataset(dir.file("x.npy"))));
}

// A validation set held out of the training split: round(fraction * N) images, labels with them,
// a partition of the training images; tail takes the last ones, permuted a fixed share that does not
// depend on anything but the images' count; the test split is not touched.
TEST(Dataset, ValidationIsHeldOutOfTheTrainingImages) {
  Dataset d;
  d.train.count = 60, d.train.height = 1, d.train.width = 1;
  for (int i = 0; i < 60; ++i) d.train.pixels.push_back(static_cast<uint8_t>(i)), d.train.labels.push_back(i % 7);
  d.test.count = 2, d.test.height = 1, d.test.width = 1;
  d.test.pixels = {200, 201};
  Dataset tail = d, permuted = d, again = d, none = d;
  hold_out_validation(tail, 1.0 / 6.0, true);
  hold_out_validation(permuted, 1.0 / 6.0, false);
  hold_out_validation(again, 1.0 / 6.0, false);
  hold_out_validation(none, 0.0, false);
  EXPECT_EQ(none.validation.count, 0);
  EXPECT_EQ(none.train.pixels, d.train.pixels);
  EXPECT_EQ(tail.validation.count, 10);
  EXPECT_EQ(tail.train.count, 50);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(tail.validation.pixels[static_cast<size_t>(i)], 50 + i);
  EXPECT_EQ(permuted.validation.pixels, again.validation.pixels);
  EXPECT_NE(permuted.validation.pixels, tail.validation.pixels);
  std::set<int> seen;
  for (const ImageSet* s : {&permuted.train, &permuted.validation}) {
    EXPECT_TRUE(std::is_sorted(s->pixels.begin(), s->pixels.end())) << "the source's order is kept";
    for (int64_t i = 0; i < s->count; ++i) {
      EXPECT_EQ(s->labels[static_cast<size_t>(i)], s->pixels[static_cast<size_t>(i)] % 7);
      seen.insert(s->pixels[static_cast<size_t>(i)]);
    }
  }
  EXPECT_EQ(seen.size(), 60u);
  EXPECT_EQ(permuted.test.pixels, d.test.pixels);
  expect_error([&] { hold_out_validation(permuted, 0.1, false); }, "already holds a validation set");
  expect_error([&] { hold_out_validation(none, 1.0, false); }, "--validation-fraction");
  Dataset one;
  one.train.count = 1, one.train.height = 1, one.train.width = 1, one.train.pixels = {3};
  expect_error([&] { hold_out_validation(one, 0.5, true); }, "at least 2");
  // The image set hash is the data set hash's split: a set alone, or its first images.
  EXPECT_EQ(image_set_hash(d.train), image_set_hash(d.train, 60));
  EXPECT_NE(image_set_hash(d.train, 59), image_set_hash(d.train));
  Dataset only_train = d;
  only_train.test = ImageSet{};
  EXPECT_NE(image_set_hash(d.train), dataset_hash(only_train)) << "the data set hash adds the (empty) test split";
}

}  // namespace
}  // namespace vae
