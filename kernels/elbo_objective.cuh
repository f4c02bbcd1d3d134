// The ELBO's KL regularisers that depend on the batch (DESIGN.md's Objective): free bits and
// capacity. Each reads the step's per-row terms, writes the loss and the KL term's weight in the
// gradient (which is the batch's to decide, so the backward reads it from a step record written
// here, on the device: a recorded step needs no host decision).
//
// Per-row terms nll[rows], kl[rows]; beta, the capacity C and the step from the step record.
//   free bits (Kingma et al. 2016), groups g of G dimensions, floor lambda per dimension:
//     R = sum_g max(lambda G, KL_g),  KL_g = sum_{u in g} kl_dim[u] / rows  (kl_dim: sums over rows)
//     dim_weight[u] = beta / rows where KL_g > lambda G, else 0 (the floor's gradient is zero)
//     one group of all L dimensions (kl_dim null): KL_g = mean_r kl[r], and the record's
//     kl_grad_weight is beta / rows or 0 (any prior: kl may be the Monte-Carlo log q - log p)
//   capacity (Burgess et al. 2018): R = |mean_r kl[r] - C|, kl_grad_weight = beta sign(mean - C) / rows
//   loss = [mean nll + beta R, mean nll, mean kl]; *effective = the step record with that weight
// One item (the batch is small; sums in double, rows in order): deterministic. Bytes: reads
// 8 per row and 4L, writes 12 + sizeof(StepScalars) + 4L.
#pragma once

#include "for_each.cuh"
#include "step_scalars.cuh"

namespace vae::ops {

enum class KlRegulariser { FreeBits, Capacity };

template <class T>
struct ElboRegularised {
  KlRegulariser kind;
  const T* nll;
  const T* kl;
  const T* kl_dim;  // free bits by groups smaller than the latent, else null
  int rows, latent, group;
  T free_bits;
  const StepScalars* step;
  StepScalars* effective;
  T* dim_weight;  // [latent] when kl_dim is set
  T* loss;        // [3]

  VAE_HD void operator()(int64_t) const {
    StepScalars s = *step;
    const double beta = s.beta;
    double sn = 0, sk = 0;
    for (int r = 0; r < rows; ++r) {
      sn += double(nll[r]);
      sk += double(kl[r]);
    }
    const double mean_kl = sk / rows, w = beta / rows;
    double reg = 0;
    if (kind == KlRegulariser::Capacity) {
      const double d = mean_kl - double(s.capacity);
      reg = d < 0 ? -d : d;
      s.kl_grad_weight = static_cast<float>(d > 0 ? w : d < 0 ? -w : 0.0);
    } else if (kl_dim) {
      const double floor = double(free_bits) * group;
      for (int g0 = 0; g0 < latent; g0 += group) {
        double kg = 0;
        for (int u = g0; u < g0 + group; ++u) kg += double(kl_dim[u]);
        kg /= rows;
        const bool active = kg > floor;
        reg += active ? kg : floor;
        for (int u = g0; u < g0 + group; ++u) dim_weight[u] = T(active ? w : 0.0);
      }
      s.kl_grad_weight = 0.0f;
    } else {
      const double floor = double(free_bits) * latent;
      const bool active = mean_kl > floor;
      reg = active ? mean_kl : floor;
      s.kl_grad_weight = static_cast<float>(active ? w : 0.0);
    }
    loss[0] = T(sn / rows + beta * reg);
    loss[1] = T(sn / rows);
    loss[2] = T(mean_kl);
    *effective = s;
  }
};

template <class Be, class T>
void elbo_regularised(Be& be, const ElboRegularised<T>& f) {
  check(f.rows >= 1 && f.latent >= 1 && f.nll && f.kl && f.step && f.effective && f.loss, "elbo_regularised",
        "empty shape or null pointer");
  check(f.kind == KlRegulariser::Capacity || !f.kl_dim || (f.dim_weight && f.group >= 1 && f.latent % f.group == 0),
        "elbo_regularised", "free bits by group need dim_weight and a group size dividing the latent size");
  run(be, f, 1);
}

}  // namespace vae::ops
