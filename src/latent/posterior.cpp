#include "latent/posterior.hpp"

#include <cmath>

#include "elementwise.cuh"
#include "rows.cuh"
#include "vae/error.hpp"
#include "vae_math.cuh"

namespace vae {

Posterior::Posterior(const ModelConfig& config)
    : latent_(config.latent),
      encoder_stride_(2 * int64_t(config.latent)),
      flow_("posterior.flow", config.latent, config.posterior_flow_steps, config.posterior_flow_hidden) {}

Posterior::GaussianTerms Posterior::gaussian_terms(const float* h, int64_t rows) const {
  GaussianTerms t;
  t.latent = latent_;
  const size_t n = static_cast<size_t>(rows) * static_cast<size_t>(latent_);
  t.mean.resize(n);
  t.inv_var.resize(n);
  t.half_log_var.resize(n);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* mu = h + row_offset(r);
    const float* raw = mu + latent_;
    for (int u = 0; u < latent_; ++u) {
      const size_t at = static_cast<size_t>(r) * static_cast<size_t>(latent_) + static_cast<size_t>(u);
      const double lv = math::soft_clamp(double(raw[u]), double(math::kLogvarMin), double(math::kLogvarMax));
      t.mean[at] = double(mu[u]);
      t.inv_var[at] = std::exp(-lv);
      t.half_log_var[at] = 0.5 * lv;
    }
  }
  return t;
}

void Posterior::moments(Backend& be, const float* h, int rows, float* mu, float* log_var) const {
  ops::gaussian_posterior_moments(be, h, rows, latent_, mu, log_var);
}

void Posterior::prepare(int rows, Device device) {
  if (!has_flow()) return;
  flow_.prepare(rows, device);
  if (rows <= capacity_) return;
  z0_ = Tensor({rows, latent_}, device);
  logdet_ = Tensor({rows}, device);
  capacity_ = rows;
  ++generation_;
}

void Posterior::sample(Backend& be, const float* h, int rows, int k, const ops::PosteriorNoise& n, float log_q_sign,
                       float* z, float* out) {
  if (!has_flow()) {
    ops::gaussian_posterior_sample(be, h, rows, k, latent_, n, log_q_sign, z, out);
    return;
  }
  const int64_t samples = int64_t(rows) * k;
  if (samples > capacity_)
    throw Error("Posterior: " + std::to_string(samples) + " samples but prepared for " + std::to_string(capacity_) +
                " (a bug in vae: prepare must run first)");
  if (!out) throw Error("Posterior: a flow's sample needs the log-density buffer (a bug in vae)");
  // log q(z|x) = log q0(z0|x) - log |det df/dz0|.
  ops::gaussian_posterior_sample(be, h, rows, k, latent_, n, log_q_sign, z0_.data(), out);
  ops::fill(be, logdet_.data(), samples, 0.0f);
  const float* zf = flow_.forward(be, z0_.data(), static_cast<int>(samples), logdet_.data());
  ops::copy_values(be, zf, samples * latent_, z);
  ops::add_scaled(be, static_cast<const float*>(logdet_.data()), samples, -log_q_sign, out);
}

void Posterior::backward(Backend& be, const float* h, const float* dz, int rows, int k, const ops::PosteriorNoise& n,
                         const ops::GradWeight<float>& log_q_weight, bool dreg, float* dh) {
  const float* dz0 = dz;
  if (has_flow()) {
    if (dreg) throw Error("the doubly-reparameterised gradient needs a posterior without flow steps (a bug in vae: "
                          "the configuration check should have refused it)");
    // The loss holds w log q = w (log q0 - logdet): the log-determinant's weight is -w.
    dz0 = flow_.backward(be, dz, rows * k, log_q_weight.negated(), true);
  }
  ops::gaussian_posterior_backward(be, h, dz0, rows, k, latent_, n, log_q_weight, dreg, dh);
}

void Posterior::initialize_from(Backend& be, const float* h, int rows, const ops::PosteriorNoise& n, float* z) {
  if (!has_flow()) {
    ops::gaussian_posterior_sample(be, h, rows, 1, latent_, n, 1.0f, z, static_cast<float*>(nullptr));
    return;
  }
  ops::gaussian_posterior_sample(be, h, rows, 1, latent_, n, 1.0f, z0_.data(), static_cast<float*>(nullptr));
  flow_.initialize_from(be, z0_.data(), rows);
  ops::fill(be, logdet_.data(), rows, 0.0f);
  ops::copy_values(be, flow_.forward(be, z0_.data(), rows, logdet_.data()), int64_t(rows) * latent_, z);
}

}  // namespace vae
