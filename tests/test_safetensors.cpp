// safetensors: bit-exact round trip, the header's byte layout against the format specification,
// every malformed-file path, and model checkpoints.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "test_util.hpp"
#include "vae/error.hpp"
#include "vae/model.hpp"
#include "vae/safetensors.hpp"

namespace vae {
namespace {

std::vector<uint8_t> with_header(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out(8);
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  // resize + memcpy rather than insert: GCC 12 raises a false -Wstringop-overread on these inserts.
  out.resize(8 + header.size() + data.size());
  std::memcpy(out.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
  return out;
}

void expect_error(const std::vector<uint8_t>& bytes, const std::string& fragment) {
  try {
    parse_safetensors(bytes, "test.safetensors");
    FAIL() << "expected an error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(SafeTensors, RoundTripIsBitExact) {
  SafeTensorsFile f;
  f.metadata["vae_config"] = "{\"latent\":2}";
  // Values whose bits must survive: signed zero, denormal, extremes, infinity, a NaN payload.
  std::vector<float> special{0.0f, -0.0f, 1e-45f, std::numeric_limits<float>::max(), -INFINITY, 3.14159f};
  uint32_t nan_bits = 0x7fc01234u;
  float nan;
  std::memcpy(&nan, &nan_bits, 4);
  special.push_back(nan);
  f.tensors.push_back({"b.special", {7}, special});
  f.tensors.push_back({"a.matrix", {2, 3}, test::random_vector<float>(6, 1)});
  f.tensors.push_back({"c.empty", {0, 4}, {}});
  test::ScratchDir dir("st_roundtrip");
  write_safetensors(dir.file("m.safetensors"), f);
  const SafeTensorsFile g = read_safetensors(dir.file("m.safetensors"));
  EXPECT_EQ(g.metadata, f.metadata);
  ASSERT_EQ(g.tensors.size(), 3u);
  for (const auto& t : f.tensors) {
    const SafeTensor* u = g.find(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(u->shape, t.shape);
    ASSERT_EQ(u->values.size(), t.values.size());
    if (!t.values.empty())  // memcmp of an empty vector's null data() is undefined
      EXPECT_EQ(std::memcmp(u->values.data(), t.values.data(), t.values.size() * 4), 0) << t.name;
  }
  // No temporary file is left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

// The layout the specification gives: u64 little-endian N, N bytes of UTF-8 JSON (here padded with
// spaces to a multiple of 8), then the tensors' bytes at their data_offsets, little-endian.
TEST(SafeTensors, HeaderByteLayoutFollowsTheSpecification) {
  SafeTensorsFile f;
  f.metadata["format"] = "pt";
  f.tensors.push_back({"y", {1, 3}, {4.0f, 5.0f, 6.0f}});
  f.tensors.push_back({"x", {2}, {1.0f, -2.0f}});
  const std::vector<uint8_t> bytes = serialize_safetensors(f);
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("y":{"dtype":"F32","shape":[1,3],"data_offsets":[8,20]}})";
  const size_t padded = (json.size() + 7) / 8 * 8;
  ASSERT_EQ(bytes.size(), 8 + padded + 20);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(bytes[i], static_cast<uint8_t>(padded >> (8 * i))) << "length byte " << i;
  EXPECT_EQ(std::string(bytes.begin() + 8, bytes.begin() + 8 + json.size()), json);
  for (size_t i = json.size(); i < padded; ++i) EXPECT_EQ(bytes[8 + i], ' ');
  // 1.0f = 0x3f800000, -2.0f = 0xc0000000, little-endian.
  const uint8_t want_x[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};
  EXPECT_EQ(std::memcmp(bytes.data() + 8 + padded, want_x, 8), 0);
}

TEST(SafeTensors, ReadsAFileWrittenByAnotherWriter) {
  // Keys in a different order, no metadata, no padding: all valid per the format.
  std::vector<uint8_t> data(12);
  const float v[3] = {1.5f, 2.5f, -1.0f};
  std::memcpy(data.data(), v, 12);
  const auto f = parse_safetensors(
      with_header(R"({"w":{"data_offsets":[4,12],"shape":[2],"dtype":"F32"},"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})", data),
      "other");
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.find("s")->values, std::vector<float>{1.5f});
  EXPECT_EQ(f.find("w")->values, (std::vector<float>{2.5f, -1.0f}));
}

TEST(SafeTensors, RejectsMalformedFiles) {
  const std::vector<uint8_t> four(4, 0), eight(8, 0);
  expect_error({1, 2, 3}, "truncated");
  expect_error(with_header("{", {}), "not valid JSON");
  expect_error(with_header("[1,2]", {}), "not a JSON object");
  {
    auto b = with_header(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", four);
    const uint64_t huge = 1u << 20;
    std::memcpy(b.data(), &huge, 8);
    expect_error(b, "header length");
  }
  expect_error(with_header(R"({"x":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", four), "only F32");
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", four), "needs 8");
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", four), "outside");
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight), "negative");
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[1]}})", four), "lacks");
  // 2^32 * 2^32 wraps a 64-bit count to 0, which would match an empty buffer; a dimension above
  // INT64_MAX would be stored negative. Both are refused before anything is multiplied or stored.
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", {}),
               "implausibly large");
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,0]}})", {}),
               "implausibly large");
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]}})", {}),
               "implausibly large");
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight), "hole");
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", eight), "after its last tensor");
  expect_error(with_header(R"({"__metadata__":{"a":1},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", four),
               "not a string");
  // A real file cut short anywhere must be rejected, never read past its end.
  SafeTensorsFile f;
  f.tensors.push_back({"t", {5}, test::random_vector<float>(5, 3)});
  const auto good = serialize_safetensors(f);
  for (size_t cut = 0; cut < good.size(); cut += 3) {
    std::vector<uint8_t> part(good.begin(), good.begin() + cut);
    EXPECT_THROW(parse_safetensors(part, "cut"), Error) << "cut at " << cut;
  }
}

TEST(Checkpoint, RoundTripAndShapeValidation) {
  ModelConfig cfg;
  cfg.image_height = 4;
  cfg.image_width = 6;
  cfg.encoder.hidden = {10, 7};
  cfg.latent = 3;
  cfg.likelihood = Likelihood::Gaussian;
  cfg.learned_sigma = true;
  Model model(cfg);
  model.initialize(11);
  test::ScratchDir dir("ckpt");
  const std::string path = dir.file("model.safetensors");
  save_checkpoint(model, path);

  Model loaded = load_checkpoint(path);
  EXPECT_EQ(loaded.config().to_json(), cfg.to_json());
  const auto a = model.named_parameters(), b = loaded.named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_EQ(a[i].second.to_host(), b[i].second.to_host()) << a[i].first;
  }
  EXPECT_EQ(a.front().first, "encoder.0.weight");
  EXPECT_EQ(a.back().first, "likelihood.log_sigma");

  // A tensor whose shape disagrees with the configuration.
  SafeTensorsFile f = read_safetensors(path);
  for (auto& t : f.tensors)
    if (t.name == "decoder.2.weight") {
      t.shape = {t.shape[1], t.shape[0]};
    }
  write_safetensors(dir.file("bad_shape.safetensors"), f);
  try {
    load_checkpoint(dir.file("bad_shape.safetensors"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("decoder.2.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("shape"), std::string::npos) << e.what();
  }
  // Not a vae checkpoint.
  f.metadata.clear();
  write_safetensors(dir.file("plain.safetensors"), f);
  EXPECT_THROW(load_checkpoint(dir.file("plain.safetensors")), Error);
  EXPECT_THROW(load_checkpoint(dir.file("missing.safetensors")), Error);
  // The step a checkpoint records, and the refusal to write a non-finite parameter.
  save_checkpoint(model, dir.file("stepped.safetensors"), 1234);
  EXPECT_EQ(checkpoint_step(dir.file("stepped.safetensors")), 1234);
  EXPECT_EQ(checkpoint_step(path), -1);
  std::vector<float> host = model.named_parameters()[0].second.to_host();
  host[1] = std::numeric_limits<float>::quiet_NaN();
  model.named_parameters()[0].second.copy_from_host(host.data(), static_cast<int64_t>(host.size()));
  try {
    save_checkpoint(model, dir.file("nan.safetensors"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("encoder.0.weight"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("nan.safetensors")));
  // Nor is one read: a NaN written by another tool is refused on load, naming the tensor.
  SafeTensorsFile with_nan = read_safetensors(path);
  with_nan.tensors[0].values[0] = std::numeric_limits<float>::quiet_NaN();
  write_safetensors(dir.file("nan_in.safetensors"), with_nan);
  try {
    load_checkpoint(dir.file("nan_in.safetensors"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(with_nan.tensors[0].name), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace vae

namespace vae {
namespace {

void expect_config_error(const std::string& json, const std::string& fragment) {
  try {
    ModelConfig::from_json(json);
    FAIL() << "expected an error containing '" << fragment << "' for " << json;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Config, NumbersOutOfRangeForTheirTypeNameTheField) {
  expect_config_error(R"({"latent": 1e30})", "'latent' must be an integer");
  expect_config_error(R"({"latent": 4294967298})", "'latent' = 4294967298 is out of range");
  expect_config_error(R"({"latent": -4294967298})", "'latent' = -4294967298 is out of range");
  expect_config_error(R"({"latent": 2.5})", "'latent' must be an integer");
  expect_config_error(R"({"hidden": [512, 4294967297]})", "'hidden[1]'");
  expect_config_error(R"({"gaussian_sigma": 1e300})", "'gaussian_sigma' = 1e+300 is out of range");
  expect_config_error(R"({"learned_sigma": 1})", "'learned_sigma' must be true or false");
  try {
    TrainConfig::from_json(R"({"epochs": 4294967297})");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'epochs' = 4294967297 is out of range"), std::string::npos) << e.what();
  }
  EXPECT_THROW(TrainConfig::from_json(R"({"seed": -1})"), Error);
  EXPECT_EQ(TrainConfig::from_json(R"({"seed": 18446744073709551615})").seed, UINT64_MAX);
}

TEST(Config, ModelSizeIsBoundedBeforeAllocation) {
  ModelConfig c;
  c.image_height = 4096;
  c.image_width = 4096;
  c.encoder.hidden = {65536};
  try {
    c.validate();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the model is too large"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--hidden"), std::string::npos) << e.what();
  }
  // The count the configuration implies is the model's own.
  for (const bool sigma : {false, true}) {
    ModelConfig m;
    m.image_channels = 3;
    m.image_height = 5;
    m.image_width = 7;
    m.encoder.hidden = {13, 6};
    m.latent = 4;
    m.likelihood = Likelihood::Gaussian;
    m.learned_sigma = sigma;
    EXPECT_EQ(m.parameter_count(), Model(m).parameter_count());
  }
}

TEST(Config, FloatsAreWrittenAsTyped) {
  TrainConfig t;
  t.lr = 0.001f;
  t.objective.beta = 0.1f;
  const std::string j = t.to_json();
  EXPECT_NE(j.find("\"lr\":0.001,"), std::string::npos) << j;
  EXPECT_NE(t.objective.to_json().find("\"beta\":0.1,"), std::string::npos) << t.objective.to_json();
  EXPECT_EQ(TrainConfig::from_json(j).lr, 0.001f);
}

}  // namespace
}  // namespace vae
