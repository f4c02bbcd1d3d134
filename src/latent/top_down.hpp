// The levels of a hierarchy below its top (Ladder VAE, Sønderby et al. 2016; NVAE, Vahdat & Kautz
// 2020), top-down. Levels are counted from the top: level 0 is z_L, whose posterior and prior are the
// latent block's own (any prior); level i >= 1 has
//   a top-down network    o_i = TD_i(z_{i-1}) = Linear(act(Linear(z_{i-1}))), [rows, 4 L_i] = [p_i | t_i]
//   its prior             p(z_i | z_{i-1}) = N(mu(p_i), e^lv(p_i))           (the head p_i, [mu | raw])
//   its posterior         q(z_i | x, z_{i-1}) with head q_i = b_i + t_i  (+ p_i when residual: the
//                         posterior as the prior shifted and scaled, NVAE)
// b_i being level i's bottom-up head, columns of the encoder's output after the top's 2 L_0: the
// bottom-up deterministic pass is the encoder, which gives every level its head. The prior and the
// posterior share the top-down path (TD_i's hidden layer). The level's KL is analytic
// (gaussian_pair_kl.cuh) at the sampled z_{i-1}; the importance-weighted bound takes
// log p(z_i | z_{i-1}) - log q(z_i | x, z_{i-1}) at each sample. The decoder reads every level:
// z = [z_0 | z_1 | ... ] (the top first), so the top levels reach the image directly and cannot be
// ignored in favour of the lowest alone (the collapse the Ladder VAE warns of). With
// ModelConfig::logvar_clamp, both heads' log-variances are clamped (logvar_clamp.cuh) once formed:
// q_i after the sum above, p_i as the network gives it; the raw heads are kept for the backward.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "backend/backend.hpp"
#include "graph/layers.hpp"
#include "gaussian_posterior.cuh"
#include "grad_weight.cuh"
#include "logvar_clamp.cuh"
#include "step_scalars.cuh"
#include "vae/config.hpp"
#include "vae/tensor.hpp"

namespace vae {

class TopDown {
 public:
  explicit TopDown(const ModelConfig& config);
  TopDown(const TopDown&) = delete;
  TopDown& operator=(const TopDown&) = delete;
  int top_latent() const { return sizes_[0]; }
  int total_latent() const { return total_; }
  int levels() const { return static_cast<int>(sizes_.size()); }
  int level_size(int i) const { return sizes_[static_cast<size_t>(i)]; }
  int level_offset(int i) const { return z_offset_[static_cast<size_t>(i)]; }  // its first column of z
  // The encoder's output width: the top's head (2 L_0), then each lower level's bottom-up head.
  int head_width() const { return head_width_; }

  int64_t layout(int64_t offset);
  void bind(float* params, float* grads);
  void param_slices(std::vector<ParamSlice>& out) const;
  void initialize(std::vector<float>& params, InitScheme scheme, uint64_t seed, uint32_t& tensor_index) const;
  void prepare(int rows, Backend& be);
  uint64_t generation() const;

  // Training and evaluation forward for h [rows, head_width()] and the top's sample z_top [rows, L_0]:
  // z [rows, total] (every level, the top copied in), kl[r] += the lower levels' KL, kl_dim
  // [total - L_0] (the lower levels' KL per dimension, summed over rows) when non-null. The noise of
  // level i: Philox (u/4, row0 + r, step, kStreamLatentLevel0 + i), scaled by a.eps_scale.
  void forward(Backend& be, const LatentArgs& a, const float* h, const float* z_top, float* z, float* kl,
               float* kl_dim);
  // After forward on the same input: dh's bottom-up columns (from column 2 L_0 on; written) and
  // dz_top [rows, L_0] (written: the decoder's gradient at the top plus what the top-down networks
  // send up) from dz [rows, total], the levels' KL weighted by a.per_step's kl_grad_weight, or, when
  // dim_weight [total - L_0] is given (free bits by group), by one weight per dimension.
  void backward(Backend& be, const LatentArgs& a, const float* z_top, const float* dz, const float* dim_weight,
                float* dz_top, float* dh);
  // The importance-weighted bound's training forward: k samples per row of h [rows, head_width()]
  // with the top's z_top [rows*k, L_0] drawn: z [rows*k, total] and lpq[i] += sum over the lower
  // levels of log p(z_i | z_{i-1}) - log q(z_i | x, z_{i-1}) (the Monte-Carlo term: the bound needs
  // each sample's own). Sample j of row b: Philox (u/4, (row0 + b) k + j, step, kStreamLatentLevel0
  // + i), so k = 1 draws forward's noise. Needs prepare(rows * k).
  void sample_k(Backend& be, const LatentArgs& a, const float* h, int k, const float* z_top, float* z, float* lpq);
  // Its backward after sample_k on the same input: dz [rows*k, total] (the decoder's, weighted per
  // sample), each lower level's log p weighted by `prior` (the weight of -log p in the loss, per
  // sample) and log q by `log_q` (the weight of log q): dz_top [rows*k, L_0] (written: the
  // decoder's at the top plus what the top-down networks send up) and dh's bottom-up columns
  // (written: each row's k samples summed).
  void backward_k(Backend& be, const LatentArgs& a, const float* z_top, int k, const float* dz,
                  const ops::GradWeight<float>& prior, const ops::GradWeight<float>& log_q, float* dz_top, float* dh);
  // The lower levels' posterior means and clamped log-variances of the last forward, into columns
  // L_0.. of mu and log_var [rows, total].
  void moments(Backend& be, int rows, float* mu, float* log_var);
  // Importance sampling: k samples per row of h [rows, head_width()], z_top [rows*k, L_0] drawn by
  // the top: z [rows*k, total] and lpq[i] += sum over lower levels of log p(z_i | z_{i-1}) -
  // log q(z_i | x, z_{i-1}). Sample j of row b: Philox (u/4, (row0 + b) k + j, sample0,
  // kStreamImportanceLevel0 + i). Needs prepare(rows * k).
  void importance_sample(Backend& be, const float* h, int rows, int k, const float* z_top, uint64_t seed, int64_t row0,
                         int64_t sample0, float* z, float* lpq);
  // Ancestral sampling below the top, z_top [rows, L_0] given: z [rows, total]. Levels 1..keep-1
  // at their posterior means (h [rows, head_width()], the bottom-up heads; keep = 1 and h null: none),
  // the levels from `keep` on drawn from their conditional priors, level i's spread scaled by
  // temperature[i] (the last entry for the levels past the list; temperature[0], the top's, is the
  // caller's). Sample r's noise: Philox (u/4, row0 + r, 0, kStreamPriorLevel0 + i). Needs prepare(rows).
  // With keep >= 2 it shows what the kept levels encode (vae reconstruct --keep-levels).
  void sample(Backend& be, const float* h, int rows, int keep, const float* z_top, const std::vector<float>& temperature,
              uint64_t seed, int64_t row0, float* z);

 private:
  struct Level {
    int size = 0, parent = 0;  // L_i and L_{i-1}
    int head_column = 0;       // b_i's first column in h
    std::unique_ptr<Sequential> net;  // z_{i-1} -> [p_i | t_i]
    Tensor q, p, z, dq, dp, dnet, dz, dparent, kl;  // [rows, 2L] heads, [rows, L] samples, [rows, 4L], ...
    Tensor b_rep;                                    // importance sampling: b_i repeated k times
    Tensor q_raw, p_raw;                             // the heads before the log-variance clamp (when on)
  };
  const float* parent_z(int i, const float* z_top) const;
  void check_rows(int rows) const;
  // Level i's top-down network on the level above (rows of them) and its prior head into l.p
  // (clamped when the clamp is on); returns the network's output [p_i | t_i].
  const float* top_down_pass(Backend& be, int i, const float* z_top, int rows);
  // Level i's samples into its columns of z [rows, total].
  void place(Backend& be, int i, int rows, float* z) const;
  // q_i from b (its rows, stride) and the network's output (clamped when the clamp is on).
  void posterior_head(Backend& be, Level& l, const float* b, int64_t b_stride, const float* o, int rows) const;
  // k samples per row of every level below the top (importance_sample and sample_k): level i's
  // noise is base's with stream base.stream + i.
  void levels_k(Backend& be, const float* h, int rows, int k, const float* z_top, const ops::PosteriorNoise& base,
                float* z, float* lpq);
  // q_i for k samples per row of h: the row's bottom-up head repeated k times (into l.b_rep).
  void posterior_head_k(Backend& be, Level& l, const float* h, int rows, int k, const float* o) const;
  // The level's gradients dq and dp (through the clamps, the residual's dp += dq) into dnet = [dp | dq].
  void head_gradients_to_network(Backend& be, Level& l, int rows) const;
  // The backward's start: dz [rows, total] into dz_top [rows, L_0] and each lower level's l.dz.
  void split_dz(Backend& be, const float* dz, int rows, float* dz_top);
  // Level i's head gradients dq and dp, k samples per row of them, out: through the clamps into dnet
  // (head_gradients_to_network), dq summed over each row's samples into dh's bottom-up columns, dnet
  // through the top-down network into the level above's dz (or dz_top).
  void network_backward(Backend& be, int i, const float* z_top, int rows, int k, float* dz_top, float* dh);

  std::vector<int> sizes_, z_offset_;
  int total_ = 0, head_width_ = 0;
  bool residual_;
  std::optional<ops::LogvarBounds<float>> clamp_;  // ModelConfig::logvar_clamp
  std::vector<Level> levels_;  // [0] unused (the top)
  int capacity_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace vae
