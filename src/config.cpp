#include "vae/config.hpp"

#include <omp.h>

#include <cblas.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>
#include <limits>
#include <thread>
#include <type_traits>

#include "model/networks.hpp"
#include "vae/error.hpp"

namespace vae {
namespace {

using json = nlohmann::json;

template <class Enum, size_t N>
Enum parse_enum(const std::string& s, const char* what, const std::pair<const char*, Enum> (&table)[N]) {
  std::string choices;
  for (const auto& [name, value] : table) {
    if (s == name) return value;
    choices += (choices.empty() ? "" : "|") + std::string(name);
  }
  throw Error("unknown " + std::string(what) + " '" + s + "': expected " + choices);
}

const std::pair<const char*, Activation> kActivations[] = {
    {"relu", Activation::ReLU}, {"leaky_relu", Activation::LeakyReLU}, {"tanh", Activation::Tanh}, {"silu", Activation::SiLU}};
const std::pair<const char*, Likelihood> kLikelihoods[] = {{"bernoulli", Likelihood::Bernoulli},
                                                           {"gaussian", Likelihood::Gaussian}};
const std::pair<const char*, InitScheme> kInits[] = {
    {"torch", InitScheme::Torch}, {"kaiming", InitScheme::Kaiming}, {"xavier", InitScheme::Xavier}};
const std::pair<const char*, OptimizerKind> kOptimizers[] = {{"adam", OptimizerKind::Adam}, {"adamw", OptimizerKind::AdamW}};
const std::pair<const char*, LrSchedule> kSchedules[] = {{"constant", LrSchedule::Constant}, {"cosine", LrSchedule::Cosine}};
const std::pair<const char*, NetworkType> kNetworks[] = {{"mlp", NetworkType::MLP}, {"conv", NetworkType::Conv}};
const std::pair<const char*, PriorType> kPriors[] = {{"standard_normal", PriorType::StandardNormal},
                                                     {"mog", PriorType::MixtureOfGaussians}};

template <class Enum, size_t N>
std::string enum_name(Enum v, const std::pair<const char*, Enum> (&table)[N]) {
  for (const auto& [name, value] : table)
    if (value == v) return name;
  return "?";
}

void require(bool ok, const std::string& message) {
  if (!ok) throw Error(message);
}

// An integer of type T from a JSON number, or an error naming the key: a fraction, an exponent form
// (1e30) or a value outside T's range is never converted silently (4294967298 is not 2).
template <class T>
T checked_integer(const json& v, const std::string& key) {
  if (!v.is_number_integer())
    throw Error("config key '" + key + "' must be an integer, got " + v.dump());
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
      throw Error("config key '" + key + "' = " + v.dump() + " is out of range (at most " +
                  std::to_string(std::numeric_limits<T>::max()) + ")");
    return static_cast<T>(u);
  }
  const auto i = v.get<int64_t>();
  if constexpr (std::is_unsigned_v<T>) {
    if (i < 0) throw Error("config key '" + key + "' = " + v.dump() + " must not be negative");
  } else if (i < static_cast<int64_t>(std::numeric_limits<T>::min()) || i > static_cast<int64_t>(std::numeric_limits<T>::max())) {
    throw Error("config key '" + key + "' = " + v.dump() + " is out of range (" +
                std::to_string(std::numeric_limits<T>::min()) + " to " + std::to_string(std::numeric_limits<T>::max()) + ")");
  }
  return static_cast<T>(i);
}

// Reads key into out when present; rejects values of the wrong JSON type, and numbers that do not
// fit out's type, with the key's name.
template <class T>
void read_key(const json& j, const char* key, T& out) {
  if (!j.contains(key)) return;
  const json& v = j.at(key);
  const auto wrong_type = [&](const char* expected) {
    return Error(std::string("config key '") + key + "' must be " + expected + ", got " + v.dump());
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) throw wrong_type("true or false");
    out = v.get<bool>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) throw wrong_type("a string");
    out = v.get<std::string>();
  } else if constexpr (std::is_integral_v<T>) {
    out = checked_integer<T>(v, key);
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) throw wrong_type("a number");
    const double d = v.get<double>();
    if (!std::isfinite(d) || std::fabs(d) > static_cast<double>(std::numeric_limits<T>::max()))
      throw Error(std::string("config key '") + key + "' = " + v.dump() + " is out of range for a " +
                  (sizeof(T) == 4 ? "32-bit" : "64-bit") + " float");
    out = static_cast<T>(d);
  } else {  // std::vector<int>
    if (!v.is_array() || v.size() > 1024) throw wrong_type("a list of integers");
    T values;
    for (size_t i = 0; i < v.size(); ++i)
      values.push_back(checked_integer<typename T::value_type>(v[i], std::string(key) + "[" + std::to_string(i) + "]"));
    out = std::move(values);
  }
}

// A float as the JSON number with the fewest digits that reads back as the same float: 0.001, not
// 0.0010000000474974513 (what widening the float to double and printing that would give).
double typed_float(float f) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, f);
  return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}

void reject_unknown_keys(const json& j, std::initializer_list<const char*> known, const char* section) {
  if (!j.is_object()) throw Error(std::string("config section '") + section + "' must be a JSON object");
  for (const auto& [key, value] : j.items()) {
    bool ok = false;
    for (const char* k : known) ok = ok || key == k;
    if (!ok) throw Error("unknown key '" + key + "' in config section '" + section + "'");
  }
}

json parse_json(const std::string& text, const char* what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(std::string(what) + " is not valid JSON: " + e.what());
  }
}

}  // namespace

std::string to_string(Activation a) { return enum_name(a, kActivations); }
std::string to_string(Likelihood l) { return enum_name(l, kLikelihoods); }
std::string to_string(InitScheme s) { return enum_name(s, kInits); }
std::string to_string(OptimizerKind o) { return enum_name(o, kOptimizers); }
std::string to_string(LrSchedule s) { return enum_name(s, kSchedules); }
Activation parse_activation(const std::string& s) { return parse_enum(s, "activation", kActivations); }
Likelihood parse_likelihood(const std::string& s) { return parse_enum(s, "likelihood", kLikelihoods); }
InitScheme parse_init(const std::string& s) { return parse_enum(s, "init scheme", kInits); }
OptimizerKind parse_optimizer(const std::string& s) { return parse_enum(s, "optimizer", kOptimizers); }
LrSchedule parse_schedule(const std::string& s) { return parse_enum(s, "lr schedule", kSchedules); }
std::string to_string(NetworkType t) { return enum_name(t, kNetworks); }
NetworkType parse_network(const std::string& s) { return parse_enum(s, "encoder type", kNetworks); }
std::string to_string(PriorType t) { return enum_name(t, kPriors); }
PriorType parse_prior(const std::string& s) {
  return s == "standard" ? PriorType::StandardNormal : parse_enum(s, "prior type", kPriors);
}

int64_t PriorConfig::parameter_count(int latent) const {
  if (type == PriorType::StandardNormal) return 0;
  return components + 2 * int64_t(components) * latent;  // logits, means, log-variances
}

int64_t ModelConfig::parameter_count() const {
  // Counted from the networks themselves, so every encoder type is counted the way it is built.
  // Building them allocates nothing; widths are validated small enough that int64 cannot overflow.
  Sequential encoder("encoder"), decoder("decoder");
  build_networks(*this, encoder, decoder);
  std::vector<ParamSlice> slices;
  encoder.param_slices("", slices);
  decoder.param_slices("", slices);
  int64_t total = 0;
  for (const auto& slice : slices) total += shape_numel(slice.shape);
  total += prior.parameter_count(latent);
  if (likelihood == Likelihood::Gaussian && learned_sigma) total += input_dim();
  return total;
}

void ModelConfig::validate() const {
  require(image_channels >= 1 && image_channels <= 4,
          "image_channels must be 1 to 4, got " + std::to_string(image_channels));
  require(image_height >= 1 && image_height <= 4096 && image_width >= 1 && image_width <= 4096,
          "image size must be between 1 and 4096 pixels a side, got " + std::to_string(image_height) + "x" +
              std::to_string(image_width));
  const EncoderConfig& e = encoder;
  require(e.hidden.size() <= 16, "encoder.hidden must list at most 16 layer widths");
  require(e.type == NetworkType::Conv || !e.hidden.empty(), "encoder.hidden must list 1 to 16 layer widths");
  for (int h : e.hidden)
    require(h >= 1 && h <= 65536, "encoder.hidden widths must be in [1, 65536], got " + std::to_string(h));
  if (e.type == NetworkType::Conv) {
    require(!e.channels.empty() && e.channels.size() <= 8, "encoder.channels must list 1 to 8 conv layers");
    for (int c : e.channels)
      require(c >= 1 && c <= 4096, "encoder.channels must be in [1, 4096], got " + std::to_string(c));
    require(e.kernel >= 1 && e.kernel <= 15, "encoder.kernel must be in [1, 15], got " + std::to_string(e.kernel));
    require(e.stride >= 1 && e.stride <= e.kernel,
            "encoder.stride must be in [1, kernel], got " + std::to_string(e.stride));
    require(e.padding >= 0 && e.padding < e.kernel,
            "encoder.padding must be in [0, kernel), got " + std::to_string(e.padding));
  } else {
    require(e.channels.empty(), "encoder.channels is for conv encoders; set encoder.type to conv or remove it");
  }
  require(latent >= 1 && latent <= 4096, "latent must be in [1, 4096], got " + std::to_string(latent));
  if (prior.type == PriorType::MixtureOfGaussians)
    require(prior.components >= 1 && prior.components <= 1024,
            "prior.components (the mixture's Gaussians) must be in [1, 1024], got " + std::to_string(prior.components));
  require(e.leaky_slope >= 0.0f && e.leaky_slope < 1.0f, "leaky_slope must be in [0, 1)");
  require(std::isfinite(gaussian_sigma) && gaussian_sigma >= 1e-3f && gaussian_sigma <= 10.0f,
          "gaussian_sigma must be in [0.001, 10], got " + std::to_string(gaussian_sigma));
  if (e.type == NetworkType::Conv) {
    // Conv activations are n x channels x positions floats; keep one image's below 2^31.
    int64_t values = 0;
    int h = image_height, w = image_width;
    for (int c : e.channels) {
      h = (h + 2 * e.padding - e.kernel) / e.stride + 1;
      w = (w + 2 * e.padding - e.kernel) / e.stride + 1;
      values = std::max(values, static_cast<int64_t>(c) * std::max(h, 1) * std::max(w, 1));
    }
    require(values <= (int64_t{1} << 28), "the conv layers' activations are too large (" + std::to_string(values) +
                                              " values per image); use fewer channels or a larger stride");
  }
  const int64_t n = parameter_count();
  require(n <= kMaxParameters,
          "the model is too large: " + std::to_string(n) + " parameters (" + std::to_string((n * 16) >> 30) +
              " GiB with gradients and Adam moments); the limit is " + std::to_string(kMaxParameters) +
              " parameters. Use narrower hidden layers (--hidden), a smaller latent or smaller images");
}

namespace {

// The component tree's sections, each written and read in one place.
json encoder_to_json(const EncoderConfig& e) {
  json j;
  j["type"] = to_string(e.type);
  if (e.type == NetworkType::Conv) {
    j["channels"] = e.channels;
    j["kernel"] = e.kernel;
    j["stride"] = e.stride;
    j["padding"] = e.padding;
  }
  j["hidden"] = e.hidden;
  j["activation"] = to_string(e.activation);
  j["leaky_slope"] = typed_float(e.leaky_slope);
  return j;
}

void read_encoder(const json& j, EncoderConfig& e) {
  reject_unknown_keys(j, {"type", "channels", "kernel", "stride", "padding", "hidden", "activation", "leaky_slope"},
                      "encoder");
  std::string s;
  if (j.contains("type")) read_key(j, "type", s), e.type = parse_network(s);
  read_key(j, "channels", e.channels);
  read_key(j, "kernel", e.kernel);
  read_key(j, "stride", e.stride);
  read_key(j, "padding", e.padding);
  read_key(j, "hidden", e.hidden);
  if (j.contains("activation")) read_key(j, "activation", s), e.activation = parse_activation(s);
  read_key(j, "leaky_slope", e.leaky_slope);
}

json prior_to_json(const PriorConfig& p) {
  json j;
  j["type"] = to_string(p.type);
  if (p.type == PriorType::MixtureOfGaussians) j["components"] = p.components;
  return j;
}

void read_prior(const json& j, PriorConfig& p) {
  reject_unknown_keys(j, {"type", "components"}, "prior");
  std::string s;
  if (j.contains("type")) read_key(j, "type", s), p.type = parse_prior(s);
  read_key(j, "components", p.components);
  if (j.contains("components") && p.type != PriorType::MixtureOfGaussians)
    throw Error("prior.components is for the mixture prior; set prior.type to mog or remove it");
}

// A section that only names its type, which must be one of `types` (the first is the default).
void read_typed_section(const json& j, const char* section, std::initializer_list<const char*> types) {
  reject_unknown_keys(j, {"type"}, section);
  if (!j.contains("type")) return;
  std::string s;
  read_key(j, "type", s);
  std::string choices;
  for (const char* t : types) {
    if (s == t) return;
    choices += (choices.empty() ? "" : "|") + std::string(t);
  }
  throw Error("unknown " + std::string(section) + " type '" + s + "': expected " + choices);
}

// The form written before the component tree: every field at the top level.
ModelConfig model_from_flat_json(const json& j) {
  reject_unknown_keys(j, {"image_channels", "image_height", "image_width", "hidden", "latent", "activation", "leaky_slope",
                          "likelihood", "learned_sigma", "gaussian_sigma", "init"},
                      "model");
  ModelConfig c;
  read_key(j, "image_channels", c.image_channels);  // absent in checkpoints before channels: 1
  read_key(j, "image_height", c.image_height);
  read_key(j, "image_width", c.image_width);
  read_key(j, "hidden", c.encoder.hidden);
  read_key(j, "latent", c.latent);
  std::string s;
  if (j.contains("activation")) read_key(j, "activation", s), c.encoder.activation = parse_activation(s);
  read_key(j, "leaky_slope", c.encoder.leaky_slope);
  if (j.contains("likelihood")) read_key(j, "likelihood", s), c.likelihood = parse_likelihood(s);
  read_key(j, "learned_sigma", c.learned_sigma);
  read_key(j, "gaussian_sigma", c.gaussian_sigma);
  if (j.contains("init")) read_key(j, "init", s), c.init = parse_init(s);
  return c;
}

}  // namespace

std::string ModelConfig::to_json() const {
  json j;
  j["image"] = {{"channels", image_channels}, {"height", image_height}, {"width", image_width}};
  j["encoder"] = encoder_to_json(encoder);
  j["decoder"] = {{"type", "mirror"}};
  j["posterior"] = {{"type", "gaussian"}, {"latent", latent}};
  j["prior"] = prior_to_json(prior);
  json l;
  l["type"] = to_string(likelihood);
  if (likelihood == Likelihood::Gaussian) {
    l["sigma"] = typed_float(gaussian_sigma);
    l["learned_sigma"] = learned_sigma;
  }
  j["likelihood"] = l;
  j["init"] = to_string(init);
  return j.dump();
}

ModelConfig ModelConfig::from_json(const std::string& text) {
  const json j = parse_json(text, "model config");
  if (!j.is_object()) throw Error("the model config must be a JSON object");
  ModelConfig c;
  // The flat form has keys the tree does not (and "likelihood" as a string, not a section).
  bool flat = j.contains("likelihood") && j.at("likelihood").is_string();
  for (const char* key : {"image_channels", "image_height", "image_width", "hidden", "latent", "activation",
                          "leaky_slope", "learned_sigma", "gaussian_sigma"})
    flat = flat || j.contains(key);
  if (flat) {
    for (const char* key : {"image", "encoder", "decoder", "posterior", "prior"})
      if (j.contains(key))
        throw Error(std::string("the model config mixes the flat form (hidden, latent, ...) with the component tree ('") +
                    key + "'); write it as the tree: {\"image\", \"encoder\", \"decoder\", \"posterior\", \"prior\", "
                    "\"likelihood\", \"init\"} (see configs/mlp.json)");
    c = model_from_flat_json(j);
  } else {
    reject_unknown_keys(j, {"image", "encoder", "decoder", "posterior", "prior", "likelihood", "init"}, "model");
    if (j.contains("image")) {
      const json& im = j.at("image");
      reject_unknown_keys(im, {"channels", "height", "width"}, "image");
      read_key(im, "channels", c.image_channels);
      read_key(im, "height", c.image_height);
      read_key(im, "width", c.image_width);
    }
    if (j.contains("encoder")) read_encoder(j.at("encoder"), c.encoder);
    if (j.contains("decoder")) read_typed_section(j.at("decoder"), "decoder", {"mirror"});
    if (j.contains("posterior")) {
      const json& p = j.at("posterior");
      reject_unknown_keys(p, {"type", "latent"}, "posterior");
      if (p.contains("type")) read_typed_section(json{{"type", p.at("type")}}, "posterior", {"gaussian"});
      read_key(p, "latent", c.latent);
    }
    if (j.contains("prior")) read_prior(j.at("prior"), c.prior);
    if (j.contains("likelihood")) {
      const json& l = j.at("likelihood");
      reject_unknown_keys(l, {"type", "sigma", "learned_sigma"}, "likelihood");
      std::string s;
      if (l.contains("type")) read_key(l, "type", s), c.likelihood = parse_likelihood(s);
      read_key(l, "sigma", c.gaussian_sigma);
      read_key(l, "learned_sigma", c.learned_sigma);
    }
    std::string s;
    if (j.contains("init")) read_key(j, "init", s), c.init = parse_init(s);
  }
  c.validate();
  return c;
}

void TrainConfig::validate() const {
  require(epochs >= 1 && epochs <= 100000, "epochs must be in [1, 100000], got " + std::to_string(epochs));
  require(batch >= 1 && batch <= 1 << 20, "batch must be in [1, 1048576], got " + std::to_string(batch));
  require(std::isfinite(lr) && lr > 0 && lr <= 10, "lr must be in (0, 10], got " + std::to_string(lr));
  require(std::isfinite(min_lr) && min_lr >= 0 && min_lr <= lr, "min_lr must be in [0, lr]");
  require(adam_beta1 >= 0 && adam_beta1 < 1 && adam_beta2 >= 0 && adam_beta2 < 1, "Adam betas must be in [0, 1)");
  require(adam_eps > 0, "adam_eps must be positive");
  require(std::isfinite(weight_decay) && weight_decay >= 0, "weight_decay must be >= 0");
  require(std::isfinite(clip_norm) && clip_norm >= 0, "clip_norm must be >= 0 (0 turns clipping off)");
  require(std::isfinite(beta) && beta >= 0 && beta <= 1000, "beta must be in [0, 1000], got " + std::to_string(beta));
  require(warmup_epochs >= 0 && warmup_epochs <= epochs * 1000, "warmup_epochs must be >= 0");
  require(threads >= 0 && threads <= 1024, "threads must be in [0, 1024] (0 = all cores)");
  require(train_limit >= 0 && test_limit >= 0, "train_limit and test_limit must be >= 0");
  require(!out_dir.empty(), "out must name a folder");
  require(test_fraction > 0 && test_fraction < 1, "test_fraction must be in (0, 1), got " + std::to_string(test_fraction));
}

std::string TrainConfig::to_json() const {
  json j;
  j["data"] = data_dir;
  if (!labels_path.empty()) j["labels"] = labels_path;
  j["test_fraction"] = test_fraction;
  j["out"] = out_dir;
  j["epochs"] = epochs;
  j["batch"] = batch;
  j["optimizer"] = to_string(optimizer);
  j["lr"] = typed_float(lr);
  j["min_lr"] = typed_float(min_lr);
  j["schedule"] = to_string(schedule);
  j["adam_beta1"] = typed_float(adam_beta1);
  j["adam_beta2"] = typed_float(adam_beta2);
  j["adam_eps"] = typed_float(adam_eps);
  j["weight_decay"] = typed_float(weight_decay);
  j["clip_norm"] = typed_float(clip_norm);
  j["beta"] = typed_float(beta);
  j["warmup_epochs"] = warmup_epochs;
  j["seed"] = seed;
  j["threads"] = threads;
  j["train_limit"] = train_limit;
  j["test_limit"] = test_limit;
  j["device"] = to_string(device);
  j["cuda_graph"] = cuda_graph;
  j["tf32"] = tf32;
  j["fused_epilogues"] = fused_epilogues;
  return j.dump();
}

TrainConfig TrainConfig::from_json(const std::string& text, TrainConfig c) {
  const json j = parse_json(text, "train config");
  reject_unknown_keys(j, {"data", "labels", "test_fraction", "out", "epochs", "batch", "optimizer", "lr", "min_lr", "schedule", "adam_beta1",
                          "adam_beta2", "adam_eps", "weight_decay", "clip_norm", "beta", "warmup_epochs", "seed",
                          "threads", "train_limit", "test_limit", "device", "cuda_graph", "tf32",
                          "fused_epilogues"},
                      "train");
  read_key(j, "data", c.data_dir);
  read_key(j, "labels", c.labels_path);
  read_key(j, "test_fraction", c.test_fraction);
  read_key(j, "out", c.out_dir);
  read_key(j, "epochs", c.epochs);
  read_key(j, "batch", c.batch);
  std::string s;
  if (j.contains("optimizer")) read_key(j, "optimizer", s), c.optimizer = parse_optimizer(s);
  read_key(j, "lr", c.lr);
  read_key(j, "min_lr", c.min_lr);
  if (j.contains("schedule")) read_key(j, "schedule", s), c.schedule = parse_schedule(s);
  read_key(j, "adam_beta1", c.adam_beta1);
  read_key(j, "adam_beta2", c.adam_beta2);
  read_key(j, "adam_eps", c.adam_eps);
  read_key(j, "weight_decay", c.weight_decay);
  read_key(j, "clip_norm", c.clip_norm);
  read_key(j, "beta", c.beta);
  read_key(j, "warmup_epochs", c.warmup_epochs);
  read_key(j, "seed", c.seed);
  read_key(j, "threads", c.threads);
  read_key(j, "train_limit", c.train_limit);
  read_key(j, "test_limit", c.test_limit);
  if (j.contains("device")) read_key(j, "device", s), c.device = parse_device(s);
  read_key(j, "cuda_graph", c.cuda_graph);
  read_key(j, "tf32", c.tf32);
  read_key(j, "fused_epilogues", c.fused_epilogues);
  c.validate();
  return c;
}

void set_num_threads(int threads) {
  const int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

}  // namespace vae
