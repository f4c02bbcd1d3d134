// A checkpoint's contents in memory, for files that carry a model beside other things (the training
// state holds the model it resumes, so that it is the one commit point of a run: vae/run.hpp).
#pragma once

#include <string>

#include "vae/model.hpp"
#include "vae/safetensors.hpp"

namespace vae {

// What save_checkpoint writes to path (named in its refusal of a non-finite parameter).
SafeTensorsFile checkpoint_contents(const Model& model, const std::string& path, int64_t step);
// The step save_checkpoint recorded in the file's contents (-1: none); path names it in errors.
int64_t checkpoint_step(const SafeTensorsFile& file, const std::string& path);
// What load_checkpoint reads from the file at path (named in its messages); tensors whose names
// start with other_prefix (non-empty) belong to something else and are skipped.
Model model_from_contents(const SafeTensorsFile& file, const std::string& path, Device device,
                          const std::string& other_prefix);

}  // namespace vae
