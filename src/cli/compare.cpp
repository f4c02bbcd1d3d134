#include "cli/compare.hpp"

#include <cmath>
#include <cstdio>

#include "vae/error.hpp"

namespace vae::cli {
namespace {

using json = nlohmann::json;

// The name of the data set whose hashes list `hash` (empty: none).
std::string data_set_of(const json& data_sets, const std::string& hash) {
  for (const auto& [name, set] : data_sets.items())
    for (const json& h : set.value("hashes", json::array()))
      if (h.is_string() && h.get<std::string>() == hash) return name;
  return {};
}

bool has_hashes(const json& data_sets, const std::string& name) {
  return data_sets.contains(name) && !data_sets[name].value("hashes", json::array()).empty();
}

}  // namespace

json read_anchors(const std::string& text, const std::string& where) {
  json anchors;
  try {
    anchors = json::parse(text);
  } catch (const json::exception& e) {
    throw Error("anchors '" + where + "' is not valid JSON: " + e.what());
  }
  if (!anchors.is_object() || !anchors.contains("anchors") || !anchors["anchors"].is_array())
    throw Error("anchors '" + where + "' needs a list \"anchors\" of published rows (see bench/anchors.json)");
  for (const json& a : anchors["anchors"])
    if (!a.is_object() || !a.contains("neg_log_px") || !a["neg_log_px"].is_number() || !a.contains("protocol") ||
        !a["protocol"].is_object())
      throw Error("anchors '" + where + "': every row needs a number neg_log_px and an object protocol; " + a.dump());
  if (anchors.contains("data_sets") && !anchors["data_sets"].is_object())
    throw Error("anchors '" + where + "': data_sets must be an object of named data sets with their hashes");
  return anchors;
}

json compare_with_anchors(const EvalResult& r, const json& anchors) {
  const json ours = json::parse(r.to_json()).at("protocol");
  const json data_sets = anchors.value("data_sets", json::object());
  json rows = json::array();
  for (const json& a : anchors["anchors"]) {
    json row;
    row["source"] = a.value("source", "");
    row["model"] = a.value("model", "");
    row["data"] = a.value("data", "");
    row["neg_log_px"] = a["neg_log_px"];
    row["sd"] = a.contains("sd") ? a["sd"] : json(nullptr);
    json differs = json::array(), unknown = json::array();
    // The data: the evaluation's content hash must be one the row's data set lists. Ours is named
    // when it is any listed set's; an unlisted hash cannot be told apart from the row's data.
    const std::string data = a.value("data", "");
    const std::string our_data = data_set_of(data_sets, r.data_hash);
    const json ours_named = our_data.empty() ? json(r.data_hash) : json(our_data);
    if (r.data_hash.empty() || (our_data.empty() && !data_sets.contains(data)))
      unknown.push_back({{"field", "data"}, {"theirs", data}, {"ours", ours_named}});
    else if (our_data != data)
      (our_data.empty() && !has_hashes(data_sets, data) ? unknown : differs)
          .push_back({{"field", "data"}, {"theirs", data}, {"ours", ours_named}});
    for (const auto& [key, theirs] : a["protocol"].items()) {
      const json mine = ours.contains(key) ? ours[key] : json(nullptr);
      if (theirs.is_null() || mine.is_null()) unknown.push_back({{"field", key}, {"theirs", theirs}, {"ours", mine}});
      else if (theirs != mine) differs.push_back({{"field", key}, {"theirs", theirs}, {"ours", mine}});
    }
    row["protocol"] = !differs.empty() ? "differs" : !unknown.empty() ? "unknown" : "same";
    row["differs"] = differs;
    row["unknown"] = unknown;
    if (r.k > 0 && differs.empty()) {  // a gap across protocols would compare nothing
      const double theirs = a["neg_log_px"].get<double>();
      const double sd = a.contains("sd") && a["sd"].is_number() ? a["sd"].get<double>() : 0.0;
      row["gap"] = r.iwae_nll - theirs;
      row["gap_stderr"] = std::sqrt(r.iwae_stderr * r.iwae_stderr + sd * sd);
    }
    rows.push_back(row);
  }
  return rows;
}

std::string comparison_text(const json& rows) {
  std::string out;
  char line[512];
  for (const char* which : {"same", "unknown", "differs"}) {
    bool header = false;
    for (const json& row : rows) {
      if (row["protocol"] != which) continue;
      if (!header) {
        out += std::string(which == std::string("same")      ? "published rows under this evaluation's protocol:\n"
                           : which == std::string("unknown") ? "rows whose protocol could not be checked in full:\n"
                                                             : "rows under another protocol (not comparable):\n");
        header = true;
      }
      const std::string sd = row["sd"].is_number() ? " +- " + std::to_string(row["sd"].get<double>()).substr(0, 4) : "";
      std::snprintf(line, sizeof line, "  %8.2f%-8s %s (%s, %s)", row["neg_log_px"].get<double>(), sd.c_str(),
                    row["model"].get<std::string>().c_str(), row["data"].get<std::string>().c_str(),
                    row["source"].get<std::string>().c_str());
      out += line;
      if (row.contains("gap")) {
        std::snprintf(line, sizeof line, "\n      ours - theirs: %+.2f +- %.2f nats", row["gap"].get<double>(),
                      row["gap_stderr"].get<double>());
        out += line;
      }
      for (const char* list : {"differs", "unknown"})
        for (const json& f : row[list]) {
          out += std::string("\n      ") + (list == std::string("differs") ? "differs: " : "unknown: ") +
                 f["field"].get<std::string>() + " (theirs " + f["theirs"].dump() + ", ours " + f["ours"].dump() + ")";
        }
      out += "\n";
    }
  }
  return out;
}

}  // namespace vae::cli
