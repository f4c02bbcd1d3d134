// Data-parallel training (docs/distributed.md). In-process: a group of one runs no collective, and
// the collective path with one rank (MPI-free on the CPU, NCCL with one rank on CUDA, inside the
// recorded step) gives the plain path's bits. Through mpirun, as users launch it: 2 ranks against 1
// after 10 steps, the same bits from two 2-rank runs and from mpirun -np 1, rank 0 alone writing,
// resume with the same ranks, evaluation split over ranks, and a rank that fails stopping the whole
// job with one message instead of a hang. OpenMPI refuses to start as root unless told; the
// switches that allow it (CI runs as root) are here, not in any user's instructions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "io/atomic_file.hpp"
#include "model/model_impl.hpp"
#include "test_util.hpp"
#include "vae/distributed.hpp"
#include "vae/safetensors.hpp"
#include "vae/vae.hpp"

namespace vae {
namespace {

TEST(Distributed, AGroupOfOneRunsNoCollective) {
  const ProcessGroup g;
  EXPECT_EQ(g.rank(), 0);
  EXPECT_EQ(g.size(), 1);
  EXPECT_TRUE(g.is_root());
  EXPECT_FALSE(g.collective());
  EXPECT_TRUE(ProcessGroup::local_collective().collective());
  EXPECT_EQ(ProcessGroup::local_collective().size(), 1);
  double v[2] = {1.5, -2.0};
  g.sum(v, 2);
  EXPECT_EQ(v[0], 1.5);
  EXPECT_EQ(v[1], -2.0);
  EXPECT_TRUE(g.any(true));
  EXPECT_FALSE(g.any(false));
  EXPECT_TRUE(g.all_equal(42));
  EXPECT_EQ(g.share(7), (std::pair<int64_t, int64_t>(0, 7)));  // one rank holds every item
  EXPECT_EQ(g.all_gather({1.0f, 2.0f}), (std::vector<float>{1.0f, 2.0f}));
  EXPECT_FALSE(g.first_failure(std::nullopt).has_value());
  const std::optional<RankFailure> f = g.first_failure(RankFailure{0, 1, 2, "bad flag"});
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->exit_code, 2);
  EXPECT_EQ(f->message, "bad flag");
  try {
    raise_first_failure(g, RankFailure{0, 1, 1, "data missing"});
    FAIL() << "raise_first_failure returned on a failure";
  } catch (const JobFailed& e) {
    EXPECT_TRUE(e.report_here());
    EXPECT_EQ(e.exit_code(), 1);
    EXPECT_STREQ(e.what(), "data missing");  // one process: no rank named
  }
  EXPECT_NO_THROW(raise_first_failure(g, std::nullopt));
}

ModelConfig small_model() {
  ModelConfig m;
  m.latent = 4;
  m.encoder.hidden = {32};
  return m;
}

TrainConfig small_run(Device device) {
  TrainConfig c;
  c.device = device;
  c.epochs = 2;
  c.batch = 64;
  c.train_limit = 600;  // 10 steps an epoch, the last one short (24 rows)
  c.test_limit = 300;
  c.threads = 2;
  c.seed = 11;
  return c;
}

struct Fitted {
  std::vector<float> params;
  std::vector<EpochMetrics> history;
};

Fitted fit_with(const TrainConfig& c, const ProcessGroup& group) {
  Model model(small_model(), c.device);
  model.initialize(c.seed);
  Trainer trainer(model, c, group);
  Fitted f;
  f.history = trainer.fit(test::fashion_mnist());
  f.params = model.impl().params().to_host();
  return f;
}

void expect_same_bits(const Fitted& a, const Fitted& b) {
  ASSERT_EQ(a.params.size(), b.params.size());
  EXPECT_EQ(std::memcmp(a.params.data(), b.params.data(), a.params.size() * sizeof(float)), 0)
      << "the collective path with one rank changed the parameters";
  ASSERT_EQ(a.history.size(), b.history.size());
  for (size_t e = 0; e < a.history.size(); ++e) {
    EXPECT_EQ(a.history[e].train_loss, b.history[e].train_loss);
    EXPECT_EQ(a.history[e].test.neg_elbo, b.history[e].test.neg_elbo);
    EXPECT_EQ(a.history[e].test.mutual_info, b.history[e].test.mutual_info);
  }
}

TEST(Distributed, TheCollectivePathWithOneRankGivesThePlainBitsOnTheCpu) {
  SKIP_WITHOUT_FASHION_MNIST();
  const TrainConfig c = small_run(Device::CPU);
  expect_same_bits(fit_with(c, ProcessGroup{}), fit_with(c, ProcessGroup::local_collective()));
}

// NCCL with world size 1, its all-reduce captured in the recorded step (the CUDA graph), against
// the same run without it.
TEST(Distributed, CudaNcclWithOneRankInTheRecordedStepGivesThePlainBits) {
  SKIP_WITHOUT_GPU();
  SKIP_WITHOUT_FASHION_MNIST();
  if (!built_with_nccl()) {
    if (test::cuda_required()) GTEST_FAIL() << "VAE_REQUIRE_CUDA is set but this CUDA build has no NCCL";
    GTEST_SKIP() << "this CUDA build has no NCCL (nccl.h and libnccl.so beside the toolkit)";
  }
  TrainConfig c = small_run(Device::CUDA);
  c.cuda_graph = true;
  expect_same_bits(fit_with(c, ProcessGroup{}), fit_with(c, ProcessGroup::local_collective()));
}

TEST(Distributed, EvaluationThroughTheCollectivePathGivesThePlainBits) {
  SKIP_WITHOUT_FASHION_MNIST();
  Model model(small_model(), Device::CPU);
  model.initialize(3);
  EvalOptions o;
  o.k = 8;
  o.limit = 700;  // three batches of 250, the last short
  o.mi_samples = 300;
  const EvalResult plain = evaluate(model, test::fashion_mnist().test, o);
  o.group = ProcessGroup::local_collective();
  const EvalResult collective = evaluate(model, test::fashion_mnist().test, o);
  // Every field but the wall time.
  auto fields = [](const EvalResult& r) {
    nlohmann::json j = nlohmann::json::parse(r.to_json());
    j.erase("seconds");
    return j.dump();
  };
  EXPECT_EQ(fields(plain), fields(collective));
}

// ---- through mpirun ---------------------------------------------------------------------------

#if defined(VAE_CLI_PATH) && defined(VAE_MPIEXEC)

using Result = test::CommandResult;
using test::run_command;

const std::string kVae = test::env_or("VAE_CLI_PATH", VAE_CLI_PATH);
// A hung job is a failure, not a stuck CI run: every launch has 180 s.
const std::string kTimeout = "timeout 180 ";
// CI runs as root in a container: OpenMPI needs to be allowed to, and to place more ranks than it
// counts cores; --bind-to none leaves each rank's threads free, and shared memory without the
// cross-process copy (CMA) works where a container forbids ptrace-style access between processes.
const std::string kMpirun = kTimeout + VAE_MPIEXEC +
                            " --allow-run-as-root --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none";
// 10 steps of 64 on 640 images, 1 thread per rank (2 ranks on this 2-core machine).
const std::string kRunBase = " train --data " + test::data_dir() + " --test-limit 256 --hidden 32 --latent 4 --threads 1 --seed 5";
const std::string kRun = kRunBase + " --train-limit 640 --batch 64";

std::string mpirun(int ranks, const std::string& args) {
  return kMpirun + " -np " + std::to_string(ranks) + " " + kVae + args;
}

std::vector<float> parameters(const std::string& checkpoint) {
  std::vector<float> all;
  for (const SafeTensor& t : read_safetensors(checkpoint).tensors) all.insert(all.end(), t.values.begin(), t.values.end());
  return all;
}

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) worst = std::max(worst, std::fabs(double(a[i]) - double(b[i])));
  return worst;
}

// The same parameters bit for bit (the files' metadata differs: each run has its own id).
bool same_bytes(const std::string& a, const std::string& b) {
  return test::safetensors_payload(a) == test::safetensors_payload(b);
}

// Two training states hold the same progress and Adam moments (their configurations name their
// own --out folders).
bool same_state(const std::string& a, const std::string& b) {
  const SafeTensorsFile x = read_safetensors(a), y = read_safetensors(b);
  if (x.metadata.at("vae_train_state") != y.metadata.at("vae_train_state") || x.tensors.size() != y.tensors.size()) return false;
  for (size_t i = 0; i < x.tensors.size(); ++i)
    if (x.tensors[i].name != y.tensors[i].name ||
        std::memcmp(x.tensors[i].values.data(), y.tensors[i].values.data(), x.tensors[i].values.size() * sizeof(float)) != 0 ||
        x.tensors[i].values.size() != y.tensors[i].values.size())
      return false;
  return true;
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class DistributedCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!built_with_mpi()) GTEST_SKIP() << "a build without MPI (apt-get install libopenmpi-dev openmpi-bin)";
    if (!test::have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not found in " << test::data_dir();
  }
};

// The acceptance figure: after 10 steps the 2-rank model is the 1-rank model up to the rounding of
// the gradient's sum in two halves (measured 1.9e-6 at most; Adam steps are 1e-3 each).
TEST_F(DistributedCli, TwoRanksMatchOneRankAfterTenSteps) {
  test::ScratchDir dir("dist_match");
  const Result one = run_command(kTimeout + kVae + kRun + " --epochs 1 --out " + dir.file("one"));
  ASSERT_EQ(one.code, 0) << one.out;
  const Result two = run_command(mpirun(2, kRun + " --epochs 1 --out " + dir.file("two")));
  ASSERT_EQ(two.code, 0) << two.out;
  EXPECT_NE(two.out.find("2 processes"), std::string::npos) << two.out;
  const double diff = max_abs_difference(parameters(dir.file("one/model.safetensors")), parameters(dir.file("two/model.safetensors")));
  EXPECT_GT(diff, 0.0) << "2 ranks gave the 1-rank bits exactly: was the job really split?";
  EXPECT_LT(diff, 2e-5) << "2 ranks drifted from 1 rank after 10 steps";
  std::printf("2 ranks vs 1 after 10 steps: max |parameter difference| = %.3g\n", diff);
  const auto metrics = [&](const std::string& run) {
    const std::vector<uint8_t> bytes = read_file_bytes(dir.file(run + "/metrics.jsonl"), "metrics");
    return nlohmann::json::parse(std::string(bytes.begin(), bytes.end()));
  };
  const auto m1 = metrics("one"), m2 = metrics("two");
  EXPECT_NEAR(m1["train_loss"].get<double>(), m2["train_loss"].get<double>(), 1e-3);
  EXPECT_NEAR(m1["test_neg_elbo"].get<double>(), m2["test_neg_elbo"].get<double>(), 1e-3);
  EXPECT_EQ(m1["active_units"], m2["active_units"]);

  // Uneven shards: batches of 63 split 31 + 32, and the last batch of one row leaves rank 0 with none.
  const std::string uneven = kRunBase + " --epochs 1 --train-limit 631 --batch 63 --out ";
  const Result one_u = run_command(kTimeout + kVae + uneven + dir.file("one_u"));
  ASSERT_EQ(one_u.code, 0) << one_u.out;
  const Result two_u = run_command(mpirun(2, uneven + dir.file("two_u")));
  ASSERT_EQ(two_u.code, 0) << two_u.out;
  const double diff_u = max_abs_difference(parameters(dir.file("one_u/model.safetensors")), parameters(dir.file("two_u/model.safetensors")));
  EXPECT_LT(diff_u, 2e-5) << "2 ranks drifted from 1 rank with uneven shards";
  std::printf("2 ranks vs 1, uneven shards and a rank with no rows: max |parameter difference| = %.3g\n", diff_u);
  EXPECT_NEAR(metrics("one_u")["train_loss"].get<double>(), metrics("two_u")["train_loss"].get<double>(), 1e-3);

  // mpirun -np 1: the MPI path with one rank is the plain path, bit for bit.
  const Result np1 = run_command(mpirun(1, kRun + " --epochs 1 --out " + dir.file("np1")));
  ASSERT_EQ(np1.code, 0) << np1.out;
  EXPECT_TRUE(same_bytes(dir.file("one/model.safetensors"), dir.file("np1/model.safetensors")));
}

TEST_F(DistributedCli, TwoRankRunsGiveTheSameBitsAndResumeContinuesThem) {
  test::ScratchDir dir("dist_bits");
  for (const char* run : {"a", "b"}) {
    const Result r = run_command(mpirun(2, kRun + " --epochs 2 --out " + dir.file(run)));
    ASSERT_EQ(r.code, 0) << r.out;
  }
  EXPECT_TRUE(same_bytes(dir.file("a/model.safetensors"), dir.file("b/model.safetensors")));
  EXPECT_TRUE(same_state(dir.file("a/train_state.safetensors"), dir.file("b/train_state.safetensors")));
  // One epoch, then --resume for the second, with the same 2 ranks: the uninterrupted run's bits.
  const Result first = run_command(mpirun(2, kRun + " --epochs 1 --out " + dir.file("c")));
  ASSERT_EQ(first.code, 0) << first.out;
  const Result resumed = run_command(mpirun(2, " train --resume " + dir.file("c") + " --epochs 2"));
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("resuming"), std::string::npos) << resumed.out;
  EXPECT_TRUE(same_bytes(dir.file("a/model.safetensors"), dir.file("c/model.safetensors")));
  EXPECT_TRUE(same_state(dir.file("a/train_state.safetensors"), dir.file("c/train_state.safetensors")));
}

// mpirun's MPMD form gives rank 1 its own --out: rank 0 writes the whole run, rank 1 nothing.
TEST_F(DistributedCli, RankZeroAloneWrites) {
  test::ScratchDir dir("dist_writes");
  const std::string args = kRun + " --epochs 1 --out ";
  const Result r = run_command(kMpirun + " -np 1 " + kVae + args + dir.file("rank0") + " : -np 1 " + kVae + args + dir.file("rank1"));
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* f : {"model.safetensors", "best.safetensors", "train_state.safetensors", "config.json", "metrics.jsonl", "samples.png"})
    EXPECT_TRUE(std::filesystem::exists(dir.file(std::string("rank0/") + f))) << f;
  EXPECT_FALSE(std::filesystem::exists(dir.file("rank1"))) << "rank 1 wrote into its --out";
  EXPECT_EQ(count_of(r.out, "epoch 1/1"), 1u) << "more than one rank printed:\n" << r.out;
}

// Rank 1 cannot read its data: the job ends at once, rank 0 says which rank failed and why, once,
// and nothing is written.
TEST_F(DistributedCli, AFailingRankStopsTheJobWithOneMessage) {
  test::ScratchDir dir("dist_fail");
  const std::string common = " train --train-limit 640 --test-limit 256 --batch 64 --hidden 32 --latent 4 --threads 1 --epochs 1 --out ";
  const Result r = run_command(kMpirun + " -np 1 " + kVae + common + dir.file("run") + " --data " + test::data_dir() + " : -np 1 " +
                         kVae + common + dir.file("run") + " --data " + dir.file("missing"));
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.code, 124) << "the job hung:\n" << r.out;
  EXPECT_EQ(count_of(r.out, "vae: error"), 1u) << r.out;
  EXPECT_NE(r.out.find("rank 1 of 2 failed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(dir.file("missing")), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir.file("run"))) << "rank 0 wrote although rank 1 failed";
  // A usage error on one rank only (its flag given twice) is agreed on the same way.
  const Result u = run_command(kMpirun + " -np 1 " + kVae + kRun + " --out " + dir.file("u") + " : -np 1 " + kVae + kRun +
                         " --out " + dir.file("u") + " --batch 64 --batch 32");
  EXPECT_EQ(count_of(u.out, "vae: error"), 1u) << u.out;
  EXPECT_NE(u.out.find("rank 1 of 2 failed"), std::string::npos) << u.out;
  EXPECT_NE(u.code, 124) << "the job hung:\n" << u.out;
}

TEST_F(DistributedCli, RefusesWhatCannotBeSplit) {
  test::ScratchDir dir("dist_refuse");
  const Result fb = run_command(mpirun(2, kRun + " --epochs 1 --free-bits 0.5 --out " + dir.file("fb")));
  EXPECT_EQ(fb.code, 1) << fb.out;
  EXPECT_EQ(count_of(fb.out, "vae: error"), 1u) << fb.out;
  EXPECT_NE(fb.out.find("free_bits decides the KL term's weight from the whole batch"), std::string::npos) << fb.out;
  const Result tiny = run_command(mpirun(2, " train --data " + test::data_dir() + " --train-limit 64 --test-limit 64 --batch 1 "
                                      "--hidden 8 --latent 2 --threads 1 --epochs 1 --out " + dir.file("tiny")));
  EXPECT_EQ(tiny.code, 1) << tiny.out;
  EXPECT_NE(tiny.out.find("batch 1 is smaller than the job's 2 processes"), std::string::npos) << tiny.out;
  EXPECT_FALSE(std::filesystem::exists(dir.file("fb")));
}

TEST_F(DistributedCli, EvaluationSplitsOverRanks) {
  test::ScratchDir dir("dist_eval");
  const Result train = run_command(kTimeout + kVae + kRun + " --epochs 1 --out " + dir.file("run"));
  ASSERT_EQ(train.code, 0) << train.out;
  const std::string eval = " eval --checkpoint " + dir.file("run/model.safetensors") + " --data " + test::data_dir() +
                           " --limit 700 --k 10 --json --threads 1";
  const Result one = run_command(kTimeout + kVae + eval);
  const Result two = run_command(mpirun(2, eval));
  ASSERT_EQ(one.code, 0) << one.out;
  ASSERT_EQ(two.code, 0) << two.out;
  EXPECT_EQ(count_of(two.out, "\"count\""), 1u) << "more than one rank printed:\n" << two.out;
  const auto a = nlohmann::json::parse(one.out), b = nlohmann::json::parse(two.out);
  EXPECT_EQ(a["count"], b["count"]);
  EXPECT_EQ(a["active_units"], b["active_units"]);
  for (const char* k : {"neg_elbo", "recon", "kl", "iwae_nll", "mutual_info", "aggregate_kl", "iwae_stderr", "ess_mean", "ess_min"})
    EXPECT_NEAR(a[k].get<double>(), b[k].get<double>(), 1e-9 * std::max(1.0, std::fabs(a[k].get<double>()))) << k;
}

#endif  // VAE_CLI_PATH && VAE_MPIEXEC

}  // namespace
}  // namespace vae
