// The conditional VAE and the generation tools: the condition's layout and whole-model gradients
// (mlp and conv, ELBO and IWAE), labels checked and refused where they do not belong, the aggregate
// posterior's EM fit on a known mixture (same bits for any thread count), sampling from it,
// interpolation, principal components, the Fréchet distance against closed forms, .npy round
// trips, and the quality classifier (it learns, and a saved one predicts the same).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>

#include "condition.cuh"
#include "model/model_impl.hpp"
#include "model_gradient_check.hpp"
#include "test_util.hpp"
#include "vae/vae.hpp"
#include "vae_math.cuh"

namespace vae {
namespace {

using test::random_vector;

ModelConfig tiny_conditional(NetworkType type = NetworkType::MLP) {
  ModelConfig cfg;
  cfg.image_height = 4;
  cfg.image_width = 4;
  cfg.encoder.type = type;
  cfg.encoder.hidden = {6};
  if (type == NetworkType::Conv) cfg.encoder.channels = {3};
  cfg.encoder.activation = Activation::Tanh;
  cfg.latent = 3;
  cfg.conditional = true;
  cfg.classes = 3;
  return cfg;
}

std::vector<float> binary_images(int rows, int d, uint64_t seed) {
  auto x = random_vector<float>(static_cast<size_t>(rows) * d, seed, 0, 1);
  for (auto& v : x) v = v < 0.5f ? 0.0f : 1.0f;
  return x;
}

TEST(Condition, AppendsOneHotColumnsOrOnePlanePerClassAndTakesThemBack) {
  const auto backend = make_backend(Device::CPU);
  Backend& be = *backend;
  const std::vector<float> x = {1, 2, 3, 4, 5, 6}, y = {2, 0};
  std::vector<float> out(2 * (3 + 3));
  ops::append_condition(be, x.data(), y.data(), 2, 3, 3, 1, 1, out.data());
  EXPECT_EQ(out, (std::vector<float>{1, 2, 3, 0, 0, 1, 4, 5, 6, 1, 0, 0}));
  // Planes of 2 values (an image of 2 pixels): [x | class-0 plane | class-1 plane].
  std::vector<float> planes(2 * (3 + 2 * 2));
  ops::append_condition(be, x.data(), y.data(), 2, 3, 2, 2, 1, planes.data());
  EXPECT_EQ(planes, (std::vector<float>{1, 2, 3, 0, 0, 0, 0, 4, 5, 6, 1, 1, 0, 0}));
  // Two rows per label (importance samples).
  std::vector<float> rep(4 * 3);
  const std::vector<float> z = {1, 2, 3, 4};
  ops::append_condition(be, z.data(), y.data(), 4, 1, 2, 1, 2, rep.data());
  EXPECT_EQ(rep, (std::vector<float>{1, 0, 0, 2, 0, 0, 3, 1, 0, 4, 1, 0}));
  std::vector<float> back(4);
  ops::take_columns(be, rep.data(), 4, 3, 1, back.data());
  EXPECT_EQ(back, z);
}

TEST(Conditional, WholeModelGradientMatchesDifferencesForMlpConvAndIwae) {
  for (NetworkType type : {NetworkType::MLP, NetworkType::Conv})
    for (bool importance : {false, true}) {
      SCOPED_TRACE(to_string(type) + (importance ? " iwae k=3" : " elbo"));
      Model model(tiny_conditional(type));
      model.initialize(4);
      ModelImpl& m = model.impl();
      if (importance) {
        ObjectiveConfig o;
        o.type = ObjectiveType::Iwae;
        o.k = 3;
        m.set_objective(o);
      }
      const int rows = 5;
      const std::vector<float> labels = {0, 2, 1, 2, 0};
      const auto x = binary_images(rows, m.input_dim(), 9);
      const auto checked = test::expect_model_gradient_matches_differences(m, x, rows, 1.0f, 3, 2, labels);
      EXPECT_GE(checked.size(), 6u);
    }
}

// The label reaches the decoder: the same code decodes differently under two labels, and the
// encoder: the same image encodes differently.
TEST(Conditional, TheLabelChangesTheDecodingAndTheEncoding) {
  Model model(tiny_conditional());
  model.initialize(2);
  const Tensor z = Tensor::from_host(std::vector<float>{0.3f, -0.2f, 0.5f, 0.3f, -0.2f, 0.5f}, {2, 3});
  const std::vector<float> out = model.decode(z, {0, 2}).to_host();
  double diff = 0;
  for (int i = 0; i < 16; ++i) diff += std::abs(out[i] - out[16 + i]);
  EXPECT_GT(diff, 1e-3);
  const std::vector<float> same = model.decode(z, {1, 1}).to_host();
  for (int i = 0; i < 16; ++i) EXPECT_EQ(same[i], same[16 + i]);
  const auto x = binary_images(1, 16, 3);
  std::vector<float> two(x);
  two.insert(two.end(), x.begin(), x.end());
  const std::vector<float> h = model.encode(Tensor::from_host(two, {2, 16}), {0, 1}).to_host();
  diff = 0;
  for (int i = 0; i < 6; ++i) diff += std::abs(h[i] - h[6 + i]);
  EXPECT_GT(diff, 1e-3);
}

TEST(Conditional, LabelsAreRefusedWhereTheyDoNotBelong) {
  Model cond(tiny_conditional());
  cond.initialize(1);
  const Tensor z = Tensor::zeros({2, 3});
  try {
    cond.decode(z);
    FAIL() << "a conditional decode without labels must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs a label"), std::string::npos) << e.what();
  }
  try {
    cond.decode(z, {0, 3});
    FAIL() << "a label past the classes must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside the model's classes 0..2"), std::string::npos) << e.what();
  }
  ModelConfig plain = tiny_conditional();
  plain.conditional = false;
  plain.classes = 0;
  Model unconditional(plain);
  try {
    unconditional.decode(z, {0, 1});
    FAIL() << "labels for an unconditional model must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not conditional"), std::string::npos) << e.what();
  }
  ModelConfig vamp = tiny_conditional();
  vamp.prior.type = PriorType::Vamp;
  EXPECT_THROW(vamp.validate(), Error);
  ModelConfig no_classes = tiny_conditional();
  no_classes.classes = 0;
  EXPECT_THROW(Model{no_classes}, Error);
  // The configuration round-trips the condition.
  const ModelConfig back = ModelConfig::from_json(tiny_conditional().to_json());
  EXPECT_TRUE(back.conditional);
  EXPECT_EQ(back.classes, 3);
  EXPECT_EQ(back.parameter_count(), tiny_conditional().parameter_count());
}

// Two well-separated Gaussians in 2-D, 30% / 70%: EM finds their weights, means and variances.
TEST(AggregatePosterior, EmRecoversAKnownMixtureWithTheSameBitsForAnyThreadCount) {
  const int n = 4000, L = 2;
  std::vector<float> codes;
  std::mt19937_64 rng(5);
  std::normal_distribution<double> normal;
  for (int i = 0; i < n; ++i) {
    const bool first = i < 0.3 * n;
    codes.push_back(static_cast<float>((first ? -4.0 : 3.0) + (first ? 0.5 : 1.0) * normal(rng)));
    codes.push_back(static_cast<float>((first ? 1.0 : -2.0) + (first ? 0.5 : 1.0) * normal(rng)));
  }
  set_num_threads(1);
  const AggregatePosterior one = fit_aggregate_posterior(codes, n, L, 2, 7);
  set_num_threads(2);
  const AggregatePosterior two = fit_aggregate_posterior(codes, n, L, 2, 7);
  set_num_threads(0);
  EXPECT_EQ(one.means, two.means);
  EXPECT_EQ(one.variances, two.variances);
  EXPECT_EQ(one.weights, two.weights);
  const int a = one.means[0] < one.means[2] ? 0 : 1, b = 1 - a;
  EXPECT_NEAR(one.weights[a], 0.3, 0.01);
  EXPECT_NEAR(one.weights[b], 0.7, 0.01);
  EXPECT_NEAR(one.means[a * 2], -4.0, 0.05);
  EXPECT_NEAR(one.means[a * 2 + 1], 1.0, 0.05);
  EXPECT_NEAR(one.means[b * 2], 3.0, 0.05);
  EXPECT_NEAR(one.variances[a * 2], 0.25, 0.03);
  EXPECT_NEAR(one.variances[b * 2 + 1], 1.0, 0.08);
  EXPECT_THROW(fit_aggregate_posterior(codes, n, L, 0, 1), Error);
  EXPECT_THROW(fit_aggregate_posterior(codes, n, 3, 2, 1), Error);

  // Sampling it: the mixture's moments come back, at temperature 0 only the means.
  ModelConfig cfg;
  cfg.image_height = cfg.image_width = 2;
  cfg.encoder.hidden = {4};
  cfg.latent = 2;
  Model model(cfg);
  model.initialize(0);
  SampleOptions o;
  o.n = 20000;
  o.source = SampleSource::Aggregate;
  o.aggregate = &one;
  const std::vector<float> z = sample_latents(model, o).to_host();
  double left = 0, mean_right_x = 0;
  for (int i = 0; i < o.n; ++i) {
    if (z[i * 2] < -0.5) left += 1;
    else mean_right_x += z[i * 2];
  }
  EXPECT_NEAR(left / o.n, 0.3, 0.015);
  EXPECT_NEAR(mean_right_x / (o.n - left), 3.0, 0.05);
  o.temperature = 0;
  o.n = 50;
  for (float v : sample_latents(model, o).to_host())
    EXPECT_TRUE(std::abs(v - one.means[0]) < 1e-5 || std::abs(v - one.means[1]) < 1e-5 || std::abs(v - one.means[2]) < 1e-5 ||
                std::abs(v - one.means[3]) < 1e-5) << v;
  AggregatePosterior wrong = one;
  wrong.latent = 3;
  o.aggregate = &wrong;
  EXPECT_THROW(sample_latents(model, o), Error);
}

TEST(LatentTools, InterpolationEndsAtBothCodesAndSlerpKeepsTheNorm) {
  const std::vector<float> a = {1, 0, 0}, b = {0, 1, 0};
  const std::vector<float> lin = interpolate_latents(a, b, 5, false), sph = interpolate_latents(a, b, 5, true);
  for (int u = 0; u < 3; ++u) {
    EXPECT_FLOAT_EQ(lin[u], a[u]);
    EXPECT_FLOAT_EQ(lin[12 + u], b[u]);
    EXPECT_NEAR(sph[u], a[u], 1e-6);
    EXPECT_NEAR(sph[12 + u], b[u], 1e-6);
  }
  EXPECT_FLOAT_EQ(lin[6], 0.5f);
  for (int s = 0; s < 5; ++s) {
    const double norm = std::hypot(sph[s * 3], sph[s * 3 + 1], sph[s * 3 + 2]);
    EXPECT_NEAR(norm, 1.0, 1e-6) << "step " << s;
  }
  EXPECT_NEAR(sph[6], std::sqrt(0.5), 1e-6);
  EXPECT_THROW(interpolate_latents(a, {1, 2}, 5, false), Error);
  EXPECT_THROW(interpolate_latents(a, b, 1, false), Error);
}

// Points along (3, 4, 0)/5 with small noise across: PC1 explains nearly all of the variance and is
// the position along that line.
TEST(LatentTools, PrincipalComponentsFindTheDirectionOfMostVariance) {
  const int n = 500;
  std::vector<float> codes;
  std::vector<double> t(n);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal;
  for (int i = 0; i < n; ++i) {
    t[i] = 3 * normal(rng);
    const double e = 0.1 * normal(rng), f = 0.05 * normal(rng);
    codes.push_back(static_cast<float>(0.6 * t[i] - 0.8 * e + 1));
    codes.push_back(static_cast<float>(0.8 * t[i] + 0.6 * e - 2));
    codes.push_back(static_cast<float>(f));
  }
  double explained[2];
  const std::vector<float> p = principal_components_2d(codes, n, 3, explained);
  EXPECT_GT(explained[0], 0.99);
  EXPECT_GT(explained[0], explained[1]);
  double tm = 0, pm = 0;
  for (int i = 0; i < n; ++i) tm += t[i], pm += p[i * 2];
  tm /= n, pm /= n;
  double cov = 0, vt = 0, vp = 0;
  for (int i = 0; i < n; ++i) {
    cov += (t[i] - tm) * (p[i * 2] - pm), vt += (t[i] - tm) * (t[i] - tm), vp += (p[i * 2] - pm) * (p[i * 2] - pm);
  }
  EXPECT_GT(std::abs(cov) / std::sqrt(vt * vp), 0.999);
}

// The closed forms: identical sets give 0; for diagonal Gaussians the distance is
// |m1 - m2|^2 + sum_u (s1 + s2 - 2 sqrt(s1 s2)), here with the samples' own moments.
TEST(QualityMeasure, FrechetDistanceMatchesItsClosedForm) {
  const int n = 20000, D = 3;
  std::vector<float> a, b;
  std::mt19937_64 rng(11);
  std::normal_distribution<double> normal;
  const double sa[D] = {1.0, 2.0, 0.5}, sb[D] = {4.0, 0.5, 0.5}, shift[D] = {1.0, -2.0, 0.0};
  for (int i = 0; i < n; ++i)
    for (int u = 0; u < D; ++u) {
      a.push_back(static_cast<float>(std::sqrt(sa[u]) * normal(rng)));
      b.push_back(static_cast<float>(shift[u] + std::sqrt(sb[u]) * normal(rng)));
    }
  EXPECT_NEAR(frechet_distance(a, n, a, n, D), 0.0, 1e-6);
  double expected = 0;
  for (int u = 0; u < D; ++u) expected += shift[u] * shift[u] + sa[u] + sb[u] - 2 * std::sqrt(sa[u] * sb[u]);
  EXPECT_NEAR(frechet_distance(a, n, b, n, D), expected, 0.03 * expected);
  EXPECT_THROW(frechet_distance(a, n, b, n - 1, D), Error);
}

TEST(LatentTools, NpyFilesRoundTripAndTheWrongDtypeIsRefused) {
  test::ScratchDir dir("npy_write");
  const std::vector<float> v = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
  write_npy(dir.file("a.npy"), v, {2, 3});
  std::vector<int64_t> shape;
  EXPECT_EQ(read_npy_floats(dir.file("a.npy"), shape), v);
  EXPECT_EQ(shape, (std::vector<int64_t>{2, 3}));
  const std::vector<int32_t> labels = {3, 0, 9};
  write_npy(dir.file("l.npy"), labels, {3});
  EXPECT_EQ(read_npy_labels(dir.file("l.npy")), labels);
  try {
    read_npy_floats(dir.file("l.npy"), shape);
    FAIL() << "int32 codes must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected float32"), std::string::npos) << e.what();
  }
  EXPECT_THROW(write_npy(dir.file("b.npy"), v, {4, 2}), Error);
  EXPECT_FALSE(std::filesystem::exists(dir.file("b.npy")));
}

// Four classes of 3x3 images, each a bright row or column: the classifier learns them, and a saved
// one predicts what it did.
TEST(QualityMeasure, ClassifierLearnsSeparableClassesAndSurvivesSaveAndLoad) {
  auto make = [](int n, uint64_t seed) {
    ImageSet s;
    s.count = n;
    s.height = s.width = 3;
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int> noise(0, 60);
    for (int i = 0; i < n; ++i) {
      const int y = i % 4;
      s.labels.push_back(y);
      for (int p = 0; p < 9; ++p) {
        const bool lit = y < 2 ? p / 3 == y : p % 3 == y - 2;
        s.pixels.push_back(static_cast<uint8_t>(lit ? 255 - noise(rng) : noise(rng)));
      }
    }
    return s;
  };
  Dataset d;
  d.train = make(800, 1);
  d.test = make(200, 2);
  ClassifierConfig cc;
  cc.height = cc.width = 3;
  cc.classes = 4;
  cc.hidden = {16, 8};
  Classifier clf(cc);
  const std::vector<double> acc = clf.train(d, 15, 1e-2f, 0);
  ASSERT_EQ(acc.size(), 15u);
  EXPECT_GT(acc.back(), 0.95);
  test::ScratchDir dir("classifier");
  clf.save(dir.file("c.safetensors"));
  Classifier back = Classifier::load(dir.file("c.safetensors"));
  std::vector<float> x(d.test.pixels.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = d.test.pixels[i] / 255.0f;
  std::vector<float> fa, fb;
  EXPECT_EQ(clf.predict(x, d.test.count, &fa), back.predict(x, d.test.count, &fb));
  EXPECT_EQ(fa, fb);
  EXPECT_EQ(fa.size(), size_t(200 * 8));
  ImageSet unlabelled = d.test;
  unlabelled.labels.clear();
  EXPECT_THROW(clf.accuracy(unlabelled), Error);
}

}  // namespace
}  // namespace vae

namespace vae {
namespace {

// Training uses each image's own label: after an epoch on 5000 images, the test -ELBO of p(x | y)
// with the true labels is clearly below the one with every label moved to the next class. (If the
// trainer gathered labels out of step with the images, the two would agree.)
TEST(Conditional, TrainingLearnsFromEachImagesOwnLabel) {
  SKIP_WITHOUT_FASHION_MNIST();
  ModelConfig m;
  m.encoder.hidden = {64};
  m.latent = 4;
  m.conditional = true;
  m.classes = 10;
  Model model(m);
  model.initialize(1);
  TrainConfig c;
  c.epochs = 2;
  c.batch = 100;
  c.train_limit = 5000;
  c.test_limit = 500;
  c.threads = 2;
  Trainer(model, c).fit(test::fashion_mnist());
  ImageSet test = test::fashion_mnist().test;
  EvalOptions eo;
  eo.limit = 500;
  eo.mi_samples = 0;
  const double right = evaluate(model, test, eo).neg_elbo;
  for (int32_t& y : test.labels) y = (y + 1) % 10;
  const double wrong = evaluate(model, test, eo).neg_elbo;
  EXPECT_LT(right + 5.0, wrong) << "true labels " << right << " vs shifted " << wrong;
}

}  // namespace
}  // namespace vae

namespace vae {
namespace {

// A 4x4 MLP model with latent 4 and a posterior flow of `flow_steps` steps.
ModelConfig tiny_flow_config(int flow_steps) {
  ModelConfig cfg;
  cfg.image_height = cfg.image_width = 4;
  cfg.encoder.hidden = {8};
  cfg.latent = 4;
  cfg.posterior_flow_steps = flow_steps;
  cfg.posterior_flow_hidden = 5;
  return cfg;
}

// count 4x4 grey images with pixel i = (i * step + offset) mod 256.
ImageSet patterned_images(int count, int step, int offset) {
  ImageSet set;
  set.count = count;
  set.height = set.width = 4;
  for (int i = 0; i < count * 16; ++i) set.pixels.push_back(static_cast<uint8_t>((i * step + offset) % 256));
  return set;
}

// With a posterior flow, an image's code is its base Gaussian's mean pushed through the flow (what
// the decoder saw at zero noise), not the mean itself; without one it is the mean.
TEST(LatentTools, CodesGoThroughThePosteriorFlow) {
  ModelConfig cfg = tiny_flow_config(2);
  Model flowed(cfg);
  flowed.initialize(3);
  // A non-trivial flow: ActNorm's data initialisation, then random coupling weights.
  const ImageSet set = patterned_images(6, 53, 0);
  std::vector<float> x(set.pixels.begin(), set.pixels.end());
  for (float& v : x) v /= 255.0f;
  const Tensor xt = Tensor::from_host(x, {6, 16});
  flowed.impl().initialize_from_data(xt.data(), 6, 1);
  const LatentCodes c = encode_images(flowed, set);
  ASSERT_EQ(c.codes.size(), c.mu.size());
  double moved = 0;
  for (size_t i = 0; i < c.mu.size(); ++i) moved += std::abs(c.codes[i] - c.mu[i]);
  EXPECT_GT(moved, 1e-3);
  // The decoder at zero noise reconstructs from exactly these codes.
  flowed.impl().forward_eval(xt.data(), 6, 0, 0, 0.0f);
  const std::vector<float> z = flowed.impl().z().view(0, {6, 4}).to_host();
  EXPECT_EQ(z, c.codes);
  cfg.posterior_flow_steps = 0;
  Model plain(cfg);
  plain.initialize(3);
  const LatentCodes p = encode_images(plain, set);
  EXPECT_TRUE(p.codes.empty());
  EXPECT_EQ(&p.code(), &p.mu);
}

// The device forms (the Python package's DLPack path) give the host forms' bits, in ragged batches,
// reading a borrowed tensor; logvar is the clamped one; a borrowed tensor keeps its owner alive.
TEST(LatentTools, DeviceFormsGiveTheHostFormsBits) {
  Model model(tiny_flow_config(1));
  model.initialize(5);
  const ImageSet set = patterned_images(7, 71, 9);
  auto grey = std::make_shared<std::vector<float>>(set.pixels.begin(), set.pixels.end());
  for (float& v : *grey) v /= 255.0f;
  const Tensor x = Tensor::borrow(grey->data(), {7, 16}, Device::CPU, grey);
  grey.reset();  // the tensor holds the only reference now
  const LatentCodes host = encode_images(model, set, 0, 3);
  const LatentTensors dev = encode_tensor(model, x, {}, 3);
  EXPECT_EQ(dev.mu.to_host(), host.mu);
  EXPECT_EQ(dev.logvar.to_host(), host.logvar);
  ASSERT_TRUE(dev.codes.defined());
  EXPECT_EQ(dev.codes.to_host(), host.codes);
  // logvar is the encoder's raw output through the soft clamp (Model::encode gives the raw head).
  const std::vector<float> head = model.encode(x).to_host();
  for (int r = 0; r < 7; ++r)
    for (int u = 0; u < 4; ++u)
      EXPECT_EQ(host.logvar[r * 4 + u], math::soft_clamp(head[r * 8 + 4 + u], math::kLogvarMin, math::kLogvarMax));
  const Tensor z = dev.code();
  EXPECT_EQ(decode_tensor(model, z, {}, 3).to_host(), decode_latents(model, host.codes, 7, {}, 3));
  SampleOptions o;
  o.n = 5;
  o.seed = 8;
  o.batch = 2;
  EXPECT_EQ(sample_tensor(model, o).to_host(), sample_images(model, o));
  EXPECT_THROW(encode_tensor(model, x.reshape({1, 112})), Error);
  EXPECT_THROW(decode_tensor(model, x), Error);
}

}  // namespace
}  // namespace vae
