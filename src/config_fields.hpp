// The configuration's fields, each declared once (src/config.cpp): its JSON key, how it reads and
// writes itself, its range check, and its CLI flag with help text. TrainConfig and ObjectiveConfig
// parse, validate and serialise by walking their lists; `vae train` registers its flags from the same
// lists (the train section's, the objective's, and the model fields that have a flag), so a new
// field is one declaration.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vae/config.hpp"

namespace vae::config {

using json = nlohmann::json;

template <class C>
struct Field {
  std::string key;         // JSON key in its section; for a model field the tree path ("encoder.hidden")
  std::string flag;        // "--lr", or empty when only a config file sets it
  std::string help;        // --help text, with the default
  std::string type_name = "TEXT";  // what --help shows the value as: INT, FLOAT, LIST, a choice
  bool resumable = false;  // the flag may be given with --resume (it does not change what is trained)
  json switch_value;       // non-null: the flag is a switch, taking no value, that sets this
  std::function<void(C&, const json&)> read;  // checks the JSON type; throws naming the key
  std::function<json(const C&)> write;        // null json: the field is not written (e.g. unset labels)
  std::function<void(const C&)> check;        // the field's own range; throws naming the key
  std::function<json(const std::string&)> from_text;  // a flag's text to the JSON value read() takes
};

const std::vector<Field<TrainConfig>>& train_fields();
const std::vector<Field<ObjectiveConfig>>& objective_fields();
// The model's fields that have a flag. The model's sections read and write themselves as a tree in
// config.cpp; a flag sets its field through read() and the model is validated as a whole.
const std::vector<Field<ModelConfig>>& model_flag_fields();

}  // namespace vae::config
