// The generation-quality classifier (vae/generate.hpp): an MLP trunk of Linear + ReLU layers (the
// engine's own, fused on CUDA as the VAE's are) whose last width is the feature layer, and a
// Linear head to the class logits, trained with softmax cross-entropy (kernels/softmax_xent.cuh)
// and Adam, on either backend.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <set>

#include "backend/backend.hpp"
#include "backend/cpu/flush_denormals.hpp"
#include "backend/device_array.hpp"
#include "backend/step_record.hpp"
#include "condition.cuh"
#include "gather_pixels.cuh"
#include "graph/layers.hpp"
#include "philox.cuh"
#include "softmax_xent.cuh"
#include "train/schedule.hpp"
#include "vae/error.hpp"
#include "vae/generate.hpp"
#include "vae/safetensors.hpp"

namespace vae {

using json = nlohmann::json;

std::string ClassifierConfig::to_json() const {
  return json{{"channels", channels}, {"height", height}, {"width", width}, {"classes", classes}, {"hidden", hidden}}.dump();
}

ClassifierConfig ClassifierConfig::from_json(const std::string& text) {
  ClassifierConfig c;
  try {
    const json j = json::parse(text);
    c.channels = j.at("channels").get<int>();
    c.height = j.at("height").get<int>();
    c.width = j.at("width").get<int>();
    c.classes = j.at("classes").get<int>();
    c.hidden = j.at("hidden").get<std::vector<int>>();
  } catch (const json::exception& e) {
    throw Error(std::string("malformed classifier configuration: ") + e.what());
  }
  if (c.channels < 1 || c.channels > 4 || c.height < 1 || c.height > 4096 || c.width < 1 || c.width > 4096 ||
      c.classes < 2 || c.classes > 4096 || c.hidden.empty() || c.hidden.size() > 8)
    throw Error("classifier configuration out of range (1-4 channels, sides of 1-4096, 2-4096 classes, 1-8 layers)");
  for (int h : c.hidden)
    if (h < 1 || h > 65536) throw Error("classifier hidden widths must be in [1, 65536]");
  return c;
}

struct Classifier::Impl {
  Impl(const ClassifierConfig& c, Device d) : config(c), device(d), backend(make_backend(d)) {
    int64_t width = int64_t(c.channels) * c.height * c.width;
    for (int h : c.hidden) {
      trunk.add(std::make_unique<Linear>(static_cast<int>(width), h));
      trunk.add(std::make_unique<ActivationLayer>(Activation::ReLU, 0.0f, Shape{h}));
      width = h;
    }
    head.add(std::make_unique<Linear>(static_cast<int>(width), c.classes));
    const int64_t end = head.layout(trunk.layout(0));
    trunk.param_slices("trunk.", slices);
    head.param_slices("head.", slices);
    params = Tensor::zeros({align_params(end)}, device);
    grads = Tensor::zeros({align_params(end)}, device);
    trunk.bind(params.data(), grads.data());
    head.bind(params.data(), grads.data());
  }
  // PyTorch's defaults for Linear (Philox under seed, as the VAE's networks).
  void initialize(uint64_t seed) {
    std::vector<float> host(static_cast<size_t>(params.numel()), 0.0f);
    uint32_t index = 0;
    trunk.initialize(host, InitScheme::Torch, seed, index);
    head.initialize(host, InitScheme::Torch, seed, index);
    params.copy_from_host(host.data(), params.numel());
  }
  int input_dim() const { return config.channels * config.height * config.width; }
  int features() const { return config.hidden.back(); }
  // Logits of x [rows, input_dim] (device memory); the features are trunk's output.
  const float* forward(const float* x, int rows) {
    trunk.prepare(rows, *backend);
    head.prepare(rows, *backend);
    return head.forward(*backend, trunk.forward(*backend, x, rows), rows);
  }

  ClassifierConfig config;
  Device device;
  std::unique_ptr<Backend> backend;
  Sequential trunk{"classifier.trunk"}, head{"classifier.head"};
  std::vector<ParamSlice> slices;
  Tensor params, grads;
};

Classifier::Classifier(const ClassifierConfig& c, Device d) : impl_(std::make_unique<Impl>(c, d)) { impl_->initialize(0); }
Classifier::~Classifier() = default;
Classifier::Classifier(Classifier&&) noexcept = default;
Classifier& Classifier::operator=(Classifier&&) noexcept = default;
const ClassifierConfig& Classifier::config() const { return impl_->config; }

namespace {
void check_set(const ClassifierConfig& c, const ImageSet& s, const char* which) {
  if (s.channels != c.channels || s.height != c.height || s.width != c.width)
    throw Error(std::string(which) + " images are " + std::to_string(s.channels) + "x" + std::to_string(s.height) + "x" +
                std::to_string(s.width) + " but the classifier takes " + std::to_string(c.channels) + "x" +
                std::to_string(c.height) + "x" + std::to_string(c.width));
  if (static_cast<int64_t>(s.labels.size()) != s.count)
    throw Error(std::string(which) + " set has no labels; the classifier needs one per image");
  for (int32_t y : s.labels)
    if (y < 0 || y >= c.classes)
      throw Error(std::string(which) + " set has label " + std::to_string(y) + " outside the classifier's 0.." +
                  std::to_string(c.classes - 1));
}
}  // namespace

std::vector<double> Classifier::train(const Dataset& data, int epochs, float lr, uint64_t seed) {
  Impl& m = *impl_;
  check_set(m.config, data.train, "training");
  check_set(m.config, data.test, "test");
  if (epochs < 1 || epochs > 1000) throw Error("classifier epochs must be in [1, 1000]");
  const FlushDenormalsScope flush_denormals;
  m.initialize(seed);
  Backend& be = *m.backend;
  const int d = m.input_dim(), C = m.config.classes, batch = 128;
  const int64_t n = data.train.count;
  const DeviceArray<uint8_t> pixels = DeviceArray<uint8_t>::mirror(data.train.pixels, m.device);
  const DeviceArray<int32_t> labels = DeviceArray<int32_t>::mirror(data.train.labels, m.device);
  DeviceArray<int32_t> perm = DeviceArray<int32_t>::allocate(static_cast<size_t>(n), m.device);
  Tensor x({batch, d}, m.device), y({batch}, m.device), loss({batch}, m.device), dlogits({batch, C}, m.device),
      dfeat({batch, m.features()}, m.device), adam_m = Tensor::zeros({m.params.numel()}, m.device),
      adam_v = Tensor::zeros({m.params.numel()}, m.device), norm({1}, m.device);
  std::vector<double> accuracy;
  int64_t step = 0;
  StepRecord record(m.device);
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    const std::vector<int32_t> host_perm = epoch_permutation(n, seed ^ 0xc1a55ULL, epoch);
    perm.upload(host_perm.data(), host_perm.size());
    for (int64_t first = 0; first < n; first += batch) {
      const int rows = static_cast<int>(std::min<int64_t>(batch, n - first));
      const int32_t* idx = perm.data() + first;
      ops::gather_pixels(be, pixels.data(), idx, rows, d, false, 0, kStreamBinarize, 0, nullptr, x.data());
      ops::gather_labels(be, labels.data(), idx, rows, nullptr, y.data());
      const float* logits = m.forward(x.data(), rows);
      ops::softmax_xent(be, logits, static_cast<const float*>(y.data()), rows, C, loss.data(), static_cast<float*>(nullptr),
                        dlogits.data(), 1.0f / rows);
      m.head.backward(be, m.trunk.output_view(rows).data(), dlogits.data(), dfeat.data(), rows);
      m.trunk.backward(be, x.data(), dfeat.data(), nullptr, rows);
      AdamArgs a;
      a.lr = lr;
      a.step = ++step;
      StepScalars s;
      s.adam = adam_coefficients(a);
      be.adam_step(m.params.data(), m.grads.data(), adam_m.data(), adam_v.data(), m.params.numel(), a.clip_norm,
                   record.write(s), norm.data(), {});
    }
    accuracy.push_back(this->accuracy(data.test));
  }
  return accuracy;
}

std::vector<int32_t> Classifier::predict(const std::vector<float>& x, int64_t n, std::vector<float>* features) {
  Impl& m = *impl_;
  const int d = m.input_dim(), C = m.config.classes, F = m.features();
  if (n < 1 || static_cast<int64_t>(x.size()) != n * d)
    throw Error("classifier: expected images [n, " + std::to_string(d) + "], got " + std::to_string(x.size()) + " values");
  const FlushDenormalsScope flush_denormals;
  constexpr int kBatch = 1000;
  std::vector<int32_t> out(static_cast<size_t>(n));
  if (features) features->resize(static_cast<size_t>(n) * F);
  Tensor xb({kBatch, d}, m.device);
  for (int64_t first = 0; first < n; first += kBatch) {
    const int rows = static_cast<int>(std::min<int64_t>(kBatch, n - first));
    Tensor rows_view = xb.view(0, {rows, d});
    rows_view.copy_from_host(x.data() + first * d, int64_t(rows) * d);
    m.forward(xb.data(), rows);
    const std::vector<float> logits = m.head.output_view(rows).to_host();
    for (int r = 0; r < rows; ++r) {
      const float* l = logits.data() + static_cast<size_t>(r) * C;
      out[static_cast<size_t>(first + r)] = static_cast<int32_t>(std::max_element(l, l + C) - l);  // first maximum
    }
    if (features) {
      const std::vector<float> f = m.trunk.output_view(rows).to_host();
      std::copy(f.begin(), f.end(), features->begin() + first * F);
    }
  }
  return out;
}

double Classifier::accuracy(const ImageSet& set) {
  check_set(impl_->config, set, "evaluation");
  std::vector<float> x(set.pixels.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = set.pixels[i] / 255.0f;
  const std::vector<int32_t> p = predict(x, set.count);
  int64_t right = 0;
  for (int64_t i = 0; i < set.count; ++i) right += p[static_cast<size_t>(i)] == set.labels[static_cast<size_t>(i)];
  return double(right) / double(set.count);
}

void Classifier::save(const std::string& path) const {
  SafeTensorsFile file;
  file.metadata["format"] = "pt";
  file.metadata["vae_classifier"] = impl_->config.to_json();
  for (const ParamSlice& s : impl_->slices)
    file.tensors.push_back({s.name, s.shape, impl_->params.view(s.offset, s.shape).to_host()});
  write_safetensors(path, file);
}

Classifier Classifier::load(const std::string& path, Device device) {
  const SafeTensorsFile file = read_safetensors(path);
  const auto it = file.metadata.find("vae_classifier");
  if (it == file.metadata.end())
    throw Error("'" + path + "' is not a classifier from vae classifier (no vae_classifier in its metadata)");
  Classifier c(ClassifierConfig::from_json(it->second), device);
  std::vector<float> host(static_cast<size_t>(c.impl_->params.numel()), 0.0f);
  if (file.tensors.size() != c.impl_->slices.size())
    throw Error("classifier '" + path + "' has " + std::to_string(file.tensors.size()) + " tensors but its configuration implies " +
                std::to_string(c.impl_->slices.size()));
  for (const ParamSlice& s : c.impl_->slices) {
    const SafeTensor* t = file.find(s.name);
    if (!t || t->shape != s.shape)
      throw Error("classifier '" + path + "' lacks tensor '" + s.name + "' of shape " + to_string(s.shape));
    for (float v : t->values)
      if (!std::isfinite(v)) throw Error("classifier '" + path + "': tensor '" + s.name + "' is not finite");
    std::copy(t->values.begin(), t->values.end(), host.begin() + s.offset);
  }
  c.impl_->params.copy_from_host(host.data(), static_cast<int64_t>(host.size()));
  return c;
}

}  // namespace vae
