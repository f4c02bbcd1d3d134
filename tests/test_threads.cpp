// One model called from several threads (model/model_use.hpp): every call gives the bits it gives
// alone, and a call from another thread while the model trains is refused at once with a message
// that says when it may be made, while the training's own callbacks may use the model.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"
#include "vae/vae.hpp"

namespace vae {
namespace {

using test::random_vector;

ModelConfig small_config() {
  ModelConfig c;
  c.image_height = 12;
  c.image_width = 12;
  c.encoder.hidden = {48, 32};
  c.latent = 5;
  return c;
}

// What one thread computes, as host values: the posterior of its images, the decoding of its
// codes, samples and reconstructions of its seed.
std::vector<float> calls_of(Model& model, int who) {
  const int d = model.config().input_dim(), L = model.config().latent, n = 37 + who;
  const Tensor x = Tensor::from_host(random_vector<float>(static_cast<size_t>(n) * d, 100 + who, 0, 1), {n, d});
  const Tensor z = Tensor::from_host(random_vector<float>(static_cast<size_t>(n) * L, 200 + who, -2, 2), {n, L});
  std::vector<float> out = model.encode(x).to_host();
  const LatentTensors posterior = encode_tensor(model, x, {}, 16);
  for (const Tensor* t : {&posterior.mu, &posterior.logvar}) {
    const std::vector<float> h = t->to_host();
    out.insert(out.end(), h.begin(), h.end());
  }
  const std::vector<float> images = decode_tensor(model, z, {}, 16).to_host();
  out.insert(out.end(), images.begin(), images.end());
  SampleOptions o;
  o.n = 19;
  o.seed = 300 + static_cast<uint64_t>(who);
  o.batch = 8;
  const std::vector<float> samples = sample_images(model, o);
  out.insert(out.end(), samples.begin(), samples.end());
  return out;
}

TEST(Threads, CallsOnOneModelFromSeveralThreadsGiveTheirSequentialBits) {
  set_num_threads(2);
  Model model(small_config());
  model.initialize(7);
  constexpr int kThreads = 6, kRounds = 8;
  std::vector<std::vector<float>> alone(kThreads);
  for (int who = 0; who < kThreads; ++who) alone[who] = calls_of(model, who);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0}, done{0};
  for (int who = 0; who < kThreads; ++who)
    threads.emplace_back([&, who] {
      for (int round = 0; round < kRounds; ++round) {
        if (calls_of(model, who) != alone[who]) ++wrong;
        ++done;
      }
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(done.load(), kThreads * kRounds);
  EXPECT_EQ(wrong.load(), 0) << "calls from several threads gave other bits than alone";
}

TEST(Threads, ACallFromAnotherThreadWhileTrainingIsRefusedAndTheCallbacksMayUseTheModel) {
  Model model(small_config());
  model.initialize(3);
  Dataset data;
  for (ImageSet* set : {&data.train, &data.test}) {
    set->count = 128, set->height = 12, set->width = 12;
    for (float v : random_vector<float>(128 * 144, set == &data.train ? 1 : 2, 0, 255)) set->pixels.push_back(static_cast<uint8_t>(v));
  }
  TrainConfig c;
  c.epochs = 1;
  c.batch = 16;
  c.threads = 1;
  Trainer trainer(model, c);
  const Tensor x = Tensor::from_host(std::vector<float>(3 * 144, 0.5f), {3, 144});
  std::string refused;
  bool callback_encoded = false;
  trainer.fit(data, [&](const StepProgress&) {
    if (!refused.empty()) return;
    // Another thread's call, made while this one trains: refused at once, not left waiting.
    std::async(std::launch::async, [&] {
      try {
        model.encode(x);
        refused = "(accepted)";
      } catch (const Error& e) {
        refused = e.what();
      }
    }).wait();
    callback_encoded = model.encode(x).numel() == 3 * 10;  // this thread's own call, from the callback
  });
  EXPECT_NE(refused.find("encode: the model is being trained in another thread"), std::string::npos) << refused;
  EXPECT_TRUE(callback_encoded);
  // Training over, the other thread's call goes through.
  EXPECT_EQ(std::async(std::launch::async, [&] { return model.encode(x).numel(); }).get(), 3 * 10);
}

}  // namespace
}  // namespace vae
