// The convolution layers against a naive direct convolution written from the definition (no
// im2col, no GEMM), in double: forward, and every gradient against central finite differences of
// that naive forward. Odd sizes, non-square images, padding 0 to 2, strides 1 to 3. Then the CUDA
// backend (cuDNN) against the CPU one for the same layers, and the shape errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "graph/layers.hpp"
#include "model/model_impl.hpp"
#include "test_util.hpp"
#include "vae/error.hpp"
#include "vae/vae.hpp"

namespace vae {
namespace {

using test::expect_close;
using test::random_vector;

struct ConvCase {
  int n, c, h, w, k, kernel, stride, pad, output_padding;  // output_padding: transposed only
};

std::string name_of(const ConvCase& s) {
  return std::to_string(s.n) + "x" + std::to_string(s.c) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w) +
         " -> " + std::to_string(s.k) + " k" + std::to_string(s.kernel) + " s" + std::to_string(s.stride) + " p" +
         std::to_string(s.pad) + " op" + std::to_string(s.output_padding);
}

// y[b,o,oy,ox] = bias[o] + sum_{c,i,j} w[o,c,i,j] x[b,c,oy*s-p+i,ox*s-p+j]
std::vector<double> direct_conv(const ConvCase& s, const std::vector<double>& x, const std::vector<double>& w,
                                const std::vector<double>& bias) {
  const int oh = (s.h + 2 * s.pad - s.kernel) / s.stride + 1, ow = (s.w + 2 * s.pad - s.kernel) / s.stride + 1;
  std::vector<double> y(static_cast<size_t>(s.n) * s.k * oh * ow);
  for (int b = 0; b < s.n; ++b)
    for (int o = 0; o < s.k; ++o)
      for (int oy = 0; oy < oh; ++oy)
        for (int ox = 0; ox < ow; ++ox) {
          double acc = bias[o];
          for (int c = 0; c < s.c; ++c)
            for (int i = 0; i < s.kernel; ++i)
              for (int j = 0; j < s.kernel; ++j) {
                const int iy = oy * s.stride - s.pad + i, ix = ox * s.stride - s.pad + j;
                if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                acc += w[((static_cast<size_t>(o) * s.c + c) * s.kernel + i) * s.kernel + j] *
                       x[((static_cast<size_t>(b) * s.c + c) * s.h + iy) * s.w + ix];
              }
          y[((static_cast<size_t>(b) * s.k + o) * oh + oy) * ow + ox] = acc;
        }
  return y;
}

// The transposed convolution from its definition: every input pixel scatters w[c,o,:,:] into the
// output at (iy*s - p + i, ix*s - p + j). Output size (h-1)s - 2p + kernel + output_padding.
std::vector<double> direct_conv_transpose(const ConvCase& s, const std::vector<double>& x, const std::vector<double>& w,
                                          const std::vector<double>& bias) {
  const int oh = (s.h - 1) * s.stride - 2 * s.pad + s.kernel + s.output_padding;
  const int ow = (s.w - 1) * s.stride - 2 * s.pad + s.kernel + s.output_padding;
  std::vector<double> y(static_cast<size_t>(s.n) * s.k * oh * ow);
  for (int b = 0; b < s.n; ++b)
    for (int o = 0; o < s.k; ++o)
      for (int p = 0; p < oh * ow; ++p) y[(static_cast<size_t>(b) * s.k + o) * oh * ow + p] = bias[o];
  for (int b = 0; b < s.n; ++b)
    for (int c = 0; c < s.c; ++c)
      for (int iy = 0; iy < s.h; ++iy)
        for (int ix = 0; ix < s.w; ++ix)
          for (int o = 0; o < s.k; ++o)
            for (int i = 0; i < s.kernel; ++i)
              for (int j = 0; j < s.kernel; ++j) {
                const int oy = iy * s.stride - s.pad + i, ox = ix * s.stride - s.pad + j;
                if (oy < 0 || oy >= oh || ox < 0 || ox >= ow) continue;
                y[((static_cast<size_t>(b) * s.k + o) * oh + oy) * ow + ox] +=
                    x[((static_cast<size_t>(b) * s.c + c) * s.h + iy) * s.w + ix] *
                    w[((static_cast<size_t>(c) * s.k + o) * s.kernel + i) * s.kernel + j];
              }
  return y;
}

std::unique_ptr<Module> make_layer(const ConvCase& s, bool transposed) {
  if (transposed)
    return std::make_unique<ConvTranspose2d>(Shape{s.c, s.h, s.w}, s.k, s.kernel, s.stride, s.pad, s.output_padding);
  return std::make_unique<Conv2d>(Shape{s.c, s.h, s.w}, s.k, s.kernel, s.stride, s.pad);
}

// One layer with its parameters in a flat buffer on `device`, run forward and backward.
struct LayerRun {
  std::vector<float> y, dx, dw, db;
};
LayerRun run_layer(const ConvCase& s, bool transposed, Device device, const std::vector<float>& x,
                   const std::vector<float>& w, const std::vector<float>& bias, const std::vector<float>& dy,
                   bool tf32 = false) {
  auto be = make_backend(device);
  be->set_options({tf32, true});
  auto layer = make_layer(s, transposed);
  const int64_t end = align_params(layer->layout(0));
  std::vector<ParamSlice> slices;
  layer->param_slices("", slices);
  std::vector<float> host(static_cast<size_t>(end), 0.0f);
  std::copy(w.begin(), w.end(), host.begin() + slices[0].offset);
  std::copy(bias.begin(), bias.end(), host.begin() + slices[1].offset);
  Tensor params = Tensor::from_host(host, {end}, device);
  Tensor grads = Tensor::zeros({end}, device);
  grads.fill(std::numeric_limits<float>::quiet_NaN());  // an unwritten gradient fails
  layer->bind(params.data(), grads.data());
  const int64_t out = layer->out_features() * s.n, in = layer->in_features() * s.n;
  Tensor tx = Tensor::from_host(x, {in}, device), tdy = Tensor::from_host(dy, {out}, device);
  Tensor ty({out}, device), tdx({in}, device);
  ty.fill(std::numeric_limits<float>::quiet_NaN());
  tdx.fill(std::numeric_limits<float>::quiet_NaN());
  const size_t ws_bytes = layer->workspace_bytes(*be, s.n);
  Tensor ws = ws_bytes ? Tensor({static_cast<int64_t>((ws_bytes + 3) / 4)}, device) : Tensor();
  const Workspace workspace{ws.defined() ? ws.data() : nullptr, ws_bytes};
  layer->forward(*be, tx.data(), ty.data(), s.n, workspace);
  layer->backward(*be, tx.data(), tdy.data(), tdx.data(), s.n, workspace);
  be->synchronize();
  const std::vector<float> g = grads.to_host();
  LayerRun r{ty.to_host(), tdx.to_host(), {}, {}};
  r.dw.assign(g.begin() + slices[0].offset, g.begin() + slices[0].offset + shape_numel(slices[0].shape));
  r.db.assign(g.begin() + slices[1].offset, g.begin() + slices[1].offset + shape_numel(slices[1].shape));
  return r;
}

const ConvCase kCases[] = {
    {2, 3, 7, 5, 4, 3, 1, 1, 0},   // odd, non-square, stride 1, "same" padding
    {3, 2, 9, 9, 5, 4, 2, 1, 1},   // the conv VAE's shape, small; output padding 1 when transposed
    {1, 1, 6, 11, 2, 3, 2, 0, 0},  // no padding, n = 1
    {2, 5, 8, 7, 3, 5, 3, 2, 2},   // stride 3, padding 2, output padding 2
    {2, 4, 1, 1, 3, 1, 1, 0, 0},   // 1x1 images and kernel
};

class ConvGrad : public ::testing::TestWithParam<bool> {};

// Forward against the direct definition, every gradient against central differences of it (h = 1e-6
// in double: truncation and rounding both near 1e-9, so the float layer's own rounding dominates).
TEST_P(ConvGrad, LayerMatchesDirectDefinitionAndFiniteDifferences) {
  const bool transposed = GetParam();
  uint64_t seed = transposed ? 900 : 800;
  for (const ConvCase& s : kCases) {
    const auto layer = make_layer(s, transposed);
    const size_t nx = static_cast<size_t>(layer->in_features()) * s.n, ny = static_cast<size_t>(layer->out_features()) * s.n;
    const size_t nw = static_cast<size_t>(s.k) * s.c * s.kernel * s.kernel;
    const auto x = random_vector<double>(nx, ++seed), w = random_vector<double>(nw, ++seed),
               b = random_vector<double>(s.k, ++seed), r = random_vector<double>(ny, ++seed);
    auto forward = [&](const std::vector<double>& xx, const std::vector<double>& ww, const std::vector<double>& bb) {
      return transposed ? direct_conv_transpose(s, xx, ww, bb) : direct_conv(s, xx, ww, bb);
    };
    const auto y_ref = forward(x, w, b);
    ASSERT_EQ(y_ref.size(), ny) << name_of(s);
    // L = sum r * y: its gradient in y is r, the upstream gradient the layer gets.
    auto loss = [&](const std::vector<double>& xx, const std::vector<double>& ww, const std::vector<double>& bb) {
      const auto y = forward(xx, ww, bb);
      double l = 0;
      for (size_t i = 0; i < y.size(); ++i) l += r[i] * y[i];
      return l;
    };
    auto numeric = [&](std::vector<double> v, int which) {
      std::vector<double> g(v.size());
      const double h = 1e-6;
      for (size_t i = 0; i < v.size(); ++i) {
        const double keep = v[i];
        auto at = [&](double value) {
          v[i] = value;
          return which == 0 ? loss(v, w, b) : which == 1 ? loss(x, v, b) : loss(x, w, v);
        };
        g[i] = (at(keep + h) - at(keep - h)) / (2 * h);
        v[i] = keep;
      }
      return g;
    };
    auto to_float = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
    // Round the inputs to float first so the reference sees exactly what the layer sees.
    const auto xf = to_float(x), wf = to_float(w), bf = to_float(b), rf = to_float(r);
    const std::vector<double> xd(xf.begin(), xf.end()), wd(wf.begin(), wf.end()), bd(bf.begin(), bf.end());
    const LayerRun got = run_layer(s, transposed, Device::CPU, xf, wf, bf, rf);
    const std::string what = std::string(transposed ? "ConvTranspose2d " : "Conv2d ") + name_of(s);
    expect_close(got.y, forward(xd, wd, bd), 1e-5, 1e-5, what + " forward");
    expect_close(got.dx, numeric(xd, 0), 1e-5, 1e-5, what + " dx");
    expect_close(got.dw, numeric(wd, 1), 1e-5, 1e-5, what + " dw");
    expect_close(got.db, numeric(bd, 2), 1e-5, 1e-5, what + " db");
  }
}

INSTANTIATE_TEST_SUITE_P(Conv, ConvGrad, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "ConvTranspose2d" : "Conv2d"; });

// The same layers on CUDA (cuDNN) against the CPU, outputs poisoned first; strict FP32 with a
// bound for the different summation order, and TF32 with a bound for its 10-bit mantissa.
TEST(CudaParity, ConvLayersForwardAndBothBackwardPasses) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 1000;
  for (bool transposed : {false, true})
    for (bool tf32 : {false, true})
      for (const ConvCase& s : kCases) {
        const auto layer = make_layer(s, transposed);
        const size_t nx = static_cast<size_t>(layer->in_features()) * s.n;
        const size_t ny = static_cast<size_t>(layer->out_features()) * s.n;
        const auto x = random_vector<float>(nx, ++seed), w = random_vector<float>(size_t(s.k) * s.c * s.kernel * s.kernel, ++seed),
                   b = random_vector<float>(s.k, ++seed), dy = random_vector<float>(ny, ++seed);
        const LayerRun cpu = run_layer(s, transposed, Device::CPU, x, w, b, dy);
        const LayerRun gpu = run_layer(s, transposed, Device::CUDA, x, w, b, dy, tf32);
        const std::string what = std::string(transposed ? "ConvTranspose2d " : "Conv2d ") + name_of(s) +
                                 (tf32 ? " TF32" : " FP32");
        const double atol = tf32 ? 2e-2 : 1e-5, rtol = tf32 ? 1e-2 : 1e-5;
        expect_close(gpu.y, cpu.y, atol, rtol, what + " forward");
        expect_close(gpu.dx, cpu.dx, atol, rtol, what + " dx");
        // dw sums over every image and position: the bound grows with that count.
        const double terms = static_cast<double>(s.n) * layer->out_features();
        expect_close(gpu.dw, cpu.dw, atol * std::sqrt(terms), rtol, what + " dw");
        expect_close(gpu.db, cpu.db, 1e-5 * std::sqrt(terms), 1e-5, what + " db");
      }
}

// Determinism: the same inputs give the same bits, run twice (cuDNN algorithms are chosen deterministic).
TEST(CudaParity, ConvLayersRepeatBitExact) {
  SKIP_WITHOUT_GPU();
  const ConvCase s = kCases[1];
  for (bool transposed : {false, true}) {
    const auto layer = make_layer(s, transposed);
    const auto x = random_vector<float>(size_t(layer->in_features()) * s.n, 1),
               w = random_vector<float>(size_t(s.k) * s.c * s.kernel * s.kernel, 2), b = random_vector<float>(s.k, 3),
               dy = random_vector<float>(size_t(layer->out_features()) * s.n, 4);
    const LayerRun a = run_layer(s, transposed, Device::CUDA, x, w, b, dy, true);
    const LayerRun c = run_layer(s, transposed, Device::CUDA, x, w, b, dy, true);
    EXPECT_EQ(a.y, c.y);
    EXPECT_EQ(a.dx, c.dx);
    EXPECT_EQ(a.dw, c.dw);
    EXPECT_EQ(a.db, c.db);
  }
}

TEST(Shapes, ModulesThatDoNotChainNameTheModuleAndBothShapes) {
  Sequential seq("encoder");
  seq.add(std::make_unique<Conv2d>(Shape{1, 28, 28}, 8, 4, 2, 1));
  try {
    seq.add(std::make_unique<Linear>(1568, 10));
    FAIL() << "a Linear after a Conv2d without Flatten was accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const char* part : {"encoder", "module 1 (Linear)", "[1568]", "module 0 (Conv2d)", "[8, 14, 14]", "Flatten"})
      EXPECT_NE(m.find(part), std::string::npos) << part << " missing from: " << m;
  }
  seq.add(std::make_unique<Flatten>(Shape{8, 14, 14}));
  EXPECT_THROW(seq.add(std::make_unique<Linear>(1567, 10)), Error);
  seq.add(std::make_unique<Linear>(1568, 10));
  EXPECT_EQ(seq.out_shape(), Shape{10});
  EXPECT_THROW(Conv2d(Shape{1, 3, 3}, 4, 5, 1, 0), Error);         // kernel larger than the image
  EXPECT_THROW(Conv2d(Shape{784}, 4, 3, 1, 0), Error);             // not [C, H, W]
  EXPECT_THROW(ConvTranspose2d(Shape{2, 3, 3}, 1, 3, 2, 0, 2), Error);  // output padding >= stride
  EXPECT_THROW(Reshape(Shape{10}, Shape{3, 3}), Error);
}

// A conv config whose decoder cannot mirror the encoder fails at validation with what to change.
TEST(Shapes, ConvConfigThatCannotMirrorSaysWhatToChange) {
  ModelConfig cfg;
  cfg.encoder.type = NetworkType::Conv;
  cfg.encoder.channels = {4, 8};
  cfg.encoder.hidden = {};
  cfg.image_height = 9;
  cfg.image_width = 7;  // 7 -> 4 -> 2 needs output padding 1 on the width but 0 on the height
  cfg.encoder.kernel = 3;
  try {
    cfg.validate();
    FAIL() << "accepted a conv encoder the decoder cannot mirror";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("decoder"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("kernel"), std::string::npos) << e.what();
  }
  cfg.image_width = 9;
  EXPECT_NO_THROW(cfg.validate());
  cfg.encoder.channels = {4, 8, 8, 8, 8};  // 9 -> 5 -> 3 -> 2 -> 1 -> 1: still valid with padding 1
  EXPECT_NO_THROW(cfg.validate());
  cfg.encoder.padding = 0;  // 9 -> 4 -> 1, then the kernel no longer fits
  EXPECT_THROW(cfg.validate(), Error);
}

}  // namespace
}  // namespace vae

namespace vae {
namespace {

ModelConfig small_conv_config() {
  ModelConfig cfg;
  cfg.image_height = 9;
  cfg.image_width = 9;
  cfg.encoder.type = NetworkType::Conv;
  cfg.encoder.channels = {3, 5};
  cfg.encoder.kernel = 3;
  cfg.encoder.hidden = {6};
  cfg.latent = 4;
  return cfg;
}

// A conv model's checkpoint loads back with the same configuration tree, tensor names, shapes
// (PyTorch's layouts: Conv2d [out, in, k, k], ConvTranspose2d [in, out, k, k]) and bits, and the
// loaded model decodes to the same images.
TEST(ConvCheckpoint, RoundTripKeepsTreeNamesShapesAndBits) {
  const ModelConfig cfg = small_conv_config();
  Model model(cfg);
  model.initialize(5);
  test::ScratchDir dir("conv_ckpt");
  const std::string path = dir.file("model.safetensors");
  save_checkpoint(model, path);
  Model loaded = load_checkpoint(path);
  EXPECT_EQ(loaded.config().to_json(), cfg.to_json());
  EXPECT_EQ(loaded.config().encoder.type, NetworkType::Conv);
  const auto a = model.named_parameters(), b = loaded.named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_EQ(a[i].second.shape(), b[i].second.shape()) << a[i].first;
    EXPECT_EQ(a[i].second.to_host(), b[i].second.to_host()) << a[i].first;
  }
  EXPECT_EQ(a[0].first, "encoder.0.weight");
  EXPECT_EQ(a[0].second.shape(), (Shape{3, 1, 3, 3}));  // Conv2d 1 -> 3
  const auto last = a.back();                            // the decoder's last ConvTranspose2d 3 -> 1
  EXPECT_EQ(last.first.substr(0, 8), "decoder.");
  EXPECT_EQ(last.second.shape(), (Shape{1}));
  EXPECT_EQ(a[a.size() - 2].second.shape(), (Shape{3, 1, 3, 3}));
  const Tensor z = Tensor::from_host(random_vector<float>(2 * 4, 9), {2, 4});
  EXPECT_EQ(model.decode(z).to_host(), loaded.decode(z).to_host());
}

// The flat configuration written before the component tree still loads, into the same model.
TEST(ConfigTree, FlatFormStillLoadsAndTreeRoundTrips) {
  const std::string flat = R"({"image_channels": 1, "image_height": 28, "image_width": 28, "hidden": [64, 32],
    "latent": 8, "activation": "tanh", "leaky_slope": 0.01, "likelihood": "gaussian", "learned_sigma": true,
    "gaussian_sigma": 0.2, "init": "xavier"})";
  const ModelConfig c = ModelConfig::from_json(flat);
  EXPECT_EQ(c.encoder.hidden, (std::vector<int>{64, 32}));
  EXPECT_EQ(c.latent, 8);
  EXPECT_EQ(c.encoder.activation, Activation::Tanh);
  EXPECT_EQ(c.likelihood, Likelihood::Gaussian);
  EXPECT_TRUE(c.learned_sigma);
  EXPECT_FLOAT_EQ(c.gaussian_sigma, 0.2f);
  EXPECT_EQ(c.init, InitScheme::Xavier);
  // Written as the tree, read back to the same configuration.
  const std::string tree = c.to_json();
  EXPECT_NE(tree.find("\"encoder\""), std::string::npos);
  EXPECT_EQ(tree.find("\"hidden\":[64,32],\"latent\""), std::string::npos);
  EXPECT_EQ(ModelConfig::from_json(tree).to_json(), tree);
  const ModelConfig conv = small_conv_config();
  EXPECT_EQ(ModelConfig::from_json(conv.to_json()).to_json(), conv.to_json());
  // Mixing the forms, or an unknown component type, says what to write instead.
  for (const char* bad : {R"({"hidden": [8], "encoder": {"type": "mlp"}})", R"({"prior": {"type": "realnvp"}})",
                          R"({"encoder": {"type": "transformer"}})", R"({"decoder": {"type": "mlp"}})",
                          R"({"encoder": {"type": "mlp", "channels": [4]}})", R"({"posterior": {"latnt": 4}})"}) {
    EXPECT_THROW(ModelConfig::from_json(bad), Error) << bad;
  }
}

// A checkpoint written in the flat format (metadata from before the tree) loads, and evaluates as the
// model it was: the tree is only a new way of writing the same configuration.
TEST(ConfigTree, CheckpointWithFlatMetadataLoads) {
  ModelConfig cfg;
  cfg.image_height = 5;
  cfg.image_width = 4;
  cfg.encoder.hidden = {6};
  cfg.latent = 2;
  Model model(cfg);
  model.initialize(3);
  test::ScratchDir dir("flat_ckpt");
  save_checkpoint(model, dir.file("tree.safetensors"));
  SafeTensorsFile f = read_safetensors(dir.file("tree.safetensors"));
  f.metadata["vae_config"] = R"({"image_channels":1,"image_height":5,"image_width":4,"hidden":[6],"latent":2,)"
                             R"("activation":"relu","leaky_slope":0.01,"likelihood":"bernoulli","learned_sigma":false,)"
                             R"("gaussian_sigma":0.1,"init":"torch"})";
  write_safetensors(dir.file("flat.safetensors"), f);
  Model loaded = load_checkpoint(dir.file("flat.safetensors"));
  EXPECT_EQ(loaded.config().to_json(), cfg.to_json());
  const Tensor z = Tensor::from_host(random_vector<float>(3 * 2, 4), {3, 2});
  EXPECT_EQ(model.decode(z).to_host(), loaded.decode(z).to_host());
}

}  // namespace
}  // namespace vae
