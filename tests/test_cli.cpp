// The vae command as a user runs it: a tiny training run and every subcommand on its output, and
// each kind of bad input (exit code, one clear message, no partial file).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "test_util.hpp"

#ifdef VAE_CLI_PATH

namespace vae {
namespace {

struct Result {
  int code;
  std::string out;  // stdout and stderr together
};

Result run(const std::string& args) {
  const std::string cmd = test::env_or("VAE_CLI_PATH", VAE_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

const std::string kData = test::data_dir();

bool have_data() { return std::filesystem::exists(kData + "/t10k-images-idx3-ubyte.gz"); }

void expect_failure(const Result& r, int code, const std::string& fragment) {
  EXPECT_EQ(r.code, code) << r.out;
  EXPECT_NE(r.out.find(fragment), std::string::npos) << "output lacks '" << fragment << "':\n" << r.out;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(Cli, BadFlagsAndValues) {
  expect_failure(run("train --bogus 1"), 2, "--bogus");
  expect_failure(run("train --epochs 0"), 2, "--epochs");
  expect_failure(run("train --batch -3"), 2, "--batch");
  expect_failure(run("train --lr abc"), 2, "--lr");
  expect_failure(run("frobnicate"), 2, "frobnicate");
  expect_failure(run("eval"), 2, "--checkpoint");
  expect_failure(run("train --hidden 512,abc --data " + kData), 1, "--hidden");
  expect_failure(run("train --likelihood poisson"), 1, "bernoulli|gaussian");
  expect_failure(run("train --device tpu"), 1, "cpu, cuda or auto");
}

TEST(Cli, MissingDataNamesThePackage) {
  test::ScratchDir dir("cli_nodata");
  const Result r = run("train --data /nonexistent/fmnist --out " + dir.file("run"));
  expect_failure(r, 1, "apt-get install dataset-fashion-mnist");
  EXPECT_FALSE(std::filesystem::exists(dir.file("run/model.safetensors")));
}

TEST(Cli, BadConfigFiles) {
  test::ScratchDir dir("cli_config");
  write_text(dir.file("bad.json"), "{\"train\": {\"epochs\": ");
  expect_failure(run("train --config " + dir.file("bad.json")), 1, "not valid JSON");
  write_text(dir.file("unknown.json"), "{\"train\": {\"epochz\": 3}}");
  expect_failure(run("train --config " + dir.file("unknown.json")), 1, "epochz");
  write_text(dir.file("range.json"), "{\"model\": {\"latent\": 0}}");
  expect_failure(run("train --config " + dir.file("range.json")), 1, "latent");
  write_text(dir.file("type.json"), "{\"train\": {\"lr\": \"fast\"}}");
  expect_failure(run("train --config " + dir.file("type.json")), 1, "'lr'");
  for (const std::string key : {"cuda_graph", "tf32", "fused_epilogues"}) {
    write_text(dir.file(key + ".json"), "{\"train\": {\"" + key + "\": \"no\"}}");
    expect_failure(run("train --config " + dir.file(key + ".json")), 1, "'" + key + "'");
  }
  expect_failure(run("train --config " + dir.file("absent.json")), 1, "does not exist");
}

TEST(Cli, BadCheckpointsLeaveNoOutput) {
  test::ScratchDir dir("cli_ckpt");
  write_text(dir.file("garbage.safetensors"), "this is not a checkpoint");
  const std::string png = dir.file("out.png");
  expect_failure(run("sample --checkpoint " + dir.file("garbage.safetensors") + " --out " + png), 1, "garbage.safetensors");
  expect_failure(run("sample --checkpoint " + dir.file("absent.safetensors") + " --out " + png), 1, "does not exist");
  expect_failure(run("eval --checkpoint " + dir.file("garbage.safetensors")), 1, "safetensors");
  EXPECT_FALSE(std::filesystem::exists(png));
}

TEST(Cli, TrainEvalSampleReconstruct) {
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not found in " << kData;
  test::ScratchDir dir("cli_run");
  const std::string run_dir = dir.file("run");
  const Result t = run("train --data " + kData + " --epochs 1 --train-limit 512 --test-limit 100 --hidden 64 "
                       "--latent 4 --batch 64 --threads 2 --out " + run_dir);
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_NE(t.out.find("epoch 1/1"), std::string::npos) << t.out;  // not a terminal: one plain line per epoch
  for (const char* f : {"model.safetensors", "config.json", "metrics.jsonl", "samples.png"})
    EXPECT_TRUE(std::filesystem::exists(run_dir + "/" + f)) << f;
  const std::string ckpt = run_dir + "/model.safetensors";

  const Result e = run("eval --checkpoint " + ckpt + " --data " + kData + " --k 5 --limit 50 --json");
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_NE(e.out.find("\"iwae_nll\""), std::string::npos) << e.out;
  EXPECT_NE(e.out.find("\"active_units\""), std::string::npos) << e.out;

  const Result s = run("sample --checkpoint " + ckpt + " --n 10 --temperature 0.5 --out " + dir.file("s.png"));
  ASSERT_EQ(s.code, 0) << s.out;
  EXPECT_TRUE(std::filesystem::exists(dir.file("s.png")));
  const Result r = run("reconstruct --checkpoint " + ckpt + " --data " + kData + " --n 5 --out " + dir.file("r.png"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(std::filesystem::exists(dir.file("r.png")));

  // The CUDA debugging switches reach the run's configuration (the CPU ignores them).
  const Result plain = run("train --data " + kData + " --epochs 1 --train-limit 128 --test-limit 50 --hidden 16 "
                           "--latent 2 --batch 64 --threads 2 --no-cuda-graph --strict-fp32 --no-fused-epilogues --out " +
                           dir.file("plain"));
  ASSERT_EQ(plain.code, 0) << plain.out;
  std::ifstream config(dir.file("plain/config.json"));
  const std::string config_text((std::istreambuf_iterator<char>(config)), std::istreambuf_iterator<char>());
  EXPECT_NE(config_text.find("\"cuda_graph\": false"), std::string::npos) << config_text;
  EXPECT_NE(config_text.find("\"tf32\": false"), std::string::npos) << config_text;
  EXPECT_NE(config_text.find("\"fused_epilogues\": false"), std::string::npos) << config_text;

  // The run's config.json is a valid --config file.
  const Result again = run("train --config " + run_dir + "/config.json --epochs 1 --out " + dir.file("run2"));
  EXPECT_EQ(again.code, 0) << again.out;

  // Truncate the checkpoint: eval must say so, not crash.
  std::filesystem::resize_file(ckpt, std::filesystem::file_size(ckpt) / 2);
  expect_failure(run("eval --checkpoint " + ckpt + " --data " + kData), 1, "truncated");
  // Sampling into a folder that does not exist fails cleanly.
  expect_failure(run("sample --checkpoint " + run_dir + "2/model.safetensors --out " + dir.file("no/such/dir.png")), 1,
                 "does not exist");
}

}  // namespace
}  // namespace vae

#endif  // VAE_CLI_PATH
