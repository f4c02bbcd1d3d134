// The vae commands that generate and inspect the latent space: sample, encode, decode, interpolate,
// traverse, plot-latent, and the quality measure's classifier and quality.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

#include "vae/vae.hpp"

namespace vae::cli {

// --data and its companions, as every command that reads a data set takes them (each empty when not
// given).
struct DataFlags {
  std::optional<std::string> data, labels;
  std::optional<double> test_fraction;
};
// Adds --data, --labels and --test-fraction; for_checkpoint: the help says that they default to the
// checkpoint's own data and split.
void add_data_flags(CLI::App* cmd, DataFlags& f, bool for_checkpoint);
// The data as the flags say (Fashion-MNIST's folder when --data is not given, test fraction 0.1).
Dataset load_data(const DataFlags& f);
// The data a checkpoint command reads: as the flags say when --data is given; else the data and
// split the model's run trained on (Model::origin; --labels and --test-fraction still override), or
// Fashion-MNIST's folder for a model that does not record its data. Says which in one line on
// stderr (unless quiet: a job's other ranks), and warns when the run's data has changed since (its
// content hash differs).
Dataset load_data_for(const Model& model, const DataFlags& f, bool quiet = false);
// Creates the folder a file is to be written in (and those above it) when it does not exist yet;
// returns the topmost folder it created (empty: none), for remove_if_empty after a failure.
std::string create_parent_folder(const std::string& file);
// Removes the folder and the empty folders in it (nothing when it holds a file): what
// create_parent_folder made for a command that then failed.
void remove_if_empty(const std::string& folder);
// A saved model on the asked-for device, with the GEMM numerics every command shares.
Model load_model(const std::string& checkpoint, const std::string& device, bool strict_fp32);

struct GenerateCommands {
  DataFlags data;
  std::string checkpoint, out, device = "cpu", from = "prior", label, mode = "linear", split = "test", codes,
                                code_labels, classifier, class_names;
  int n = 64, quality_n = 10000, columns = 8, scale = 1, components = 10, steps = 10, dims = 10, epochs = 5, threads = 0;
  int64_t index_from = 0, index_to = 1, index = 0, limit = 0, fit_limit = 0;
  float temperature = 1.0f, range = 3.0f, lr = 1e-3f;
  std::vector<float> level_temperatures;  // a hierarchy: each level's, from the top
  std::string pixels = "mean";             // mean|sample: the 8-bit likelihoods' pictures
  uint64_t seed = 0;
  bool strict_fp32 = false, as_json = false;
  std::vector<CLI::App*> commands;
};

void add_generate_commands(CLI::App& app, GenerateCommands& g);
// Runs whichever of these commands was parsed; returns its exit code, or -1 when none was.
int run_generate_commands(GenerateCommands& g);

}  // namespace vae::cli
