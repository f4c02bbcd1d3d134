// The vae command as a user runs it: a tiny training run and every subcommand on its output, and
// each kind of bad input (exit code, one clear message, no partial file).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "test_util.hpp"
#include "vae/generate.hpp"

#ifdef VAE_CLI_PATH

namespace vae {
namespace {

using Result = test::CommandResult;

Result run(const std::string& args) { return test::run_command(test::env_or("VAE_CLI_PATH", VAE_CLI_PATH) + " " + args); }

const std::string kData = test::data_dir();

bool have_data() { return std::filesystem::exists(kData + "/t10k-images-idx3-ubyte.gz"); }

void expect_failure(const Result& r, int code, const std::string& fragment) {
  EXPECT_EQ(r.code, code) << r.out;
  EXPECT_NE(r.out.find(fragment), std::string::npos) << "output lacks '" << fragment << "':\n" << r.out;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(Cli, BadFlagsAndValues) {
  expect_failure(run("train --bogus 1"), 2, "vae: error:");
  expect_failure(run("train --bogus 1"), 2, "--bogus");
  expect_failure(run("train --epoch 3"), 2, "did you mean --epochs?");
  expect_failure(run("trian"), 2, "did you mean train?");
  expect_failure(run("train --epochs 0"), 2, "--epochs");
  expect_failure(run("train --batch -3"), 2, "--batch");
  expect_failure(run("train --lr abc"), 2, "--lr");
  expect_failure(run("frobnicate"), 2, "frobnicate");
  expect_failure(run("eval"), 2, "--checkpoint");
  // A value a field's declaration does not accept is a usage error naming the flag.
  expect_failure(run("train --hidden 512,abc --data " + kData), 2, "--hidden 512,abc: expected comma-separated");
  expect_failure(run("train --likelihood poisson"), 2, "bernoulli|gaussian");
  expect_failure(run("train --device tpu"), 2, "cpu, cuda or auto");
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

  // --compare: which published rows share this evaluation's protocol. The built-in anchors'
  // Fashion-MNIST rows were evaluated with k = 5000 on 10,000 images: not this protocol.
  const Result c = run("eval --checkpoint " + ckpt + " --data " + kData + " --k 5 --limit 50 --json --compare");
  ASSERT_EQ(c.code, 0) << c.out;
  const nlohmann::json cj = nlohmann::json::parse(c.out.substr(c.out.find('{')));
  const nlohmann::json protocol = cj.at("protocol");
  EXPECT_EQ(protocol.at("k"), 5);
  EXPECT_EQ(protocol.at("test_images"), 50);
  EXPECT_EQ(protocol.at("binarization"), "static");
  EXPECT_EQ(protocol.at("test_split"), "the source's own test split");
  EXPECT_EQ(protocol.at("checkpoint"), ckpt);
  EXPECT_EQ(protocol.at("checkpoint_step"), 8) << "one epoch of 512 images in batches of 64";
  ASSERT_FALSE(cj.at("compare").empty());
  for (const auto& row : cj.at("compare")) {
    EXPECT_EQ(row.at("protocol"), "differs") << row.dump();
    EXPECT_FALSE(row.contains("gap")) << "no gap across protocols: " << row.dump();
  }
  // A file whose first row has exactly this protocol, the second another k, the third an unstated field.
  const std::string fields = "\"likelihood\": \"bernoulli\", \"training_binarization\": \"dynamic\", "
                             "\"estimator\": \"importance_weighted\", \"test_images\": 50";
  write_text(dir.file("anchors.json"),
             "{\"data_sets\": {\"fm\": {\"hashes\": [" + protocol.at("data_hash").dump() + "]}}, \"anchors\": ["
             "{\"model\": \"same\", \"data\": \"fm\", \"neg_log_px\": 200, \"sd\": 0.3, \"protocol\": {" + fields +
             ", \"binarization\": \"static\", \"k\": 5}},"
             "{\"model\": \"other k\", \"data\": \"fm\", \"neg_log_px\": 200, \"protocol\": {" + fields +
             ", \"binarization\": \"static\", \"k\": 5000}},"
             "{\"model\": \"unstated\", \"data\": \"fm\", \"neg_log_px\": 200, \"protocol\": {" + fields +
             ", \"binarization\": null, \"k\": 5}}]}");
  const Result own = run("eval --checkpoint " + ckpt + " --data " + kData + " --k 5 --limit 50 --json --compare --anchors " +
                         dir.file("anchors.json"));
  ASSERT_EQ(own.code, 0) << own.out;
  const nlohmann::json oj = nlohmann::json::parse(own.out.substr(own.out.find('{')));
  const nlohmann::json& rows = oj.at("compare");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].at("protocol"), "same") << rows[0].dump();
  EXPECT_NEAR(rows[0].at("gap").get<double>(), oj.at("iwae_nll").get<double>() - 200, 1e-9);
  const double se = oj.at("iwae_stderr").get<double>();
  EXPECT_NEAR(rows[0].at("gap_stderr").get<double>(), std::sqrt(se * se + 0.09), 1e-9);
  EXPECT_EQ(rows[1].at("protocol"), "differs");
  EXPECT_EQ(rows[1].at("differs").at(0).at("field"), "k");
  EXPECT_EQ(rows[2].at("protocol"), "unknown");
  EXPECT_EQ(rows[2].at("unknown").at(0).at("field"), "binarization");
  const Result text = run("eval --checkpoint " + ckpt + " --data " + kData + " --k 5 --limit 50 --compare --anchors " +
                          dir.file("anchors.json"));
  ASSERT_EQ(text.code, 0) << text.out;
  EXPECT_NE(text.out.find("published rows under this evaluation's protocol:"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("differs: k (theirs 5000, ours 5)"), std::string::npos) << text.out;
  // A malformed anchors file is refused before the evaluation.
  write_text(dir.file("bad_anchors.json"), "{\"anchors\": [{\"model\": \"x\"}]}");
  expect_failure(run("eval --checkpoint " + ckpt + " --data " + kData + " --k 5 --compare --anchors " +
                     dir.file("bad_anchors.json")), 1, "needs a number neg_log_px");

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
  // Output folders are made as needed, and removed again when the command fails before writing.
  const Result made = run("sample --checkpoint " + run_dir + "2/model.safetensors --out " + dir.file("new/sub/s.png"));
  ASSERT_EQ(made.code, 0) << made.out;
  EXPECT_TRUE(std::filesystem::exists(dir.file("new/sub/s.png")));
  expect_failure(run("sample --checkpoint " + ckpt + " --out " + dir.file("never/made/s.png")), 1, "truncated");
  EXPECT_FALSE(std::filesystem::exists(dir.file("never")));
  const Result recon = run("reconstruct --checkpoint " + run_dir + "2/model.safetensors --data " + kData +
                           " --n 4 --scale 2 --out " + dir.file("r/recon.png"));
  ASSERT_EQ(recon.code, 0) << recon.out;
  EXPECT_TRUE(std::filesystem::exists(dir.file("r/recon.png")));
}

// The mixture prior from the command line: it trains, its config.json names it, eval says why it
// prints no KL per dimension, and the sampler draws from it. A components count without the mixture
// is refused before anything runs.
// Every configuration field with a flag is a flag of vae train, with its help; a bad value names
// the flag and the rule (exit 2); a run config written before the objective had its own section
// (beta under train) and before the model was a tree still trains.
TEST(Cli, FieldFlagsComeFromTheConfigDeclarations) {
  const Result help = run("train --help");
  ASSERT_EQ(help.code, 0) << help.out;
  for (const char* flag : {"--data", "--epochs", "--lr", "--beta", "--warmup-epochs", "--objective", "--latent",
                           "--warmup", "--free-bits", "--free-bits-group", "--capacity", "--capacity-epochs", "--k-train",
                           "--prior-flow-steps", "--posterior-flow",
                           "--hidden", "--channels", "--prior", "--prior-components", "--likelihood", "--no-cuda-graph",
                           "--strict-fp32", "--no-fused-epilogues", "--config", "--resume", "--overwrite"})
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag << " missing from:\n" << help.out;
  expect_failure(run("train --beta 2000"), 2, "--beta 2000: beta must be in [0, 1000], got 2000");
  expect_failure(run("train --lr 0"), 2, "--lr 0: lr must be in");
  expect_failure(run("train --hidden 64,x"), 2, "--hidden 64,x: expected comma-separated positive integers");
  expect_failure(run("train --objective wake-sleep"), 2, "unknown objective type 'wake-sleep'");
  expect_failure(run("train --objective iwae --k-train 0"), 2, "--k-train 0: k must be in [1, 4096]");
  expect_failure(run("train --objective iwae --beta 0.5"), 1, "objective.beta");
  expect_failure(run("train --k-train 5"), 1, "objective.k (--k-train)");
  expect_failure(run("train --free-bits 0.5 --free-bits-group 5"), 1, "must divide the latent size 32");
  expect_failure(run("train --warmup cyclical"), 1, "warmup_epochs");
  expect_failure(run("train --test-limit 1.5"), 2, "--test-limit 1.5: expected an integer");
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not found in " << kData;
  test::ScratchDir dir("cli_old_config");
  write_text(dir.file("old.json"), R"({"model": {"hidden": [32], "latent": 4, "likelihood": "bernoulli"},
                                       "train": {"epochs": 1, "batch": 64, "beta": 0.5, "warmup_epochs": 0,
                                                 "train_limit": 128, "test_limit": 50}})");
  const Result t = run("train --config " + dir.file("old.json") + " --data " + kData + " --threads 2 --out " + dir.file("run"));
  ASSERT_EQ(t.code, 0) << t.out;
  std::ifstream config(dir.file("run/config.json"));
  const std::string text((std::istreambuf_iterator<char>(config)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"objective\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"beta\": 0.5"), std::string::npos) << text;
  // Both places at once is ambiguous: refused, saying where it belongs.
  write_text(dir.file("both.json"), R"({"objective": {"beta": 1}, "train": {"beta": 0.5}})");
  expect_failure(run("train --config " + dir.file("both.json")), 1, "belong to the 'objective' section");
}

// The VampPrior trained with the importance-weighted bound (DReG) from the command line: the run's
// config holds both, metrics.jsonl the diagnostics, and eval and sample work from the checkpoint.
TEST(Cli, VampPriorWithTheDoublyReparameterisedBoundTrainsEvaluatesAndSamples) {
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not found in " << kData;
  test::ScratchDir dir("cli_vamp");
  const std::string run_dir = dir.file("run");
  const Result t = run("train --data " + kData + " --prior vamp --prior-components 7 --objective iwae-dreg --k-train 3 "
                       "--epochs 1 --train-limit 256 --test-limit 50 --hidden 32 --latent 4 --batch 64 --threads 2 --out " +
                       run_dir);
  ASSERT_EQ(t.code, 0) << t.out;
  std::ifstream config(run_dir + "/config.json");
  const std::string text((std::istreambuf_iterator<char>(config)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"vamp\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"iwae_dreg\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"k\": 3"), std::string::npos) << text;
  std::ifstream metrics(run_dir + "/metrics.jsonl");
  const std::string m((std::istreambuf_iterator<char>(metrics)), std::istreambuf_iterator<char>());
  EXPECT_NE(m.find("\"mutual_info\""), std::string::npos) << m;
  EXPECT_NE(m.find("\"aggregate_kl\""), std::string::npos) << m;
  const Result e = run("eval --checkpoint " + run_dir + "/model.safetensors --data " + kData + " --k 5 --limit 30");
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_NE(e.out.find("I(x;z)"), std::string::npos) << e.out;
  const Result s = run("sample --checkpoint " + run_dir + "/model.safetensors --n 9 --out " + dir.file("s.png"));
  EXPECT_EQ(s.code, 0) << s.out;
}

// A flow prior with a posterior flow: trains (the ActNorms initialised from the first batch),
// reports both flows' log-determinants, evaluates and samples; a flow on one latent dimension is a
// usage error naming the rule.
TEST(Cli, FlowPriorAndPosteriorFlowTrainEvaluateAndSample) {
  expect_failure(run("train --latent 1 --posterior-flow 2"), 1, "latent size must be at least 2");
  expect_failure(run("train --prior-flow-steps 3"), 2, "--prior flow");
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not found in " << kData;
  test::ScratchDir dir("cli_flow");
  const std::string run_dir = dir.file("run");
  const Result t = run("train --data " + kData + " --prior flow --prior-flow-steps 2 --posterior-flow 2 --epochs 1 "
                       "--train-limit 256 --test-limit 50 --hidden 32 --latent 4 --batch 64 --threads 2 --out " + run_dir);
  ASSERT_EQ(t.code, 0) << t.out;
  std::ifstream metrics(run_dir + "/metrics.jsonl");
  const std::string m((std::istreambuf_iterator<char>(metrics)), std::istreambuf_iterator<char>());
  EXPECT_NE(m.find("\"posterior_flow_logdet\""), std::string::npos) << m;
  EXPECT_NE(m.find("\"prior_flow_logdet\""), std::string::npos) << m;
  const Result e = run("eval --checkpoint " + run_dir + "/model.safetensors --data " + kData + " --k 5 --limit 30");
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_NE(e.out.find("posterior flow"), std::string::npos) << e.out;
  const Result s = run("sample --checkpoint " + run_dir + "/model.safetensors --n 9 --out " + dir.file("s.png"));
  EXPECT_EQ(s.code, 0) << s.out;
}

TEST(Cli, MixturePriorTrainsEvaluatesAndSamples) {
  expect_failure(run("train --prior-components 5 --epochs 1"), 2, "--prior mog");
  expect_failure(run("train --prior mog --prior-components 0"), 2, "--prior-components");
  expect_failure(run("train --prior gaussian"), 2, "prior type 'gaussian'");
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not found in " << kData;
  test::ScratchDir dir("cli_mog");
  const std::string run_dir = dir.file("run");
  const Result t = run("train --data " + kData + " --prior mog --prior-components 3 --epochs 1 --train-limit 256 "
                       "--test-limit 50 --hidden 32 --latent 4 --batch 64 --threads 2 --out " + run_dir);
  ASSERT_EQ(t.code, 0) << t.out;
  std::ifstream config(run_dir + "/config.json");
  const std::string text((std::istreambuf_iterator<char>(config)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"mog\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"components\": 3"), std::string::npos) << text;
  const Result e = run("eval --checkpoint " + run_dir + "/model.safetensors --data " + kData + " --k 5 --limit 30");
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_NE(e.out.find("does not factorise"), std::string::npos) << e.out;
  const Result s = run("sample --checkpoint " + run_dir + "/model.safetensors --n 9 --out " + dir.file("s.png"));
  ASSERT_EQ(s.code, 0) << s.out;
  EXPECT_TRUE(std::filesystem::exists(dir.file("s.png")));
}


std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

const std::string kSmallRun = " --train-limit 640 --test-limit 100 --hidden 32 --latent 4 --batch 64 --threads 1 --seed 3";

TEST(Cli, ResumeGivesTheBitsOfAnUninterruptedRun) {
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not found in " << kData;
  test::ScratchDir dir("cli_resume");
  const Result straight = run("train --data " + kData + kSmallRun + " --epochs 4 --out " + dir.file("straight"));
  ASSERT_EQ(straight.code, 0) << straight.out;
  const Result first = run("train --data " + kData + kSmallRun + " --epochs 2 --out " + dir.file("split"));
  ASSERT_EQ(first.code, 0) << first.out;
  // The folder now holds a run: a new run there is refused, and --resume takes only --epochs/--threads.
  expect_failure(run("train --data " + kData + " --out " + dir.file("split")), 1, "already holds a run");
  expect_failure(run("train --resume " + dir.file("split") + " --lr 0.1"), 2, "--lr");
  expect_failure(run("train --resume " + dir.file("split")), 1, "has finished its 2 epochs");
  const Result second = run("train --resume " + dir.file("split") + " --epochs 4");
  ASSERT_EQ(second.code, 0) << second.out;
  EXPECT_NE(second.out.find("resuming"), std::string::npos) << second.out;
  // The files differ in their run ids and folders: compare the tensors.
  using test::safetensors_payload;
  EXPECT_TRUE(safetensors_payload(dir.file("straight/model.safetensors")) ==
              safetensors_payload(dir.file("split/model.safetensors")));
  EXPECT_TRUE(safetensors_payload(dir.file("straight/train_state.safetensors")) ==
              safetensors_payload(dir.file("split/train_state.safetensors")));
  // metrics.jsonl holds the four epochs once each.
  const auto metrics = file_bytes(dir.file("split/metrics.jsonl"));
  EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), 4);
  // --overwrite replaces the run.
  const Result again = run("train --data " + kData + kSmallRun + " --epochs 1 --overwrite --out " + dir.file("split"));
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_FALSE(std::filesystem::exists(dir.file("split/best.safetensors")) &&
               safetensors_payload(dir.file("split/best.safetensors")) ==
                   safetensors_payload(dir.file("straight/best.safetensors")));
}

// SIGINT in the middle of an epoch: the run saves a checkpoint and its state, says how to resume,
// exits 130; resuming it ends with the bits of a run that was never interrupted. While it runs, the
// folder is its own.
TEST(Cli, InterruptSavesAndResumesExactly) {
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not found in " << kData;
  test::ScratchDir dir("cli_interrupt");
  const std::string args = " --train-limit 6400 --test-limit 100 --hidden 256 --latent 8 --batch 32 --threads 1 --seed 5 --epochs 2";
  const Result straight = run("train --data " + kData + args + " --out " + dir.file("straight"));
  ASSERT_EQ(straight.code, 0) << straight.out;

  int out_pipe[2];
  ASSERT_EQ(pipe(out_pipe), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(out_pipe[1], STDERR_FILENO);
    close(out_pipe[0]);
    const std::string cli = test::env_or("VAE_CLI_PATH", VAE_CLI_PATH);
    const std::string cmd = cli + " train --data " + kData + args + " --out " + dir.file("stopped");
    execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out_pipe[1]);
  // Wait for the run to start training, then a little into its first epoch.
  std::string out;
  char buf[256];
  while (out.find("training ") == std::string::npos) {
    const ssize_t n = read(out_pipe[0], buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  // The folder has one owner while the run lives: a second run on it (even one that would overwrite
  // it) exits at once, naming the holder, and leaves the first run's files alone.
  const Result second = run("train --data " + kData + args + " --overwrite --out " + dir.file("stopped"));
  expect_failure(second, 1, "is in use by another run (pid " + std::to_string(pid));
  const Result resume_now = run("train --resume " + dir.file("stopped"));
  expect_failure(resume_now, 1, "is in use by another run");
  usleep(300 * 1000);
  kill(pid, SIGINT);
  ssize_t n;
  while ((n = read(out_pipe[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(out_pipe[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << out;
  ASSERT_EQ(WEXITSTATUS(status), 130) << out;
  EXPECT_NE(out.find("vae train --resume " + dir.file("stopped")), std::string::npos) << out;
  EXPECT_TRUE(std::filesystem::exists(dir.file("stopped/train_state.safetensors"))) << out;
  EXPECT_TRUE(std::filesystem::exists(dir.file("stopped/samples.png"))) << out;
  const Result resumed = run("train --resume " + dir.file("stopped"));
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_TRUE(test::safetensors_payload(dir.file("straight/model.safetensors")) ==
              test::safetensors_payload(dir.file("stopped/model.safetensors")));
}

TEST(Cli, ExplodingRunStopsAndSavesNothingNonFinite) {
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not found in " << kData;
  test::ScratchDir dir("cli_explode");
  const Result r = run("train --data " + kData + " --lr 10 --epochs 2 --train-limit 2000 --test-limit 100 --threads 1 --out " +
                       dir.file("run"));
  expect_failure(r, 1, "training diverged in epoch 1");
  EXPECT_NE(r.out.find("lower --lr"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir.file("run/model.safetensors")));
}

// A uint8 .npy array of `shape` (numpy's text, "(200, 12, 10)") holding `bytes` pseudo-random pixels
// that depend on seed, written as numpy.save does.
void write_u8_npy(const std::string& path, const std::string& shape, size_t bytes, int seed) {
  std::string header = "{'descr': '|u1', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  const char magic[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  f.write(magic, 8);
  f.put(static_cast<char>(header.size() & 0xff)).put(static_cast<char>(header.size() >> 8));
  f << header;
  for (size_t i = 0; i < bytes; ++i) f.put(static_cast<char>((i * 2654435761u + seed) >> 24));
}

// A run remembers its data: started with relative paths, it resumes from another working folder;
// the checkpoint commands read the run's data and split without --data and say so; resume refuses
// other data of the same shape, finds moved data only through --data (its content hash checked),
// and refuses a training state copied in from another run. A folder whose run finished no epoch is
// started again, not resumed.
TEST(Cli, RunsRememberTheirData) {
  test::ScratchDir dir("cli_origin");
  write_u8_npy(dir.file("x.npy"), "(200, 12, 10)", 200 * 120, 1);
  write_u8_npy(dir.file("other.npy"), "(200, 12, 10)", 200 * 120, 1 << 30);  // other pixels, same shape
  const std::string small = " --hidden 16 --latent 2 --batch 32 --threads 1";
  const std::string in_dir = "cd " + dir.path().string() + " && " + test::env_or("VAE_CLI_PATH", VAE_CLI_PATH) + " ";
  const Result t = test::run_command(in_dir + "train --data x.npy --test-fraction 0.2 --epochs 1 --out run" + small);
  ASSERT_EQ(t.code, 0) << t.out;
  const std::string config = test::read_text(dir.file("run/config.json"));
  EXPECT_NE(config.find("\"data\": \"" + dir.file("x.npy") + "\""), std::string::npos) << config;
  EXPECT_NE(config.find("\"data_hash\": \"sha256:"), std::string::npos) << config;

  const Result e = run("eval --checkpoint " + dir.file("run/model.safetensors") + " --json");
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_NE(e.out.find("\"count\":40"), std::string::npos) << e.out;  // the run's 20% of 200, not Fashion-MNIST
  EXPECT_NE(e.out.find("data: " + dir.file("x.npy") + ", test fraction 0.2, as the checkpoint's run trained on it"),
            std::string::npos) << e.out;
  const Result enc = run("encode --checkpoint " + dir.file("run/model.safetensors") + " --out " + dir.file("codes"));
  ASSERT_EQ(enc.code, 0) << enc.out;
  EXPECT_NE(enc.out.find("as the checkpoint's run trained on it"), std::string::npos) << enc.out;

  const Result r = test::run_command("cd / && " + test::env_or("VAE_CLI_PATH", VAE_CLI_PATH) + " train --resume " +
                                     dir.file("run") + " --epochs 2");
  ASSERT_EQ(r.code, 0) << r.out;
  expect_failure(run("train --resume " + dir.file("run") + " --epochs 3 --data " + dir.file("other.npy")), 1,
                 "is not the data the run in");
  std::filesystem::create_directories(dir.path() / "moved");
  std::filesystem::rename(dir.file("x.npy"), dir.file("moved/x.npy"));
  expect_failure(run("train --resume " + dir.file("run") + " --epochs 3"), 1, "if it moved, pass --data");
  expect_failure(run("eval --checkpoint " + dir.file("run/model.safetensors")), 1, "if it moved, pass --data");
  const Result m = run("train --resume " + dir.file("run") + " --epochs 3 --data " + dir.file("moved/x.npy"));
  ASSERT_EQ(m.code, 0) << m.out;
  EXPECT_NE(test::read_text(dir.file("run/config.json")).find(dir.file("moved/x.npy")), std::string::npos);
  expect_failure(run("train --resume " + dir.file("run") + " --epochs 4 --lr 0.1"), 2, "only --epochs");

  // Another run's state (same configuration, other data) copied into the folder.
  const Result o = run("train --data " + dir.file("other.npy") + " --epochs 1 --out " + dir.file("other") + small);
  ASSERT_EQ(o.code, 0) << o.out;
  std::filesystem::copy_file(dir.file("other/train_state.safetensors"), dir.file("run/train_state.safetensors"),
                             std::filesystem::copy_options::overwrite_existing);
  expect_failure(run("train --resume " + dir.file("run") + " --epochs 4"), 1, "the folder mixes files of different runs");

  // A run that finished no epoch left config.json alone: resume says to start it again, and train does.
  std::filesystem::create_directories(dir.path() / "unfinished");
  std::filesystem::copy_file(dir.file("other/config.json"), dir.file("unfinished/config.json"));
  expect_failure(run("train --resume " + dir.file("unfinished")), 1, "stopped before finishing an epoch");
  const Result again = run("train --config " + dir.file("unfinished/config.json") + " --out " + dir.file("unfinished"));
  ASSERT_EQ(again.code, 0) << again.out;
}

TEST(Cli, TrainsOnNpyAndPngFolders) {
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not found in " << kData;
  test::ScratchDir dir("cli_own");
  // A grey [N, H, W] uint8 array and an RGB [N, H, W, 3] one, written as numpy.save does.
  const auto npy = write_u8_npy;
  npy(dir.file("grey.npy"), "(200, 12, 10)", 200 * 120, 1);
  npy(dir.file("rgb.npy"), "(150, 8, 9, 3)", 150 * 216, 2);
  const std::string small = " --epochs 1 --hidden 16 --latent 2 --batch 32 --threads 1";
  const Result g = run("train --data " + dir.file("grey.npy") + small + " --out " + dir.file("grey"));
  ASSERT_EQ(g.code, 0) << g.out;
  EXPECT_NE(g.out.find("180 images of 1x12x10"), std::string::npos) << g.out;
  const Result c = run("train --data " + dir.file("rgb.npy") + small + " --test-fraction 0.2 --out " + dir.file("rgb"));
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_NE(c.out.find("120 images of 3x8x9"), std::string::npos) << c.out;
  const Result e = run("eval --checkpoint " + dir.file("rgb/model.safetensors") + " --data " + dir.file("rgb.npy") +
                       " --test-fraction 0.2 --json");
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_NE(e.out.find("\"count\":30"), std::string::npos) << e.out;
  // The grey model refuses the RGB data, naming both shapes.
  expect_failure(run("eval --checkpoint " + dir.file("grey/model.safetensors") + " --data " + dir.file("rgb.npy")), 1,
                 "3x8x9");
  // A folder of PNG images in two class sub-folders, made with the sample command (one RGB sample
  // per file, all of one size).
  std::filesystem::create_directories(dir.path() / "pngs" / "a");
  std::filesystem::create_directories(dir.path() / "pngs" / "b");
  for (int i = 0; i < 6; ++i) {
    const Result s = run("sample --checkpoint " + dir.file("rgb/model.safetensors") + " --n 1 --seed " + std::to_string(i) +
                         " --out " + dir.file("pngs/" + std::string(i % 2 ? "a" : "b") + "/" + std::to_string(i) + ".png"));
    ASSERT_EQ(s.code, 0) << s.out;
  }
  const Result p = run("train --data " + dir.file("pngs") + small + " --test-fraction 0.34 --out " + dir.file("png"));
  ASSERT_EQ(p.code, 0) << p.out;
  EXPECT_NE(p.out.find("4 images of 3x12x13"), std::string::npos) << p.out;  // an 8x9 sample framed by 2 pixels
  expect_failure(run("train --data " + dir.file("nothing-here") + small), 1, "not found");
}

// The generation commands end to end on a tiny conditional and a tiny plain model: conditional
// samples by label and one row per class, the aggregate posterior, encode -> decode through .npy
// files, interpolation, traversal, the latent plot, the classifier and the quality measure; and
// their bad input: a label out of range or for a model without labels, codes of the wrong dtype or
// shape, an index past the data set, labels missing for --conditional. No partial file is left.
TEST(Cli, GenerationCommandsAndTheirBadInput) {
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not found in " << kData;
  test::ScratchDir dir("cli_generate");
  const std::string small = " --data " + kData + " --epochs 1 --train-limit 512 --test-limit 100 --hidden 32 --batch 64 "
                            "--threads 2";
  const Result c = run("train" + small + " --latent 3 --conditional --out " + dir.file("cond"));
  ASSERT_EQ(c.code, 0) << c.out;
  std::ifstream config(dir.file("cond/config.json"));
  const std::string config_text((std::istreambuf_iterator<char>(config)), std::istreambuf_iterator<char>());
  EXPECT_NE(config_text.find("\"conditional\": true"), std::string::npos) << config_text;
  EXPECT_NE(config_text.find("\"classes\": 10"), std::string::npos) << config_text;
  const Result p = run("train" + small + " --latent 2 --out " + dir.file("plain"));
  ASSERT_EQ(p.code, 0) << p.out;
  const std::string cond = " --checkpoint " + dir.file("cond/model.safetensors") + " --threads 2",
                    plain = " --checkpoint " + dir.file("plain/model.safetensors") + " --threads 2";

  // Sampling: one label, one row per class (.npy [80, 1, 28, 28]), the aggregate posterior.
  Result r = run("sample" + cond + " --label 3 --n 5 --scale 2 --out " + dir.file("s3.png"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("samples/s"), std::string::npos) << r.out;
  r = run("sample" + cond + " --columns 8 --out " + dir.file("rows.npy"));
  ASSERT_EQ(r.code, 0) << r.out;
  std::vector<int64_t> shape;
  EXPECT_EQ(read_npy_floats(dir.file("rows.npy"), shape).size(), size_t(80 * 784));
  EXPECT_EQ(shape, (std::vector<int64_t>{80, 1, 28, 28}));
  r = run("sample" + plain + " --from aggregate --fit-limit 300 --components 3 --data " + kData + " --out " + dir.file("agg.png"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("3-component mixture to 300 training posterior means"), std::string::npos) << r.out;
  expect_failure(run("sample" + cond + " --label 10 --out " + dir.file("bad.png")), 1, "out of range: the model has classes 0..9");
  expect_failure(run("sample" + cond + " --label three --out " + dir.file("bad.png")), 1, "class index or 'all'");
  expect_failure(run("sample" + plain + " --label 3 --out " + dir.file("bad.png")), 1, "not conditional");
  expect_failure(run("sample" + plain + " --from posterior --out " + dir.file("bad.png")), 1, "prior or aggregate");
  expect_failure(run("sample" + plain + " --out " + dir.file("bad.jpg")), 1, "must end in .png or .npy");

  // encode -> decode.
  r = run("encode" + plain + " --data " + kData + " --limit 20 --out " + dir.file("codes"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(read_npy_floats(dir.file("codes/mu.npy"), shape).size(), 40u);
  EXPECT_EQ(shape, (std::vector<int64_t>{20, 2}));
  EXPECT_EQ(read_npy_labels(dir.file("codes/labels.npy")).size(), 20u);
  r = run("decode" + plain + " --codes " + dir.file("codes/mu.npy") + " --out " + dir.file("decoded.png"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(std::filesystem::exists(dir.file("decoded.png")));
  expect_failure(run("decode" + plain + " --codes " + dir.file("codes/labels.npy") + " --out " + dir.file("bad.png")), 1,
                 "expected float32");
  expect_failure(run("decode" + plain + " --codes " + dir.file("rows.npy") + " --out " + dir.file("bad.png")), 1,
                 "but this model decodes codes of shape [n, 2]");
  r = run("encode" + cond + " --data " + kData + " --limit 20 --out " + dir.file("ccodes"));
  ASSERT_EQ(r.code, 0) << r.out;
  expect_failure(run("decode" + cond + " --codes " + dir.file("ccodes/mu.npy") + " --out " + dir.file("bad.png")), 1,
                 "this model is conditional: give --label");
  r = run("decode" + cond + " --codes " + dir.file("ccodes/mu.npy") + " --code-labels " + dir.file("ccodes/labels.npy") +
          " --out " + dir.file("cdecoded.npy"));
  ASSERT_EQ(r.code, 0) << r.out;
  expect_failure(run("decode" + plain + " --codes " + dir.file("codes/mu.npy") + " --label 1 --out " + dir.file("bad.png")), 1,
                 "not conditional");

  r = run("reconstruct" + std::string(" --checkpoint ") + dir.file("cond/model.safetensors") + " --data " + kData +
          " --n 4 --out " + dir.file("recon.png"));
  ASSERT_EQ(r.code, 0) << r.out;

  // Interpolation, traversal, the latent plot.
  r = run("interpolate" + cond + " --data " + kData + " --from-index 0 --to-index 5 --steps 4 --mode both --out " +
          dir.file("i.png"));
  ASSERT_EQ(r.code, 0) << r.out;
  expect_failure(run("interpolate" + plain + " --data " + kData + " --to-index 10000 --out " + dir.file("bad.png")), 1,
                 "--to-index 10000 is past the test set's 10000 images");
  expect_failure(run("interpolate" + plain + " --data " + kData + " --mode curved --out " + dir.file("bad.png")), 1,
                 "linear, spherical or both");
  r = run("traverse" + plain + " --data " + kData + " --index 2 --dims 2 --steps 5 --out " + dir.file("t.png"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("rows are dimensions"), std::string::npos) << r.out;
  expect_failure(run("traverse" + plain + " --data " + kData + " --index -1 --out " + dir.file("bad.png")), 1, "past the test set");
  r = run("plot-latent" + cond + " --data " + kData + " --limit 300 --out " + dir.file("plot.png"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("coloured by label"), std::string::npos) << r.out;
  EXPECT_GT(std::filesystem::file_size(dir.file("plot.png")), 1000u);

  // The classifier and the quality measure.
  r = run("classifier --data " + kData + " --epochs 1 --threads 2 --out " + dir.file("clf.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
  r = run("quality" + cond + " --data " + kData + " --classifier " + dir.file("clf.safetensors") + " --n 200 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"conditional_accuracy\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"frechet_distance\""), std::string::npos) << r.out;
  expect_failure(run("quality" + plain + " --data " + kData + " --classifier " + dir.file("plain/model.safetensors")), 1,
                 "not a classifier");

  // --conditional on a data set without labels.
  std::vector<float> images(40 * 8 * 8, 0.5f);
  write_npy(dir.file("images.npy"), images, {40, 8, 8});
  expect_failure(run("train --data " + dir.file("images.npy") + " --epochs 1 --hidden 8 --latent 2 --conditional --out " +
                     dir.file("nolabels")),
                 1, "--conditional needs labels");
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad.png")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("nolabels/model.safetensors")));
}

}  // namespace
}  // namespace vae

#endif  // VAE_CLI_PATH
