#include <nlohmann/json.hpp>

#include <cmath>
#include <set>

#include "model/model_impl.hpp"
#include "model/model_use.hpp"
#include "vae/error.hpp"
#include "io/checkpoint_contents.hpp"
#include "vae/model.hpp"
#include "vae/safetensors.hpp"

namespace vae {

DataOptions RunOrigin::data_options() const {
  DataOptions o;
  o.labels = labels;
  o.test_fraction = test_fraction;
  return o;
}

std::string RunOrigin::to_json() const {
  nlohmann::json j;
  j["run_id"] = run_id;
  j["data"] = data;
  j["labels"] = labels;
  j["test_fraction"] = test_fraction;
  j["data_hash"] = data_hash;
  return j.dump();
}

RunOrigin RunOrigin::from_json(const std::string& text, const std::string& what) {
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    RunOrigin o;
    o.run_id = j.at("run_id").get<std::string>();
    o.data = j.at("data").get<std::string>();
    o.labels = j.value("labels", std::string());
    o.test_fraction = j.value("test_fraction", 0.1);
    o.data_hash = j.value("data_hash", std::string());
    return o;
  } catch (const nlohmann::json::exception& e) {
    throw Error(what + ": its run origin (vae_run) is malformed: " + e.what());
  }
}

SafeTensorsFile checkpoint_contents(const Model& model, const std::string& path, int64_t step) {
  const ModelUse use(model, "save");
  SafeTensorsFile file;
  file.metadata["format"] = "pt";  // lets transformers-style loaders open it as PyTorch tensors
  file.metadata["vae_config"] = model.config().to_json();
  file.metadata["vae_version"] = "0.1.0";
  if (step >= 0) file.metadata["vae_step"] = std::to_string(step);
  if (!model.origin().empty()) file.metadata["vae_run"] = model.origin().to_json();
  for (const auto& [name, tensor] : model.named_parameters()) {
    file.tensors.push_back({name, tensor.shape(), tensor.to_host()});
    for (float v : file.tensors.back().values)
      if (!std::isfinite(v))
        throw Error("refusing to write '" + path + "': parameter tensor '" + name + "' holds " + std::to_string(v) +
                    "; the model is ruined (lower --lr or set --clip-norm and train again)");
  }
  return file;
}

void save_checkpoint(const Model& model, const std::string& path, int64_t step) {
  write_safetensors(path, checkpoint_contents(model, path, step));
}

int64_t checkpoint_step(const std::string& path) { return checkpoint_step(read_safetensors(path), path); }

int64_t checkpoint_step(const SafeTensorsFile& file, const std::string& path) {
  const auto it = file.metadata.find("vae_step");
  if (it == file.metadata.end()) return -1;
  try {
    size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used == it->second.size() && v >= 0) return v;
  } catch (const std::exception&) {
  }
  throw Error("checkpoint '" + path + "' has a malformed vae_step '" + it->second + "'");
}

Model load_checkpoint(const std::string& path, Device device) {
  return model_from_contents(read_safetensors(path), path, device, "");
}

Model model_from_contents(const SafeTensorsFile& file, const std::string& path, Device device,
                          const std::string& other_prefix) {
  const auto it = file.metadata.find("vae_config");
  if (it == file.metadata.end())
    throw Error("'" + path + "' is a safetensors file but not a vae checkpoint (no vae_config in its metadata)");
  ModelConfig config;
  try {
    config = ModelConfig::from_json(it->second);
  } catch (const Error& e) {
    throw Error("checkpoint '" + path + "' has an invalid configuration: " + e.what());
  }
  // Before the model is allocated: a configuration may describe up to kMaxParameters, but only
  // what the file actually holds is plausible (each parameter is exactly one stored float).
  const auto others = [&](const SafeTensor& t) { return !other_prefix.empty() && t.name.rfind(other_prefix, 0) == 0; };
  uint64_t stored = 0;
  for (const auto& t : file.tensors)
    if (!others(t)) stored += t.values.size();
  if (stored != static_cast<uint64_t>(config.parameter_count()))
    throw Error("checkpoint '" + path + "' holds " + std::to_string(stored) + " parameter values but its configuration "
                "implies " + std::to_string(config.parameter_count()) + "; the file is damaged or not from this engine");
  Model model(config, device);
  std::vector<float> host(static_cast<size_t>(model.impl().params().numel()), 0.0f);
  std::set<std::string> expected;
  for (const auto& slice : model.impl().slices()) {
    expected.insert(slice.name);
    const SafeTensor* t = file.find(slice.name);
    if (!t) throw Error("checkpoint '" + path + "' lacks tensor '" + slice.name + "' that its configuration implies");
    if (t->shape != slice.shape)
      throw Error("checkpoint '" + path + "': tensor '" + slice.name + "' has shape " + to_string(t->shape) +
                  " but its configuration implies " + to_string(slice.shape));
    for (float v : t->values)
      if (!std::isfinite(v))
        throw Error("checkpoint '" + path + "': tensor '" + slice.name + "' holds " + std::to_string(v) +
                    "; a model with non-finite parameters cannot be used (it is damaged, or was saved by another tool "
                    "from a run that diverged)");
    std::copy(t->values.begin(), t->values.end(), host.begin() + slice.offset);
  }
  for (const auto& t : file.tensors)
    if (!expected.count(t.name) && !others(t))
      throw Error("checkpoint '" + path + "' has tensor '" + t.name + "' that its configuration does not use");
  model.impl().params().copy_from_host(host.data(), static_cast<int64_t>(host.size()));
  if (const auto origin = file.metadata.find("vae_run"); origin != file.metadata.end())
    model.set_origin(RunOrigin::from_json(origin->second, "checkpoint '" + path + "'"));
  return model;
}

}  // namespace vae
