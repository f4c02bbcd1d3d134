#include "vae/config.hpp"

#include <omp.h>

#include <atomic>

#include <cblas.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <optional>
#include <cmath>
#include <limits>
#include <thread>
#include <type_traits>

#include "config_fields.hpp"
#include "dmol_nll.cuh"
#include "philox.cuh"
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
    {"relu", Activation::ReLU}, {"leaky_relu", Activation::LeakyReLU}, {"tanh", Activation::Tanh}, {"silu", Activation::SiLU},
    {"gated", Activation::Gated}};
const std::pair<const char*, LogvarClampKind> kLogvarClamps[] = {
    {"none", LogvarClampKind::None}, {"hard", LogvarClampKind::Hard}, {"soft", LogvarClampKind::Soft}};
const std::pair<const char*, Likelihood> kLikelihoods[] = {{"bernoulli", Likelihood::Bernoulli},
                                                           {"gaussian", Likelihood::Gaussian},
                                                           {"dlogistic", Likelihood::DiscretizedLogistic},
                                                           {"dmol", Likelihood::MixtureDiscretizedLogistic}};
const std::pair<const char*, InitScheme> kInits[] = {
    {"torch", InitScheme::Torch}, {"kaiming", InitScheme::Kaiming}, {"xavier", InitScheme::Xavier}};
const std::pair<const char*, OptimizerKind> kOptimizers[] = {{"adam", OptimizerKind::Adam}, {"adamw", OptimizerKind::AdamW}};
const std::pair<const char*, LrSchedule> kSchedules[] = {{"constant", LrSchedule::Constant}, {"cosine", LrSchedule::Cosine}};
const std::pair<const char*, NetworkType> kNetworks[] = {{"mlp", NetworkType::MLP}, {"conv", NetworkType::Conv}};
const std::pair<const char*, ObjectiveType> kObjectives[] = {
    {"elbo", ObjectiveType::Elbo}, {"iwae", ObjectiveType::Iwae}, {"iwae_dreg", ObjectiveType::IwaeDreg}};
const std::pair<const char*, WarmupSchedule> kWarmups[] = {{"linear", WarmupSchedule::Linear},
                                                          {"cyclical", WarmupSchedule::Cyclical},
                                                          {"linear_epochs", WarmupSchedule::LinearEpochs}};
const std::pair<const char*, ValidationSplit> kValidationSplits[] = {{"permuted", ValidationSplit::Permuted},
                                                                     {"tail", ValidationSplit::Tail}};
const std::pair<const char*, PriorType> kPriors[] = {
    {"standard_normal", PriorType::StandardNormal}, {"mog", PriorType::MixtureOfGaussians}, {"vamp", PriorType::Vamp},
    {"flow", PriorType::Flow}, {"label_gaussian", PriorType::LabelGaussian}};


template <class Enum, size_t N>
std::string enum_name(Enum v, const std::pair<const char*, Enum> (&table)[N]) {
  for (const auto& [name, value] : table)
    if (value == v) return name;
  return "?";
}

void require(bool ok, const std::string& message) {
  if (!ok) throw Error(message);
}

// The prior section's keys beyond "type", and which prior types take each: the one declaration of a
// prior's configuration (its math is the class of the same type name in src/latent/prior.cpp). A
// key given for a type that does not take it is refused, naming the types that do.
struct PriorKeys {
  PriorType type;
  int default_components;  // > 0: a mixture of that many components by default ("components")
  bool flow;               // "flow_steps" and "flow_hidden"
};
constexpr PriorKeys kPriorKeys[] = {{PriorType::StandardNormal, 0, false},
                                    {PriorType::MixtureOfGaussians, 10, false},
                                    {PriorType::Vamp, 500, false},
                                    {PriorType::Flow, 0, true},
                                    {PriorType::LabelGaussian, 0, false}};
constexpr int kMaxPriorComponents = 4096;

const PriorKeys& prior_keys(PriorType t) {
  for (const PriorKeys& k : kPriorKeys)
    if (k.type == t) return k;
  throw Error("unknown prior type");
}

// "mog and vamp": the types that take a key.
std::string prior_types_taking(bool (*takes)(const PriorKeys&)) {
  std::vector<std::string> names;
  for (const PriorKeys& k : kPriorKeys)
    if (takes(k)) names.push_back(enum_name(k.type, kPriors));
  std::string s;
  for (size_t i = 0; i < names.size(); ++i) s += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
  return s;
}
bool takes_components(const PriorKeys& k) { return k.default_components > 0; }
bool takes_flow(const PriorKeys& k) { return k.flow; }

// A mixture's components count: in [1, kMaxPriorComponents], or 0 (the type's default) when it was
// not given.
void check_prior_components(const PriorConfig& p, bool given = false) {
  if (!takes_components(prior_keys(p.type))) return;
  require(p.components >= (given ? 1 : 0) && p.components <= kMaxPriorComponents,
          "prior.components (the mixture's Gaussians or pseudo-inputs) must be in [1, " +
              std::to_string(kMaxPriorComponents) + "], got " + std::to_string(p.components));
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

void reject_unknown_keys(const json& j, const std::vector<const char*>& known, const char* section) {
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
std::string to_string(LogvarClampKind k) { return enum_name(k, kLogvarClamps); }
LogvarClampKind parse_logvar_clamp(const std::string& s) { return parse_enum(s, "logvar_clamp", kLogvarClamps); }
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

bool PriorConfig::has_components() const { return prior_keys(type).default_components > 0; }
int PriorConfig::count() const { return components > 0 ? components : prior_keys(type).default_components; }
std::string to_string(ObjectiveType t) { return enum_name(t, kObjectives); }
ObjectiveType parse_objective(const std::string& s) {
  return s == "iwae-dreg" ? ObjectiveType::IwaeDreg : parse_enum(s, "objective type", kObjectives);
}
std::string to_string(WarmupSchedule w) { return enum_name(w, kWarmups); }
WarmupSchedule parse_warmup(const std::string& s) { return parse_enum(s, "warm-up schedule", kWarmups); }
std::string to_string(ValidationSplit v) { return enum_name(v, kValidationSplits); }
ValidationSplit parse_validation_split(const std::string& s) { return parse_enum(s, "validation split", kValidationSplits); }
PriorType parse_prior(const std::string& s) {
  return s == "standard" ? PriorType::StandardNormal : parse_enum(s, "prior type", kPriors);
}

namespace {
// The latent size a hierarchy's levels add up to (capped: validate() bounds each level).
int levels_total(const std::vector<int>& levels) {
  int64_t sum = 0;
  for (int l : levels) sum += l;
  return static_cast<int>(std::min<int64_t>(sum, 1 << 30));
}
}  // namespace

int ModelConfig::top_down_width() const {
  if (top_down_hidden > 0) return top_down_hidden;
  return encoder.hidden.empty() ? 2 * latent : encoder.hidden.back();
}

int ModelConfig::decoder_output_channels() const {
  const int c = image_channels;
  switch (likelihood) {
    case Likelihood::DiscretizedLogistic: return 2 * c;
    case Likelihood::MixtureDiscretizedLogistic: return static_cast<int>(ops::dmol_planes(mixture_components(), c));
    default: return c;
  }
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
  require(classes >= 0 && classes <= 4096, "classes must be in [0, 4096], got " + std::to_string(classes));
  require(!conditional || prior.type != PriorType::Vamp,
          "a conditional model cannot use the VampPrior (its pseudo-inputs have no labels); use --prior standard, mog or flow");
  require(levels.size() <= static_cast<size_t>(kMaxLevels),
          "posterior.levels lists at most " + std::to_string(kMaxLevels) + " levels, got " + std::to_string(levels.size()));
  if (!levels.empty()) {
    for (int l : levels)
      require(l >= 1 && l <= 4096, "posterior.levels: every level needs 1 to 4096 units, got " + std::to_string(l));
    const int sum = levels_total(levels);
    require(sum == latent, "posterior.latent (" + std::to_string(latent) + ") must be the sum of posterior.levels (" +
                               std::to_string(sum) + "); give the levels alone and the latent follows");
  }
  require(top_down_hidden >= 0 && top_down_hidden <= 65536,
          "posterior.top_down_hidden must be in [0, 65536] (0: the encoder's last hidden width), got " +
              std::to_string(top_down_hidden));
  require(!hierarchical() || posterior_flow_steps == 0,
          "a hierarchy's posterior has no flow steps in this version: remove posterior.flow_steps, or use one level");
  check_prior_components(prior);
  require(conditional || prior.type != PriorType::LabelGaussian,
          "the label_gaussian prior is p(z | y), a Gaussian per class: it needs a conditional model (--conditional, "
          "and data with labels)");
  const auto check_flow = [&](const char* section, int steps, int hidden, bool on) {
    const std::string s = section;
    require(steps >= 0 && steps <= 64, s + ".flow_steps must be in [0, 64], got " + std::to_string(steps));
    require(hidden >= 1 && hidden <= 4096, s + ".flow_hidden must be in [1, 4096], got " + std::to_string(hidden));
    require(!on || steps >= 1, s + ".flow_steps must be at least 1 for a flow prior");
    require(!(on || steps > 0) || latent >= 2,
            s + ": a flow's coupling layers split z into two halves, so the latent size must be at least 2, got " +
                std::to_string(latent));
  };
  check_flow("prior", prior.flow_steps, prior.flow_hidden, prior.type == PriorType::Flow);
  check_flow("posterior", posterior_flow_steps, posterior_flow_hidden, false);
  if (logvar_clamp != LogvarClampKind::None)
    require(std::isfinite(logvar_min) && std::isfinite(logvar_max) && logvar_min >= -30.0f &&
                logvar_max <= 20.0f && logvar_min + 0.01f <= logvar_max,
            "posterior.logvar_min and logvar_max must satisfy -30 <= logvar_min < logvar_max <= 20 (at least 0.01 "
            "apart), got [" + std::to_string(logvar_min) + ", " + std::to_string(logvar_max) + "]");
  require(e.leaky_slope >= 0.0f && e.leaky_slope < 1.0f, "leaky_slope must be in [0, 1)");
  require(likelihood_components >= 0 && likelihood_components <= 32,
          "likelihood.components must be in [1, 32] (0: the default 10), got " + std::to_string(likelihood_components));
  require(likelihood_components == 0 || likelihood == Likelihood::MixtureDiscretizedLogistic,
          "likelihood.components is for the dmol likelihood (a mixture of discretized logistics); remove it or set "
          "likelihood.type to dmol");
  require(likelihood != Likelihood::MixtureDiscretizedLogistic || image_channels == 1 || image_channels == 3,
          "the dmol likelihood models grey (1 channel) or RGB (3 channels) images, got " +
              std::to_string(image_channels) + " channels; use dlogistic, which takes any channel count");
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
  if (p.has_components()) j["components"] = p.count();
  if (prior_keys(p.type).flow) {
    j["flow_steps"] = p.flow_steps;
    j["flow_hidden"] = p.flow_hidden;
  }
  return j;
}

// A components count means a mixture: the rule for the config file and for --prior-components.
void require_mixture_for_components(const PriorConfig& p) {
  if (!p.has_components())
    throw Error("prior.components is for the mixture priors (" + prior_types_taking(takes_components) +
                "): set prior.type to one of them (--prior mog) or remove it");
}

void read_prior(const json& j, PriorConfig& p) {
  reject_unknown_keys(j, {"type", "components", "flow_steps", "flow_hidden"}, "prior");
  std::string s;
  if (j.contains("type")) read_key(j, "type", s), p.type = parse_prior(s);
  read_key(j, "flow_steps", p.flow_steps);
  read_key(j, "flow_hidden", p.flow_hidden);
  if ((j.contains("flow_steps") || j.contains("flow_hidden")) && !prior_keys(p.type).flow)
    throw Error("prior.flow_steps and prior.flow_hidden are for the " + prior_types_taking(takes_flow) +
                " prior: set prior.type to " + prior_types_taking(takes_flow) + " or remove them");
  read_key(j, "components", p.components);
  if (j.contains("components")) {
    require_mixture_for_components(p);
    check_prior_components(p, true);
  }
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
  if (posterior_flow_steps > 0) {
    j["posterior"]["flow_steps"] = posterior_flow_steps;
    j["posterior"]["flow_hidden"] = posterior_flow_hidden;
  }
  if (hierarchical()) {
    j["posterior"]["levels"] = levels;
    j["posterior"]["top_down_hidden"] = top_down_hidden;
    j["posterior"]["residual"] = residual_posterior;
  }
  if (logvar_clamp != LogvarClampKind::None) {
    j["posterior"]["logvar_clamp"] = to_string(logvar_clamp);
    j["posterior"]["logvar_min"] = typed_float(logvar_min);
    j["posterior"]["logvar_max"] = typed_float(logvar_max);
  }
  j["prior"] = prior_to_json(prior);
  json l;
  l["type"] = to_string(likelihood);
  if (likelihood == Likelihood::Gaussian) {
    l["sigma"] = typed_float(gaussian_sigma);
    l["learned_sigma"] = learned_sigma;
  }
  if (likelihood == Likelihood::MixtureDiscretizedLogistic) l["components"] = mixture_components();
  j["likelihood"] = l;
  j["init"] = to_string(init);
  if (conditional) {
    j["conditional"] = true;
    j["classes"] = classes;
  }
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
    reject_unknown_keys(j, {"image", "encoder", "decoder", "posterior", "prior", "likelihood", "init", "conditional", "classes"},
                        "model");
    read_key(j, "conditional", c.conditional);
    read_key(j, "classes", c.classes);
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
      reject_unknown_keys(p, {"type", "latent", "flow_steps", "flow_hidden", "logvar_clamp", "logvar_min", "logvar_max",
                              "levels", "top_down_hidden", "residual"},
                          "posterior");
      if (p.contains("type")) read_typed_section(json{{"type", p.at("type")}}, "posterior", {"gaussian"});
      read_key(p, "latent", c.latent);
      read_key(p, "flow_steps", c.posterior_flow_steps);
      read_key(p, "flow_hidden", c.posterior_flow_hidden);
      std::string clamp;
      if (p.contains("logvar_clamp")) read_key(p, "logvar_clamp", clamp), c.logvar_clamp = parse_logvar_clamp(clamp);
      read_key(p, "logvar_min", c.logvar_min);
      read_key(p, "logvar_max", c.logvar_max);
      read_key(p, "levels", c.levels);
      read_key(p, "top_down_hidden", c.top_down_hidden);
      read_key(p, "residual", c.residual_posterior);
      // The levels alone give the latent size (the sum); both given must agree (validate()).
      if (!c.levels.empty() && !p.contains("latent")) c.latent = levels_total(c.levels);
    }
    if (j.contains("prior")) read_prior(j.at("prior"), c.prior);
    if (j.contains("likelihood")) {
      const json& l = j.at("likelihood");
      reject_unknown_keys(l, {"type", "sigma", "learned_sigma", "components"}, "likelihood");
      std::string s;
      if (l.contains("type")) read_key(l, "type", s), c.likelihood = parse_likelihood(s);
      read_key(l, "sigma", c.gaussian_sigma);
      read_key(l, "learned_sigma", c.learned_sigma);
      read_key(l, "components", c.likelihood_components);
    }
    std::string s;
    if (j.contains("init")) read_key(j, "init", s), c.init = parse_init(s);
  }
  c.validate();
  return c;
}

namespace {

using config::Field;

// 100000, not 1e+05; 0.001 as %g gives it.
std::string number_text(double v) {
  char buf[32];
  if (v == std::floor(v) && std::fabs(v) < 1e15) std::snprintf(buf, sizeof buf, "%.0f", v);
  else std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// A flag's text as the JSON value its field reads: the whole text must be the value.
template <class T>
json text_to_json(const std::string& text) {
  const auto bad = [&](const char* what) { return Error(std::string("expected ") + what); };
  if constexpr (std::is_same_v<T, std::string>) {
    return text;
  } else if constexpr (std::is_same_v<T, std::vector<int>>) {
    json list = json::array();
    size_t start = 0;
    while (start <= text.size()) {
      const size_t comma = std::min(text.find(',', start), text.size());
      const std::string item = text.substr(start, comma - start);
      int v = 0;
      const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
      if (item.empty() || ec != std::errc() || end != item.data() + item.size() || v < 1)
        throw bad("comma-separated positive integers such as 512,256");
      list.push_back(v);
      start = comma + 1;
    }
    return list;
  } else if constexpr (std::is_integral_v<T>) {
    long long v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) throw bad("an integer");
    return v;
  } else {
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v)) throw bad("a number");
    return v;
  }
}

// A field of type T reached through get: typed read (read_key's checks), written as typed, and
// checked against [lo, hi] (when given; for lists, each element).
template <class C, class T>
Field<C> value(const char* key, T& (*get)(C&), std::optional<double> lo, std::optional<double> hi, const char* flag,
               const char* help, bool resumable = false) {
  Field<C> f;
  f.key = key;
  f.flag = flag ? flag : "";
  f.help = help ? help : "";
  f.resumable = resumable;
  const std::string k = key;
  f.read = [get, k](C& c, const json& v) { read_key(json{{k, v}}, k.c_str(), get(c)); };
  f.write = [get](const C& c) -> json {
    const T& v = get(const_cast<C&>(c));
    if constexpr (std::is_same_v<T, float>) return typed_float(v);
    else if constexpr (std::is_same_v<T, std::string>) return v.empty() ? json() : json(v);
    else return json(v);
  };
  f.check = [get, k, lo, hi](const C& c) {
    const auto in_range = [&](double v) { return (!lo || v >= *lo) && (!hi || v <= *hi); };
    const auto fail = [&](const std::string& got) {
      std::string range = lo && hi ? "in [" + number_text(*lo) + ", " + number_text(*hi) + "]"
                          : lo    ? ">= " + number_text(*lo)
                                  : "<= " + number_text(*hi);
      throw Error(k + " must be " + range + ", got " + got);
    };
    const T& v = get(const_cast<C&>(c));
    if constexpr (std::is_same_v<T, std::vector<int>>) {
      for (int x : v)
        if (!in_range(x)) fail(std::to_string(x));
    } else if constexpr (std::is_arithmetic_v<T>) {
      if (!std::isfinite(static_cast<double>(v)) || !in_range(static_cast<double>(v)))
        fail(std::is_integral_v<T> ? std::to_string(v) : number_text(static_cast<double>(v)));
    }
  };
  f.from_text = [](const std::string& text) { return text_to_json<T>(text); };
  if constexpr (std::is_same_v<T, std::vector<int>>) f.type_name = "LIST";
  else if constexpr (std::is_integral_v<T>) f.type_name = "INT";
  else if constexpr (std::is_floating_point_v<T>) f.type_name = "FLOAT";
  else f.type_name = std::is_same_v<T, std::string> && k == "data" ? "PATH" : "TEXT";
  return f;
}

// An enumeration written as its name.
template <class C, class E>
Field<C> choice(const char* key, E& (*get)(C&), E (*parse)(const std::string&), std::string (*name)(E), const char* flag,
                const char* help) {
  Field<C> f;
  f.key = key;
  f.flag = flag ? flag : "";
  f.help = help;
  const std::string k = key;
  f.read = [get, parse, k](C& c, const json& v) {
    std::string s;
    read_key(json{{k, v}}, k.c_str(), s);
    get(c) = parse(s);
  };
  f.write = [get, name](const C& c) -> json { return name(get(const_cast<C&>(c))); };
  f.check = [](const C&) {};
  f.from_text = [](const std::string& text) { return json(text); };
  f.type_name = "CHOICE";
  return f;
}

// A boolean whose flag is a switch setting it to `when_given` (--no-cuda-graph sets cuda_graph false).
template <class C>
Field<C> toggle(const char* key, bool& (*get)(C&), const char* flag, bool when_given, const char* help) {
  Field<C> f = value<C, bool>(key, get, std::nullopt, std::nullopt, flag, help);
  f.switch_value = when_given;
  return f;
}

#define VAE_GET(C, member) +[](C& c) -> decltype((c.member)) { return c.member; }

}  // namespace

namespace config {

const std::vector<Field<TrainConfig>>& train_fields() {
  using C = TrainConfig;
  static const std::vector<Field<C>> fields = [] {
    std::vector<Field<C>> f;
    f.push_back(value(
        "data", VAE_GET(C, data_dir), {}, {}, "--data",
        "the data: a folder of IDX files (default /usr/share/datasets/fashion-mnist), a .npy array [N,H,W], [N,H,W,C] or "
        "[N,C,H,W] (uint8, or float32 in [0,1]), or a folder of PNG images (class sub-folders give labels); with "
        "--resume, where the run's data moved (its content hash must match)", true));
    f.push_back(value("labels", VAE_GET(C, labels_path), {}, {}, "--labels",
                      "labels .npy (one integer per image) for a .npy --data; with --resume, where they moved", true));
    f.push_back(value("test_fraction", VAE_GET(C, test_fraction), 1e-6, 0.999999, "--test-fraction",
                      "share of a .npy or PNG source held out as the test set (default 0.1; IDX folders with t10k "
                      "files use those)"));
    f.push_back(value("validation_fraction", VAE_GET(C, validation_fraction), 0, 0.9, "--validation-fraction",
                      "share of the training images held out as a validation set, evaluated every epoch: best.safetensors "
                      "and --early-stopping go by its bound, the -ELBO or an importance-weighted objective's own (default 0: "
                      "none, and best.safetensors goes by the test -ELBO)"));
    f.push_back(choice("validation_split", VAE_GET(C, validation_split), parse_validation_split, to_string,
                       "--validation-split",
                       "permuted|tail: a fixed pseudo-random share of the training images, the same for every seed, or "
                       "the last ones (vae_vampprior's fixed validation set) (default permuted)"));
    f.push_back(value("early_stopping", VAE_GET(C, early_stopping), 0, 100000, "--early-stopping",
                      "stop after this many epochs in a row without a better validation bound, not counting KL warm-up "
                      "epochs; needs --validation-fraction (default 0: off)"));
    f.push_back(value("out", VAE_GET(C, out_dir), {}, {}, "--out",
                      "run folder (default runs/latest); must not hold a run unless --overwrite"));
    f.push_back(value("epochs", VAE_GET(C, epochs), 1, 100000, "--epochs", "epochs (default 10)", true));
    f.push_back(value("batch", VAE_GET(C, batch), 1, 1 << 20, "--batch", "batch size (default 128)"));
    f.push_back(choice("optimizer", VAE_GET(C, optimizer), parse_optimizer, to_string, "--optimizer",
                       "adam|adamw (default adam)"));
    f.push_back(value("lr", VAE_GET(C, lr), 1e-9, 10, "--lr", "learning rate (default 1e-3)"));
    f.push_back(value("min_lr", VAE_GET(C, min_lr), 0, 10, nullptr, "floor of the cosine schedule (default 0)"));
    f.push_back(choice("schedule", VAE_GET(C, schedule), parse_schedule, to_string, "--schedule",
                       "constant|cosine learning rate (default constant)"));
    f.push_back(value("adam_beta1", VAE_GET(C, adam_beta1), 0, 0.999999, nullptr, "Adam's beta1 (default 0.9)"));
    f.push_back(value("adam_beta2", VAE_GET(C, adam_beta2), 0, 0.999999, nullptr, "Adam's beta2 (default 0.999)"));
    f.push_back(value("adam_eps", VAE_GET(C, adam_eps), 1e-30, 1, nullptr, "Adam's epsilon (default 1e-8)"));
    f.push_back(value("weight_decay", VAE_GET(C, weight_decay), 0, 10, "--weight-decay", "weight decay (default 0)"));
    f.push_back(value("clip_norm", VAE_GET(C, clip_norm), 0, 1e6, "--clip-norm",
                      "global gradient-norm clipping, 0 = off (default 0)"));
    f.push_back(value("seed", VAE_GET(C, seed), {}, {}, "--seed", "random seed (default 0)"));
    f.push_back(value("threads", VAE_GET(C, threads), 0, 1024, "--threads", "CPU threads, 0 = all cores (default 0)", true));
    f.push_back(value("train_limit", VAE_GET(C, train_limit), 0, double(int64_t{1} << 40), "--train-limit",
                      "train on the first N images only (0 = all)"));
    f.push_back(value("test_limit", VAE_GET(C, test_limit), 0, double(int64_t{1} << 40), "--test-limit",
                      "evaluate on the first N test images only (0 = all)"));
    f.push_back(choice("device", VAE_GET(C, device), parse_device, to_string, "--device", "cpu|cuda|auto (default cpu)"));
    f.push_back(toggle("cuda_graph", VAE_GET(C, cuda_graph), "--no-cuda-graph", false,
                       "CUDA: launch every kernel of each step instead of replaying one recorded graph (debugging)"));
    f.push_back(toggle("tf32", VAE_GET(C, tf32), "--strict-fp32", false, "CUDA: strict FP32 GEMMs instead of TF32 tensor cores"));
    f.push_back(toggle("fused_epilogues", VAE_GET(C, fused_epilogues), "--no-fused-epilogues", false,
                       "CUDA: bias, ReLU and their gradients as separate kernels, not in the cuBLASLt GEMM (debugging)"));
    return f;
  }();
  return fields;
}

const std::vector<Field<ObjectiveConfig>>& objective_fields() {
  using C = ObjectiveConfig;
  static const std::vector<Field<C>> fields = [] {
    std::vector<Field<C>> f;
    f.push_back(choice("type", VAE_GET(C, type), parse_objective, to_string, "--objective",
                       "elbo|iwae|iwae-dreg: the evidence lower bound with KL weight --beta, the importance-weighted "
                       "bound with --k-train samples, or that bound with the doubly-reparameterised encoder gradient "
                       "(default elbo)"));
    f.push_back(value("beta", VAE_GET(C, beta), 0, 1000, "--beta", "KL weight; with --capacity its gamma (default 1)"));
    f.push_back(choice("warmup", VAE_GET(C, warmup), parse_warmup, to_string, "--warmup",
                       "linear|linear_epochs|cyclical KL warm-up over --warmup-epochs: step by step, epoch by epoch (beta * "
                       "epoch / warmup-epochs, vae_vampprior's), or cycles of that length (default linear)"));
    f.push_back(value("warmup_epochs", VAE_GET(C, warmup_epochs), 0, 100000, "--warmup-epochs",
                      "KL warm-up epochs, or a cyclical warm-up's cycle length; 0 = none (default 0)"));
    f.push_back(value("warmup_ratio", VAE_GET(C, warmup_ratio), 0.01, 1, "--warmup-ratio",
                      "cyclical warm-up: the share of each cycle over which beta rises (default 0.5)"));
    f.push_back(value("free_bits", VAE_GET(C, free_bits), 0, 100, "--free-bits",
                      "free bits: a floor, in nats per dimension, under each group's batch-mean KL; 0 = off (default 0)"));
    f.push_back(value("free_bits_group", VAE_GET(C, free_bits_group), 1, 4096, "--free-bits-group",
                      "free bits: dimensions per group, dividing the latent size; the latent size floors the total "
                      "KL (default 1)"));
    f.push_back(value("capacity", VAE_GET(C, capacity), 0, 100000, "--capacity",
                      "capacity: the loss holds beta * |KL - C| with C rising to this many nats; 0 = off (default 0)"));
    f.push_back(value("capacity_epochs", VAE_GET(C, capacity_epochs), 0, 100000, "--capacity-epochs",
                      "capacity: epochs over which C rises linearly from 0 (default 0: at once)"));
    f.push_back(value("k", VAE_GET(C, k), 1, 4096, "--k-train",
                      "iwae: importance samples per image in training (default 1)"));
    return f;
  }();
  return fields;
}

const std::vector<Field<ModelConfig>>& model_flag_fields() {
  using C = ModelConfig;
  static const std::vector<Field<C>> fields = [] {
    std::vector<Field<C>> f;
    f.push_back(value("posterior.latent", VAE_GET(C, latent), 1, 4096, "--latent", "latent dimensions (default 32)"));
    f.push_back(choice("encoder.type", VAE_GET(C, encoder.type), parse_network, to_string, "--encoder",
                       "mlp|conv (default mlp); the decoder mirrors the encoder"));
    f.push_back(value("encoder.channels", VAE_GET(C, encoder.channels), 1, 4096, "--channels",
                      "conv encoder: channels per conv layer, e.g. 32,64 (kernel 4, stride 2, padding 1 unless the "
                      "--config file says otherwise)"));
    f.push_back(value("encoder.hidden", VAE_GET(C, encoder.hidden), 1, 65536, "--hidden",
                      "fully connected encoder widths, after any convs (default 512,256)"));
    f.push_back(choice("encoder.activation", VAE_GET(C, encoder.activation), parse_activation, to_string, "--activation",
                       "relu|leaky_relu|tanh|silu|gated (default relu); gated: every hidden layer of doubled width, its second "
                       "half gating the first through a sigmoid (vae_vampprior's gated layers)"));
    Field<C> levels = value("posterior.levels", VAE_GET(C, levels), 1, 4096, "--levels",
                            "hierarchical latents: the levels' sizes from the top down, e.g. 40,40 (the latent size is "
                            "their sum; default: one level of --latent)");
    levels.read = [inner = levels.read](C& c, const json& v) {
      inner(c, v);
      if (!c.levels.empty()) c.latent = levels_total(c.levels);
    };
    f.push_back(std::move(levels));
    f.push_back(value("posterior.top_down_hidden", VAE_GET(C, top_down_hidden), 0, 65536, "--top-down-hidden",
                      "hierarchical latents: the top-down networks' width (default 0: the encoder's last hidden width)"));
    f.push_back(toggle("posterior.residual", VAE_GET(C, residual_posterior), "--residual-posterior", true,
                       "hierarchical latents: each lower level's posterior is its prior shifted and scaled (NVAE)"));
    f.push_back(choice("posterior.logvar_clamp", VAE_GET(C, logvar_clamp), parse_logvar_clamp, to_string,
                       "--logvar-clamp",
                       "none|hard|soft: hold the posterior's log-variance in [--logvar-min, --logvar-max] (default none)"));
    f.push_back(value("posterior.logvar_min", VAE_GET(C, logvar_min), -30, 20, "--logvar-min",
                      "the bounded log-variance's lower end (default -6)"));
    f.push_back(value("posterior.logvar_max", VAE_GET(C, logvar_max), -30, 20, "--logvar-max",
                      "the bounded log-variance's upper end (default 2)"));
    f.push_back(choice("prior.type", VAE_GET(C, prior.type), parse_prior, to_string, "--prior",
                       "standard|mog|vamp|flow|label_gaussian: N(0, I), a learned mixture of Gaussians, the VampPrior (a "
                       "mixture of the encoder's posteriors at learned pseudo-inputs), a RealNVP/Glow flow over N(0, I), "
                       "or p(z | y), a learned Gaussian per class (conditional models) (default standard)"));
    Field<C> components = value("prior.components", VAE_GET(C, prior.components), 1, kMaxPriorComponents, "--prior-components",
                                "mog: number of Gaussians (default 10); vamp: number of pseudo-inputs (default 500)");
    components.check = [inner = components.check](const C& c) {
      require_mixture_for_components(c.prior);
      inner(c);
    };
    f.push_back(std::move(components));
    Field<C> prior_steps = value("prior.flow_steps", VAE_GET(C, prior.flow_steps), 1, 64, "--prior-flow-steps",
                                 "flow prior: flow steps, each ActNorm, LU linear and affine coupling (default 4)");
    prior_steps.check = [inner = prior_steps.check](const C& c) {
      if (!prior_keys(c.prior.type).flow) throw Error("--prior-flow-steps is for the flow prior: add --prior flow");
      inner(c);
    };
    f.push_back(std::move(prior_steps));
    f.push_back(value("posterior.flow_steps", VAE_GET(C, posterior_flow_steps), 0, 64, "--posterior-flow",
                      "flow steps after the Gaussian posterior's sample (default 0)"));
    f.push_back(toggle("conditional", VAE_GET(C, conditional), "--conditional", true,
                       "condition the encoder and decoder on the data set's class labels (a conditional VAE)"));
    f.push_back(choice("likelihood.type", VAE_GET(C, likelihood), parse_likelihood, to_string, "--likelihood",
                       "bernoulli|gaussian|dlogistic|dmol (default bernoulli): Bernoulli on dynamically binarized pixels, a "
                       "Gaussian density on grey levels in [0, 1], a discretized logistic per 8-bit value, or a mixture of "
                       "--likelihood-components discretized logistics per pixel (RGB: PixelCNN++'s coupled means)"));
    Field<C> lcomp = value("likelihood.components", VAE_GET(C, likelihood_components), 1, 32, "--likelihood-components",
                           "dmol: discretized logistics in each pixel's mixture (default 10)");
    f.push_back(std::move(lcomp));
    return f;
  }();
  return fields;
}

}  // namespace config

namespace {

template <class C>
std::vector<const char*> keys_of(const std::vector<Field<C>>& fields) {
  std::vector<const char*> keys;
  for (const auto& f : fields) keys.push_back(f.key.c_str());
  return keys;
}

template <class C>
void read_fields(const json& j, const std::vector<Field<C>>& fields, C& c) {
  for (const auto& f : fields)
    if (j.contains(f.key)) f.read(c, j.at(f.key));
}

template <class C>
json write_fields(const std::vector<Field<C>>& fields, const C& c) {
  json j = json::object();
  for (const auto& f : fields)
    if (json v = f.write(c); !v.is_null()) j[f.key] = std::move(v);
  return j;
}

}  // namespace

void ObjectiveConfig::validate() const {
  for (const auto& f : config::objective_fields()) f.check(*this);
  if (importance_weighted()) {
    const std::string t = "objective.type " + to_string(type);
    require(beta == 1.0f, t + " is a bound on log p(x) with no KL weight: remove objective.beta (--beta) or use elbo");
    require(warmup_epochs == 0, t + " has no KL term to warm up: remove objective.warmup_epochs or use elbo");
    require(free_bits == 0.0f, t + " has no KL term for free bits: remove objective.free_bits or use elbo");
    require(capacity == 0.0f, t + " has no KL term for a capacity: remove objective.capacity or use elbo");
  } else {
    require(k == 1, "objective.k (--k-train) is the importance-weighted bound's sample count: set objective.type to "
                    "iwae or iwae_dreg, or remove it");
  }
  require(free_bits == 0.0f || capacity == 0.0f,
          "objective.free_bits and objective.capacity are two ways to hold the KL up; choose one");
  require(free_bits > 0.0f || free_bits_group == 1, "objective.free_bits_group needs objective.free_bits > 0");
  require(capacity > 0.0f || capacity_epochs == 0, "objective.capacity_epochs needs objective.capacity > 0");
  require(warmup_epochs > 0 || (warmup == WarmupSchedule::Linear && warmup_ratio == 0.5f),
          "objective.warmup and warmup_ratio shape a warm-up: set objective.warmup_epochs > 0 (--warmup-epochs)");
}

void ObjectiveConfig::check_model(const ModelConfig& model) const {
  require(!model.hierarchical() || type != ObjectiveType::IwaeDreg,
          "objective.type iwae_dreg holds log q's parameters fixed, which a hierarchy's posterior shares with its "
          "conditional priors through the top-down path; train a hierarchy with iwae or elbo");
  if (free_bits <= 0.0f) return;
  // A hierarchy's groups lie within its levels (a group of one level's size: free bits per level).
  if (model.hierarchical() && free_bits_group != model.latent) {
    std::string sizes;
    for (int size : model.levels) sizes += (sizes.empty() ? "" : ",") + std::to_string(size);
    for (int size : model.levels)
      require(size % free_bits_group == 0,
              "objective.free_bits_group " + std::to_string(free_bits_group) + " must divide every level's size (" +
                  sizes + ") so that no group spans two levels: set it to a common divisor (a level's size gives a "
                  "floor per level) or to the latent size " + std::to_string(model.latent) + " (a floor on the total KL)");
  }
  require(model.latent % free_bits_group == 0,
          "objective.free_bits_group " + std::to_string(free_bits_group) + " must divide the latent size " +
              std::to_string(model.latent));
  require(free_bits_group == model.latent || model.posterior_flow_steps == 0,
          "objective.free_bits_group " + std::to_string(free_bits_group) + " splits the KL by dimension, which a posterior "
          "flow does not allow; set free_bits_group to the latent size " + std::to_string(model.latent));
  require(free_bits_group == model.latent || model.prior.type == PriorType::StandardNormal,
          "objective.free_bits_group " + std::to_string(free_bits_group) + " splits the KL by dimension, which needs a "
          "prior that factorises over dimensions (standard_normal); with prior " + to_string(model.prior.type) +
          " set free_bits_group to the latent size " + std::to_string(model.latent) + " (a floor on the total KL)");
}

std::string ObjectiveConfig::to_json() const { return write_fields(config::objective_fields(), *this).dump(); }

ObjectiveConfig ObjectiveConfig::from_json(const std::string& text, ObjectiveConfig c) {
  const json j = parse_json(text, "objective config");
  reject_unknown_keys(j, keys_of(config::objective_fields()), "objective");
  read_fields(j, config::objective_fields(), c);
  c.validate();
  return c;
}

void TrainConfig::validate() const {
  for (const auto& f : config::train_fields()) f.check(*this);
  require(min_lr <= lr, "min_lr must be in [0, lr]");
  require(!out_dir.empty(), "out must name a folder");
  require(early_stopping == 0 || validation_fraction > 0,
          "early_stopping judges the run on a validation set: set validation_fraction (--validation-fraction 0.1, say) "
          "or remove early_stopping");
  require(validation_fraction > 0 || validation_split == ValidationSplit::Permuted,
          "validation_split chooses which images validation_fraction holds out: set validation_fraction > 0");
  objective.validate();
  require(objective.warmup_epochs <= epochs * 1000, "warmup_epochs must be at most 1000 times the epochs");
}

std::string TrainConfig::to_json() const { return write_fields(config::train_fields(), *this).dump(); }

TrainConfig TrainConfig::from_json(const std::string& text, TrainConfig c) {
  const json j = parse_json(text, "train config");
  // "beta" and "warmup_epochs" lived here before the objective had its own section.
  std::vector<const char*> known = keys_of(config::train_fields());
  known.push_back("beta");
  known.push_back("warmup_epochs");
  reject_unknown_keys(j, known, "train");
  read_fields(j, config::train_fields(), c);
  read_key(j, "beta", c.objective.beta);
  read_key(j, "warmup_epochs", c.objective.warmup_epochs);
  c.validate();
  return c;
}

std::string run_config_to_json(const ModelConfig& model, const TrainConfig& train, const RunIdentity* run) {
  json j;
  j["model"] = json::parse(model.to_json());
  j["objective"] = json::parse(train.objective.to_json());
  j["train"] = json::parse(train.to_json());
  if (run) j["run"] = {{"id", run->id}, {"data_hash", run->data_hash}};
  return j.dump(2) + "\n";
}

void run_config_from_json(const std::string& text, ModelConfig& model, TrainConfig& train, RunIdentity* run) {
  const json j = parse_json(text, "config file");
  if (!j.is_object()) throw Error("a config file must hold a JSON object with 'model', 'objective' and/or 'train'");
  for (const auto& [key, v] : j.items())
    if (key != "model" && key != "train" && key != "objective" && key != "run")
      throw Error("unknown top-level key '" + key + "' (expected 'model', 'objective', 'train' and 'run')");
  if (j.contains("model")) model = ModelConfig::from_json(j["model"].dump());
  if (j.contains("train")) train = TrainConfig::from_json(j["train"].dump(), train);
  if (j.contains("objective")) {
    if (j.contains("train") && (j["train"].contains("beta") || j["train"].contains("warmup_epochs")))
      throw Error("beta and warmup_epochs belong to the 'objective' section; remove them from 'train'");
    train.objective = ObjectiveConfig::from_json(j["objective"].dump(), train.objective);
    train.validate();
  }
  if (run) {
    *run = {};
    if (const auto it = j.find("run"); it != j.end()) {
      if (!it->is_object() || !it->contains("id") || !(*it)["id"].is_string() ||
          (it->contains("data_hash") && !(*it)["data_hash"].is_string()))
        throw Error("'run' must be {\"id\": \"...\", \"data_hash\": \"...\"}, as vae train writes it");
      run->id = (*it)["id"].get<std::string>();
      run->data_hash = it->value("data_hash", std::string());
    }
  }
}

namespace {
std::atomic<int> g_num_threads{0};
}

void set_num_threads(int threads) {
  const int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  g_num_threads.store(n);
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int num_threads() { return g_num_threads.load(); }

}  // namespace vae
