// Umbrella header for the vae library.
#pragma once

#include "vae/config.hpp"
#include "vae/data.hpp"
#include "vae/error.hpp"
#include "vae/model.hpp"
#include "vae/safetensors.hpp"
#include "vae/tensor.hpp"
#include "vae/generate.hpp"
#include "vae/train.hpp"
#include "vae/run.hpp"
