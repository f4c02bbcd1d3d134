// vae eval --compare: which published results (bench/anchors.json) share an evaluation's protocol,
// and how far the model is from each.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "vae/train.hpp"

namespace vae::cli {

// bench/anchors.json as it was when the CLI was built.
const char* builtin_anchors_json();

// One entry per published row of anchors_json (its text; `where` names it in messages): the row,
// whether every field of its protocol matches the evaluation's ("same", "differs" or "unknown" where
// the paper leaves a field unstated or the data cannot be identified), the fields that do not match
// (theirs and ours), and the gap ours - theirs in nats with its standard error (the evaluation's
// and the paper's sd over runs, added in quadrature). Throws naming the file for malformed anchors.
nlohmann::json compare_with_anchors(const EvalResult& r, const std::string& anchors_json, const std::string& where);

// The comparison as lines of text: the rows that share the protocol first.
std::string comparison_text(const nlohmann::json& rows);

}  // namespace vae::cli
