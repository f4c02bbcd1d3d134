// The posterior q(z|x) as a component: a diagonal Gaussian read from the encoder's output (its
// "head") h = [mu | raw log-variance] per row, optionally followed by a flow z = f(z0) with
// log q(z|x) = log q0(z0|x) - log |det df/dz0|. This class is the only host code that knows the
// head's layout: everything else asks it for the head's width, a row's place, the Gaussian's
// moments, its log-density, or the head rows seen as Gaussian components (the VampPrior's). The
// kernels that read a head are its ops: gaussian_posterior.cuh (sample, log q, backward, moments),
// and the fused N(0, I) paths latent_sample_kl.cuh, gaussian_kl.cuh and importance_sample.cuh.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.hpp"
#include "gaussian_posterior.cuh"
#include "grad_weight.cuh"
#include "graph/layers.hpp"
#include "latent/flow.hpp"
#include "vae/config.hpp"
#include "vae/tensor.hpp"

namespace vae {

class Posterior {
 public:
  explicit Posterior(const ModelConfig& config);
  int latent() const { return latent_; }
  // The encoder's output per row: [mu | raw log-variance].
  int head_width() const { return 2 * latent_; }
  // Where row r of the encoder's output starts: its rows are head_width() wide, or wider when
  // this posterior is a hierarchy's top level, whose head is the first head_width() columns of a
  // wider output (set_encoder_stride).
  int64_t row_offset(int64_t r) const { return r * encoder_stride_; }
  void set_encoder_stride(int64_t stride) { encoder_stride_ = stride; }
  // Row `row`'s mean (element u) and raw log-variance, from a head buffer on the host.
  double mean(const float* h, int64_t row, int u) const { return h[row_offset(row) + u]; }
  // The Gaussians of head rows [0, rows) (host memory) as the evaluator's aggregate-posterior sums
  // score them, each sample against every posterior of the test set: the per-unit terms of
  // log q0(z | x) in double, the clamped log-variance's exponential and half computed once a row,
  // so a pair costs a multiply-add per unit instead of a soft clamp and an exp.
  struct GaussianTerms {
    int latent = 0;
    std::vector<double> mean, inv_var, half_log_var;  // [rows, latent] each
    // log q0(z | x) of row `row`'s Gaussian at z [latent].
    double log_density(int64_t row, const float* z) const {
      const size_t at = static_cast<size_t>(row) * static_cast<size_t>(latent);
      const double* mu = mean.data() + at;
      const double* iv = inv_var.data() + at;
      const double* hl = half_log_var.data() + at;
      double acc = 0;
      for (int u = 0; u < latent; ++u) {
        const double d = double(z[u]) - mu[u];
        acc += -0.5 * d * d * iv[u] - hl[u] - math::kHalfLog2Pi;
      }
      return acc;
    }
  };
  GaussianTerms gaussian_terms(const float* h, int64_t rows) const;
  // mu and the clamped log-variance [rows, L] each from h [rows, head_width()] (backend memory).
  void moments(Backend& be, const float* h, int rows, float* mu, float* log_var) const;
  // The head rows h [count, head_width()] as `count` Gaussian components: their means and raw
  // log-variances and the stride between rows (what the VampPrior's mixture reads).
  // Also for a gradient buffer of the same layout (T = float).
  template <class T>
  struct Components {
    T* means;
    T* raw_log_var;
    int64_t stride;
  };
  template <class T>
  Components<T> components(T* h) const {
    return {h, h + latent_, encoder_stride_};
  }

  // The flow (steps() == 0 without one).
  Flow& flow() { return flow_; }
  bool has_flow() const { return flow_.steps() > 0; }
  // After a sample with a flow: the Gaussian samples z0 [rows, L] and the flow's log-determinant
  // [rows], as views.
  Tensor pre_flow_z(int rows) const { return z0_.view(0, {rows, latent_}); }
  Tensor flow_logdet(int rows) const { return logdet_.view(0, {rows}); }

  // The flow's parameters in the model's flat buffers, and its workspace.
  int64_t layout(int64_t offset) { return flow_.layout(offset); }
  void bind(float* params, float* grads) { flow_.bind(params, grads); }
  void param_slices(std::vector<ParamSlice>& out) const { flow_.param_slices(out); }
  void initialize(std::vector<float>& params, uint64_t seed, uint32_t& tensor_index) const {
    flow_.initialize(params, seed, tensor_index);
  }
  void prepare(int rows, Device device);
  uint64_t generation() const { return generation_ + flow_.generation(); }

  // z [rows*k, L] and out[i] = log_q_sign * log q(z_i|x) (out may be null without a flow): k samples
  // per row of h [rows, head_width()] with the noise n (gaussian_posterior.cuh), through the flow.
  void sample(Backend& be, const float* h, int rows, int k, const ops::PosteriorNoise& n, float log_q_sign, float* z,
              float* out);
  // dh [rows, head_width()] from dz [rows*k, L] (the gradient at z) and log q's weight in the loss
  // per sample; dreg: the doubly-reparameterised estimator (no flow). Needs the sample just before.
  void backward(Backend& be, const float* h, const float* dz, int rows, int k, const ops::PosteriorNoise& n,
                const ops::GradWeight<float>& log_q_weight, bool dreg, float* dh);
  // The flow's data-dependent initialisation (Glow's ActNorm) from one batch's head h; z gets the
  // samples z = f(z0) (for the prior's own initialisation after it).
  void initialize_from(Backend& be, const float* h, int rows, const ops::PosteriorNoise& n, float* z);

 private:
  int latent_;
  int64_t encoder_stride_;
  Flow flow_;
  Tensor z0_, logdet_;
  int capacity_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace vae
