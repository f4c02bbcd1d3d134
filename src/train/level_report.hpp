// The per-level figures of a hierarchy as metrics.jsonl and `vae eval --json` write them.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

namespace vae {

// EvalResult::kl_active_units_per_level: -1 (no KL per dimension at the top) is written as null.
inline nlohmann::json kl_active_json(const std::vector<int>& counts) {
  nlohmann::json j = nlohmann::json::array();
  for (int c : counts) j.push_back(c < 0 ? nlohmann::json(nullptr) : nlohmann::json(c));
  return j;
}

}  // namespace vae
