// Helpers shared by the tests: seeded random vectors, scratch folders, the Fashion-MNIST data set,
// shell commands with their output (the CLI tests), and the error report that prints the worst
// element as a fraction of its bound.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "vae/data.hpp"
#include "vae/tensor.hpp"

namespace vae::test {

#ifndef VAE_TEST_DATA_DIR  // the op table's library (shared with the benchmarks) reads no data
#define VAE_TEST_DATA_DIR "/usr/share/datasets/fashion-mnist"
#endif

// A shell command's exit code (-1 when it did not exit) and its stdout and stderr together.
struct CommandResult {
  int code;
  std::string out;
};
inline CommandResult run_command(const std::string& command) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  std::string out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// A file's whole contents as text ("" when it cannot be read).
inline std::string read_text(const std::string& path) {
  std::string out;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
    std::fclose(f);
  }
  return out;
}

// A safetensors file's tensor bytes (what follows its JSON header): two checkpoints of the same
// configuration hold the same parameters bit for bit exactly when these are equal, whatever their
// metadata (each run's id, its folder) says. Empty when the file cannot be read.
inline std::string safetensors_payload(const std::string& path) {
  const std::string bytes = read_text(path);
  if (bytes.size() < 8) return {};
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  return n > bytes.size() - 8 ? std::string() : bytes.substr(8 + n);
}

// Build-time paths, overridable at run time (scripts/gpu-check.sh runs a build from elsewhere).
inline std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}
inline std::string data_dir() { return env_or("VAE_TEST_DATA_DIR", VAE_TEST_DATA_DIR); }

// Fashion-MNIST (Debian's dataset-fashion-mnist) for the tests that train; loaded once per binary.
inline bool have_fashion_mnist() {
  return std::filesystem::exists(data_dir() + "/train-images-idx3-ubyte.gz") ||
         std::filesystem::exists(data_dir() + "/train-images-idx3-ubyte");
}
inline const Dataset& fashion_mnist() {
  static const Dataset d = load_dataset(data_dir());
  return d;
}
// VAE_REQUIRE_CUDA=1 (set by scripts/gpu-check.sh on the GPU machine): a CUDA test that cannot run
// fails instead of skipping, so no CUDA check passes there by not running.
inline bool cuda_required() {
  const char* v = std::getenv("VAE_REQUIRE_CUDA");
  return v && *v && std::string(v) != "0";
}
// The CUDA tests skip, saying why, on machines without a GPU (and in builds without CUDA); they
// fail under VAE_REQUIRE_CUDA=1.
#define SKIP_WITHOUT_GPU()                                                                        \
  if (!::vae::cuda_available()) {                                                                 \
    if (::vae::test::cuda_required())                                                             \
      GTEST_FAIL() << "VAE_REQUIRE_CUDA is set but there is no usable CUDA GPU (or the build has "  \
                      "no CUDA): this CUDA test must run here";                                   \
    GTEST_SKIP() << "no CUDA GPU (or a build without CUDA): this CUDA test needs one; run "       \
                    "scripts/gpu-check.sh on a GPU machine (docs/gpu.md)";                        \
  }
#define SKIP_WITHOUT_FASHION_MNIST()                                                              \
  if (!::vae::test::have_fashion_mnist())                                                         \
  GTEST_SKIP() << "Fashion-MNIST not found in " << ::vae::test::data_dir()                        \
               << "; apt-get install dataset-fashion-mnist"

template <class T>
std::vector<T> random_vector(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

// Values in [lo, hi] whose magnitude is at least gap, so a finite difference never straddles a kink.
inline std::vector<double> random_away_from_zero(size_t n, uint64_t seed, double gap = 0.05) {
  auto v = random_vector<double>(n, seed, -1.0, 1.0);
  for (auto& x : v)
    if (std::abs(x) < gap) x = x < 0 ? x - gap : x + gap;
  return v;
}

// Multiples of 1/4 in [-1/2, 1/2], and (odd_32nds) odd multiples of 1/32 in [-15/32, 15/32]. With x
// and W from quarters and b from odd_32nds, every pre-activation x.W + b is exact in float whatever
// the summation order (for fan-in below 2^19) and at least 1/32 from zero: ReLU's pattern is the
// same on every backend and a finite difference never straddles its kink.
template <class T>
std::vector<T> quarters(size_t n, uint64_t seed) {
  const auto v = random_vector<double>(n, seed, -2.499, 2.499);
  std::vector<T> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<T>(std::round(v[i]) * 0.25);
  return out;
}
template <class T>
std::vector<T> odd_32nds(size_t n, uint64_t seed) {
  const auto v = random_vector<double>(n, seed, -8.0, 8.0);
  std::vector<T> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<T>((2.0 * std::floor(v[i]) + 1.0) / 32.0);
  return out;
}

// Per-element bound atol + rtol*|ref|; fails with the worst element and how close it came.
template <class A, class B>
void expect_close(const std::vector<A>& got, const std::vector<B>& ref, double atol, double rtol, const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double bound = atol + rtol * std::abs(static_cast<double>(ref[i]));
    const double err = std::abs(static_cast<double>(got[i]) - static_cast<double>(ref[i]));
    const double frac = std::isfinite(static_cast<double>(got[i])) ? err / bound : INFINITY;
    if (frac > worst || std::isnan(frac)) {
      worst = std::isnan(frac) ? INFINITY : frac;
      worst_i = i;
    }
  }
  EXPECT_LE(worst, 1.0) << what << ": worst element " << worst_i << " got " << got[worst_i] << " want "
                        << ref[worst_i] << " (" << worst << " of its bound atol=" << atol << " rtol=" << rtol << ")";
}

// For results that are sums of k products of values in [-1, 1], computed in another order than the
// reference (another library, another blocking): rounding differs by about k * 2^-24 * the typical
// partial sum (sqrt(k)); the bound is 8x that, absolute. Non-finite elements fail.
template <class A, class B>
void expect_sums_close(const std::vector<A>& got, const std::vector<B>& ref, int k, const std::string& what) {
  expect_close(got, ref, 8.0 * k * std::ldexp(1.0, -24) * std::sqrt(double(k)), 0.0, what);
}

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) {
    path_ = std::filesystem::temp_directory_path() /
            ("vae_test_" + name + "_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
             std::to_string(reinterpret_cast<uintptr_t>(this)));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace vae::test
