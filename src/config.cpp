#include "vae/config.hpp"

#include <omp.h>

#include <cblas.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <thread>

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

template <class Enum, size_t N>
std::string enum_name(Enum v, const std::pair<const char*, Enum> (&table)[N]) {
  for (const auto& [name, value] : table)
    if (value == v) return name;
  return "?";
}

void require(bool ok, const std::string& message) {
  if (!ok) throw Error(message);
}

// Reads key into out when present; rejects values of the wrong JSON type with the key's name.
template <class T>
void read_key(const json& j, const char* key, T& out) {
  if (!j.contains(key)) return;
  try {
    out = j.at(key).get<T>();
  } catch (const json::exception&) {
    throw Error(std::string("config key '") + key + "' has the wrong type: " + j.at(key).dump());
  }
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

void ModelConfig::validate() const {
  require(image_height >= 1 && image_height <= 4096 && image_width >= 1 && image_width <= 4096,
          "image size must be between 1 and 4096 pixels a side, got " + std::to_string(image_height) + "x" +
              std::to_string(image_width));
  require(!hidden.empty() && hidden.size() <= 16, "hidden must list 1 to 16 layer widths");
  for (int h : hidden) require(h >= 1 && h <= 65536, "hidden widths must be in [1, 65536], got " + std::to_string(h));
  require(latent >= 1 && latent <= 4096, "latent must be in [1, 4096], got " + std::to_string(latent));
  require(leaky_slope >= 0.0f && leaky_slope < 1.0f, "leaky_slope must be in [0, 1)");
  require(std::isfinite(gaussian_sigma) && gaussian_sigma >= 1e-3f && gaussian_sigma <= 10.0f,
          "gaussian_sigma must be in [0.001, 10], got " + std::to_string(gaussian_sigma));
}

std::string ModelConfig::to_json() const {
  json j;
  j["image_height"] = image_height;
  j["image_width"] = image_width;
  j["hidden"] = hidden;
  j["latent"] = latent;
  j["activation"] = to_string(activation);
  j["leaky_slope"] = leaky_slope;
  j["likelihood"] = to_string(likelihood);
  j["learned_sigma"] = learned_sigma;
  j["gaussian_sigma"] = gaussian_sigma;
  j["init"] = to_string(init);
  return j.dump();
}

ModelConfig ModelConfig::from_json(const std::string& text) {
  const json j = parse_json(text, "model config");
  reject_unknown_keys(j, {"image_height", "image_width", "hidden", "latent", "activation", "leaky_slope",
                          "likelihood", "learned_sigma", "gaussian_sigma", "init"},
                      "model");
  ModelConfig c;
  read_key(j, "image_height", c.image_height);
  read_key(j, "image_width", c.image_width);
  read_key(j, "hidden", c.hidden);
  read_key(j, "latent", c.latent);
  std::string s;
  if (j.contains("activation")) read_key(j, "activation", s), c.activation = parse_activation(s);
  read_key(j, "leaky_slope", c.leaky_slope);
  if (j.contains("likelihood")) read_key(j, "likelihood", s), c.likelihood = parse_likelihood(s);
  read_key(j, "learned_sigma", c.learned_sigma);
  read_key(j, "gaussian_sigma", c.gaussian_sigma);
  if (j.contains("init")) read_key(j, "init", s), c.init = parse_init(s);
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
}

std::string TrainConfig::to_json() const {
  json j;
  j["data"] = data_dir;
  j["out"] = out_dir;
  j["epochs"] = epochs;
  j["batch"] = batch;
  j["optimizer"] = to_string(optimizer);
  j["lr"] = lr;
  j["min_lr"] = min_lr;
  j["schedule"] = to_string(schedule);
  j["adam_beta1"] = adam_beta1;
  j["adam_beta2"] = adam_beta2;
  j["adam_eps"] = adam_eps;
  j["weight_decay"] = weight_decay;
  j["clip_norm"] = clip_norm;
  j["beta"] = beta;
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
  reject_unknown_keys(j, {"data", "out", "epochs", "batch", "optimizer", "lr", "min_lr", "schedule", "adam_beta1",
                          "adam_beta2", "adam_eps", "weight_decay", "clip_norm", "beta", "warmup_epochs", "seed",
                          "threads", "train_limit", "test_limit", "device", "cuda_graph", "tf32",
                          "fused_epilogues"},
                      "train");
  read_key(j, "data", c.data_dir);
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
