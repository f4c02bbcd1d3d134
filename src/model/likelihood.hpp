// The likelihood p(x | decoder output) as a component: its log-density per row and gradient in one
// fused pass (the kernels/<likelihood>_nll.cuh ops), its own parameters in the flat buffer, what an
// image is under it (the decoder output made a picture), and whether the data is binarised for it.
// One class per likelihood, built by type name in make_likelihood (likelihood.cpp): a new likelihood
// is one class and one registration line there.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.hpp"
#include "graph/layers.hpp"
#include "vae/config.hpp"

namespace vae {

class LikelihoodModel {
 public:
  virtual ~LikelihoodModel() = default;
  // Data in {0, 1} (dynamic binarisation of the 8-bit pixels) rather than grey levels.
  virtual bool binarized_data() const = 0;
  // Places its parameters in the flat buffer after `offset` (aligned); returns the new end. Most
  // likelihoods have none.
  virtual int64_t layout(int64_t offset) { return offset; }
  // Names its parameters (after layout), as the checkpoint's tensors.
  virtual void param_slices(std::vector<ParamSlice>& /*out*/) const {}
  // Writes its parameters' starting values into the host copy of the flat buffer.
  virtual void initialize(std::vector<float>& /*host_params*/) const {}
  // Gradients that are not weighted per sample (a learned sigma shared by all rows) cannot follow
  // the importance-weighted objectives, which weight each sample's gradient.
  virtual bool shares_parameters_across_samples() const { return false; }
  // nll[rows] = -log p(x | out) per row and, when dout is non-null, dout = grad_scale * d nll / d out
  // and the gradient of its own parameters into grads (the flat gradient buffer).
  virtual void nll(Backend& be, const float* out, const float* x, float* nll_rows, float* dout, int rows,
                   float grad_scale, const float* params, float* grads) const = 0;
  // The decoder's output for `rows` images [rows, decoder_output_dim] made images [rows, C*H*W] in
  // [0, 1] (the distribution's mean, or a mixture's most probable component's), written to image
  // (out itself when the two widths agree, or another buffer on the same device).
  virtual void to_image(Backend& be, const float* out, float* image, int rows) const = 0;
  // Images drawn from the distribution rather than its mean (sample r's noise counted from row0 + r,
  // seed): the 8-bit likelihoods' values quantized to k / 255. The others give to_image's picture.
  virtual void sample_image(Backend& be, const float* out, float* image, int rows, uint64_t /*seed*/,
                            int64_t /*row0*/) const {
    to_image(be, out, image, rows);
  }
  // Whether -log p(x) is the probability of the 8-bit values (bits per dimension apply) or a
  // density over [0, 1] (ModelConfig::discrete_likelihood).
  virtual bool discrete() const { return true; }
};

// The likelihood config.likelihood names, for images of input_dim pixels. Throws for an unknown type.
std::unique_ptr<LikelihoodModel> make_likelihood(const ModelConfig& config);

}  // namespace vae
