// The reference pages against the program, so they cannot drift from it:
//  - docs/cli.md names every flag each `vae` command has, and every flag it names exists;
//  - docs/config.md's key index ("## Every key") holds exactly the keys the configuration reads and
//    writes: the train and objective sections from their field lists, the model's from the JSON tree
//    of models that use every component type.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "config_fields.hpp"
#include "test_util.hpp"
#include "vae/config.hpp"

namespace vae {
namespace {

std::string read_doc(const std::string& name) {
  const std::string path = std::string(VAE_SOURCE_DIR) + "/docs/" + name;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::set<std::string> matches(const std::string& text, const std::regex& re, int group = 0) {
  std::set<std::string> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it)
    out.insert((*it)[group].str());
  return out;
}

#ifdef VAE_CLI_PATH
TEST(Docs, EveryCliFlagIsDocumentedAndEveryDocumentedFlagExists) {
  const std::string cli = test::env_or("VAE_CLI_PATH", VAE_CLI_PATH);
  const auto top = test::run_command(cli + " --help");
  ASSERT_EQ(top.code, 0) << top.out;
  // The subcommands: the lines under "Subcommands:" of the top-level help.
  const std::string listing = top.out.substr(top.out.find("Subcommands:"));
  const std::set<std::string> commands = matches(listing, std::regex(R"(\n  ([a-z][a-z-]*) )"), 1);
  ASSERT_GE(commands.size(), 10u) << top.out;
  const std::regex flag(R"(--[a-z][a-z0-9-]*)");
  const std::string doc = read_doc("cli.md");
  std::set<std::string> all_flags = {"--help", "--version"};
  for (const std::string& command : commands) {
    const auto help = test::run_command(cli + " " + command + " --help");
    ASSERT_EQ(help.code, 0) << command << ": " << help.out;
    for (const std::string& f : matches(help.out, flag)) {
      all_flags.insert(f);
      if (f == "--help") continue;
      // As a whole word: --k must not pass because --k-train is documented.
      EXPECT_TRUE(std::regex_search(doc, std::regex(f + R"((?![a-z0-9-]))")))
          << "vae " << command << " has " << f << ", and docs/cli.md does not mention it";
    }
  }
  for (const std::string& f : matches(doc, flag))
    EXPECT_TRUE(all_flags.count(f)) << "docs/cli.md names " << f << ", which no vae command has";
}
#endif

// "- `section`: `key`, `key`, ..." lines of docs/config.md's key index.
std::map<std::string, std::set<std::string>> documented_keys() {
  const std::string doc = read_doc("config.md");
  const size_t at = doc.find("## Every key");
  EXPECT_NE(at, std::string::npos) << "docs/config.md has no \"## Every key\" section";
  std::map<std::string, std::set<std::string>> keys;
  std::istringstream lines(at == std::string::npos ? "" : doc.substr(at));
  const std::regex entry(R"(^- `([a-z_.]+)`: (.*)$)"), key(R"(`([a-z_0-9]+)`)");
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_match(line, m, entry)) keys[m[1]] = matches(m[2].str(), key, 1);
  }
  return keys;
}

void collect(const nlohmann::json& j, const std::string& section, std::map<std::string, std::set<std::string>>& out) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it->is_object()) collect(*it, section + "." + it.key(), out);
    else out[section].insert(it.key());
  }
}

TEST(Docs, TheConfigKeyIndexHoldsExactlyTheKeysTheConfigurationHas) {
  std::map<std::string, std::set<std::string>> actual;
  for (const auto& f : config::train_fields()) actual["train"].insert(f.key);
  for (const auto& f : config::objective_fields()) actual["objective"].insert(f.key);
  // Models that between them use every component type and option.
  std::vector<ModelConfig> models(6);
  models[1].encoder.type = NetworkType::Conv;
  models[1].encoder.channels = {8};
  models[1].prior.type = PriorType::MixtureOfGaussians;
  models[1].prior.components = 3;
  models[1].likelihood = Likelihood::Gaussian;
  models[2].prior.type = PriorType::Flow;
  models[2].posterior_flow_steps = 1;
  models[2].conditional = true;
  models[2].classes = 10;
  models[3].prior.type = PriorType::Vamp;
  models[3].prior.components = 5;
  models[4].likelihood = Likelihood::MixtureDiscretizedLogistic;
  models[4].encoder.activation = Activation::Gated;
  models[4].logvar_clamp = LogvarClampKind::Soft;
  models[5].levels = {16, 16};
  models[5].latent = 32;
  models[5].prior.type = PriorType::LabelGaussian;
  models[5].conditional = true;
  models[5].classes = 10;
  for (const ModelConfig& m : models) collect(nlohmann::json::parse(m.to_json()), "model", actual);
  const auto documented = documented_keys();
  for (const auto& [section, keys] : actual) {
    ASSERT_TRUE(documented.count(section)) << "docs/config.md's key index has no line for `" << section << "`";
    for (const std::string& k : keys)
      EXPECT_TRUE(documented.at(section).count(k)) << section << "." << k << " is not in docs/config.md's key index";
  }
  for (const auto& [section, keys] : documented) {
    ASSERT_TRUE(actual.count(section)) << "docs/config.md lists a section `" << section << "` the configuration lacks";
    for (const std::string& k : keys)
      EXPECT_TRUE(actual.at(section).count(k)) << "docs/config.md lists " << section << "." << k << ", which no configuration has";
  }
}

}  // namespace
}  // namespace vae
