// Builds the encoder and decoder module lists a ModelConfig describes (see EncoderConfig).
#pragma once

#include "graph/layers.hpp"
#include "vae/config.hpp"

namespace vae {

// encoder: [C, H, W] -> [2 * latent] (mu and raw log-variance); decoder: [latent] ->
// [decoder_output_channels, H, W] (the likelihood's parameters: C for Bernoulli and Gaussian).
// Both must be empty. Throws vae::Error naming the config field when the shapes cannot be built.
void build_networks(const ModelConfig& config, Sequential& encoder, Sequential& decoder);

}  // namespace vae
