// vae eval --compare: which published results (bench/anchors.json) share an evaluation's protocol,
// and how far the model is from each.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "vae/train.hpp"

namespace vae::cli {

// bench/anchors.json as it was when the CLI was built.
const char* builtin_anchors_json();

// A published-results file of bench/anchors.json's form, parsed and checked (`where` names it in
// messages): throws naming the file for malformed anchors, so that a bad file is refused before an
// evaluation runs.
nlohmann::json read_anchors(const std::string& text, const std::string& where);

// One entry per published row of anchors (read_anchors'): the row, whether every field of its
// protocol matches the evaluation's protocol object ("same", "differs" or "unknown" where the paper
// leaves a field unstated or the data cannot be identified), the fields that do not match (theirs
// and ours), and the gap ours - theirs in nats with its standard error (the evaluation's and the
// paper's sd over runs, added in quadrature).
nlohmann::json compare_with_anchors(const EvalResult& r, const nlohmann::json& anchors);

// The comparison as lines of text: the rows that share the protocol first.
std::string comparison_text(const nlohmann::json& rows);

}  // namespace vae::cli
