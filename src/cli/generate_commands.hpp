// The vae commands that generate and inspect the latent space: sample, encode, decode, interpolate,
// traverse, plot-latent, and the quality measure's classifier and quality.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "vae/vae.hpp"

namespace vae::cli {

// --data and its companions, as every command that reads a data set takes them.
struct DataFlags {
  std::string data = "/usr/share/datasets/fashion-mnist", labels;
  double test_fraction = 0.1;
};
Dataset load_data(const DataFlags& f);
// A saved model on the asked-for device, with the GEMM numerics every command shares.
Model load_model(const std::string& checkpoint, const std::string& device, bool strict_fp32);

struct GenerateCommands {
  DataFlags data;
  std::string checkpoint, out, device = "cpu", from = "prior", label, mode = "linear", split = "test", codes,
                                code_labels, classifier, class_names;
  int n = 64, quality_n = 10000, columns = 8, scale = 1, components = 10, steps = 10, dims = 10, epochs = 5, threads = 0;
  int64_t index_from = 0, index_to = 1, index = 0, limit = 0, fit_limit = 0;
  float temperature = 1.0f, range = 3.0f, lr = 1e-3f;
  uint64_t seed = 0;
  bool strict_fp32 = false, as_json = false;
  std::vector<CLI::App*> commands;
};

void add_generate_commands(CLI::App& app, GenerateCommands& g);
// Runs whichever of these commands was parsed; returns its exit code, or -1 when none was.
int run_generate_commands(GenerateCommands& g);

}  // namespace vae::cli
