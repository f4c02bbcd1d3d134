// The training objective as a component: what a step minimises, from the per-sample terms the rest
// of the model computes. ModelImpl::forward_backward is a straight pipeline through it:
//
//   h = encoder(x)
//   sample:          z [rows*k, L] and each sample's latent term (the ELBO's KL, or log p - log q)
//   decoder, likelihood: nll per sample, its gradient scaled by likelihood_grad_scale
//   reduce:          loss [3] = [objective, mean reconstruction, mean KL] and the weights the
//                    backward needs, decided on the device from this batch
//   weight_decoder_gradient, decoder backward, latent_backward (dz -> dh), encoder backward
//
// Every step value (beta, the KL term's weight, the capacity) comes from the step record in the
// LatentArgs (backend/step_record.hpp). One class per objective, built by type name in
// make_objective (objective.cpp): a new objective is one class and one registration line there.
#pragma once

#include <cstdint>
#include <memory>

#include "backend/backend.hpp"
#include "latent/latent_block.hpp"
#include "model/likelihood.hpp"
#include "vae/config.hpp"

namespace vae {

class Objective {
 public:
  virtual ~Objective() = default;
  // Samples per data row that the decoder and the likelihood see.
  virtual int samples_per_row() const { return 1; }
  // The weight of every sample's -log p(x|z) in the loss when the objective gives them all the same
  // (the ELBO's 1 / rows, folded into the likelihood's gradient); 1 when it weights them itself.
  virtual float likelihood_grad_scale(int rows) const = 0;
  // Makes room for batches of up to rows data rows; generation() changes when its buffers move (a
  // recorded step addressing them must be recorded again).
  virtual void prepare(int /*rows*/, Device /*device*/) {}
  virtual uint64_t generation() const { return 0; }

  // The latent forward of a training step on h [rows, 2L]: z [rows*k, L] and each sample's latent
  // term [rows*k] (the ELBO's KL; the bounds' log p(z) - log q(z|x)).
  virtual void sample(Backend& be, LatentBlock& latent, const LatentArgs& a, const float* h, float* z,
                      float* latent_term) = 0;
  // loss [3] from nll and latent_term [rows*k], and the backward's weights.
  virtual void reduce(Backend& be, const LatentArgs& a, const float* nll, const float* latent_term, float* loss) = 0;
  // The likelihood's gradient dout [rows*k, d] weighted per sample, in place (nothing when
  // likelihood_grad_scale already weighted it).
  virtual void weight_decoder_gradient(Backend& /*be*/, float* /*dout*/, int /*rows*/, int /*d*/) {}
  // dh [rows, 2L] from dz [rows*k, L] (the decoder's gradient at z) and the latent term's gradient.
  virtual void latent_backward(Backend& be, LatentBlock& latent, const LatentArgs& a, const float* h, const float* z,
                               float* dz, float* dh) = 0;
};

// The objective o names, for this model (its latent block and likelihood), validated against both.
// Sets what the latent block computes for it (the KL per dimension for free bits by group).
std::unique_ptr<Objective> make_objective(const ObjectiveConfig& o, const ModelConfig& model, LatentBlock& latent,
                                          const LikelihoodModel& likelihood);

}  // namespace vae
