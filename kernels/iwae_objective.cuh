// The importance-weighted bound as a training objective (Burda et al. 2016), with k samples per
// data row b (rows b*k .. b*k+k-1):
//   log weight  a_bj = log p(z_bj) - log q(z_bj|x_b) - nll_bj      (lpq = log p - log q)
//   bound       B_b = log (1/k) sum_j e^a_bj = m_b + log sum_j e^(a_bj - m_b) - log k
//   loss        = -mean_b B_b;  dloss/da_bj = -wn_bj / rows, wn = softmax_j a_bj (normalised weights)
// The normalised weights are computed once here, from the forward's values, and every backward
// reads them as constants (the gradient flows through each a_bj, never through wn itself: the
// detach IWAE implementations get wrong). Per sample row i = b*k + j:
//   decoder_weight[i] = wn / rows      (the decoder's and the prior's parameters: IWAE's gradient)
//   encoder_weight[i] = wn / rows      (IWAE) or wn^2 / rows (DReG, Tucker et al. 2018: the encoder's
//                                      gradient through z, log q's parameters held fixed)
//   z_scale[i]        = wn             (DReG only: the decoder's dz, weighted wn / rows, times wn)
//   loss = [-mean_b B_b, mean_i nll_i, mean_i -lpq_i] (the bound, and the samples' mean
//          reconstruction and Monte-Carlo KL, for the metrics)
// k = 1 is the ELBO with the Monte-Carlo KL: wn = 1, and every weight is the ELBO's 1 / rows.
// A row whose log-weights are all -inf has B_b = -inf and wn = 1/k (never NaN).
// Bytes: weights read 8k and write 8k-12k per data row; loss reads 4 per data row and 8 per sample.
// Items: data rows (sequential over j), then one item for the loss (sums in double, in order).
#pragma once

#include "for_each.cuh"

namespace vae::ops {

template <class T>
struct IwaeWeights {
  const T* lpq;
  const T* nll;
  int rows, k;
  bool dreg;
  T* bound;           // [rows]
  T* decoder_weight;  // [rows*k]
  T* encoder_weight;  // [rows*k]
  T* z_scale;         // [rows*k], DReG only (may be null otherwise)
  VAE_HD void operator()(int64_t b) const {
    const int64_t i0 = b * k;
    T m = lpq[i0] - nll[i0];
    for (int j = 1; j < k; ++j) m = lpq[i0 + j] - nll[i0 + j] > m ? lpq[i0 + j] - nll[i0 + j] : m;
    const T inv_rows = T(1) / T(rows);
    if (m == T(-INFINITY)) {
      // Every sample's weight is zero: the bound is -inf (the loss +inf, a step the divergence guard
      // skips), and the normalised weights, 0/0 as written, are the limit of equal log-weights: 1/k.
      bound[b] = T(-INFINITY);
      for (int j = 0; j < k; ++j) {
        decoder_weight[i0 + j] = inv_rows / T(k);
        encoder_weight[i0 + j] = (dreg ? T(1) / T(k) : T(1)) * inv_rows / T(k);
        if (z_scale) z_scale[i0 + j] = T(1) / T(k);
      }
      return;
    }
    T s = T(0);
    for (int j = 0; j < k; ++j) s += hd::exp(lpq[i0 + j] - nll[i0 + j] - m);
    bound[b] = m + hd::log(s) - hd::log(T(k));
    for (int j = 0; j < k; ++j) {
      const T wn = hd::exp(lpq[i0 + j] - nll[i0 + j] - m) / s;
      decoder_weight[i0 + j] = wn * inv_rows;
      encoder_weight[i0 + j] = (dreg ? wn * wn : wn) * inv_rows;
      if (z_scale) z_scale[i0 + j] = wn;
    }
  }
};

template <class T>
struct IwaeLoss {
  const T* bound;
  const T* lpq;
  const T* nll;
  int rows, k;
  T* loss;
  VAE_HD void operator()(int64_t) const {
    double sb = 0, sn = 0, sq = 0;
    for (int b = 0; b < rows; ++b) sb += double(bound[b]);
    for (int64_t i = 0; i < int64_t(rows) * k; ++i) {
      sn += double(nll[i]);
      sq -= double(lpq[i]);
    }
    const double samples = double(rows) * k;
    loss[0] = T(-sb / rows);
    loss[1] = T(sn / samples);
    loss[2] = T(sq / samples);
  }
};

// The weights above and the loss; bound [rows] is scratch the loss reads.
template <class Be, class T>
void iwae_objective(Be& be, const T* lpq, const T* nll, int rows, int k, bool dreg, T* bound, T* decoder_weight,
                    T* encoder_weight, T* z_scale, T* loss) {
  check(rows >= 1 && k >= 1 && lpq && nll && bound && decoder_weight && encoder_weight && loss, "iwae_objective",
        "empty shape or null pointer");
  check(!dreg || z_scale, "iwae_objective", "the doubly-reparameterised gradient needs z_scale");
  run(be, IwaeWeights<T>{lpq, nll, rows, k, dreg, bound, decoder_weight, encoder_weight, z_scale}, rows);
  run(be, IwaeLoss<T>{bound, lpq, nll, rows, k, loss}, 1);
}

}  // namespace vae::ops
