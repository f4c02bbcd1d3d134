// The layers of a normalising flow over z in R^L (RealNVP / Glow), each invertible with an exact
// log-determinant: ActNorm, an invertible linear map in LU form, and an affine coupling layer.
// Rows are independent samples; each layer maps x [rows, L] to y [rows, L] and adds its
// log |det dy/dx| to logdet [rows]. The backward takes dy, and the weight of each row's logdet in
// the loss (wld, per row: grad_weight.cuh), and writes dx (a separate buffer) and the layer's
// parameter gradients (overwritten; one item per parameter summing the rows in order:
// deterministic).
//
// ActNorm (Glow): y = (x + b) e^s, logdet = sum_u s_u. Params b [L], s [L] (data-initialised:
//   flow.cpp). dx = dy e^s; db_u = sum_r dy_ru e^s_u; ds_u = sum_r (dy_ru y_ru + wld_r).
//
// Invertible linear, LU form: y = P L U x with P the reversal (y_i = (L U x)_(L-1-i)), L unit lower
//   triangular, U upper triangular with diagonal e^ls. Params lu [L, L] (strictly lower part: L's
//   entries; strictly upper: U's off-diagonal; the diagonal is unused) and ls [L]; logdet = sum ls.
//   Forward keeps t = U x [rows, L]. Backward: dt2 = P^T dy, dt = L^T dt2 (kept), dx = U^T dt;
//   dlu_ij = sum_r dt2_ri t_rj (i > j), sum_r dt_ri x_rj (i < j), 0 on the diagonal;
//   dls_i = sum_r (dt_ri x_ri e^ls_i + wld_r). Inverse: solve L t = P^T y, then U x = t.
//
// Affine coupling (RealNVP), d = L/2 inputs pass through (xa = x[:d]), m = L - d are transformed:
//   hp = W1 xa + b1 [H] (kept), a = relu(hp), o = W2 a + b2 [2m] (kept),
//   ls_j = tanh(o_j) (the bounded log-scale: |ls| < 1, so no step can explode), t_j = o_(m+j),
//   y = [xa, xb e^ls + t], logdet = sum_j ls_j. Params W1 [H, d], b1 [H], W2 [2m, H], b2 [2m]
//   (W2, b2 start at zero: the identity). Backward: do_j = (dyb_j xb_j e^ls_j + wld) (1 - ls_j^2),
//   do_(m+j) = dyb_j (kept), dhp = (W2^T do) * (hp > 0) (kept), dxa = dya + W1^T dhp, dxb = dyb e^ls;
//   dW2 = sum_r do a^T, db2 = sum_r do, dW1 = sum_r dhp xa^T, db1 = sum_r dhp.
//   Inverse: xa = ya, o from xa, xb = (yb - t) e^-ls.
// FLOPs per row: ActNorm 2L, LU 2L^2, coupling 2H(d + 2m) (forward; about twice that backward).
#pragma once

#include "for_each.cuh"
#include "grad_weight.cuh"
#include "hd.cuh"

namespace vae::ops {

// ------------------------------------------------------------------------------------ ActNorm

template <class T>
struct ActNormForward {
  const T* x;
  T* y;
  T* logdet;  // may be null
  const T* b;
  const T* s;
  int latent;
  VAE_HD void operator()(int64_t r) const {
    T acc = T(0);
    for (int u = 0; u < latent; ++u) {
      y[r * latent + u] = (x[r * latent + u] + b[u]) * hd::exp(s[u]);
      acc += s[u];
    }
    if (logdet) logdet[r] += acc;
  }
};

template <class T>
struct ActNormInverse {
  const T* y;
  T* x;
  const T* b;
  const T* s;
  int latent;
  VAE_HD void operator()(int64_t i) const {
    const int u = static_cast<int>(i % latent);
    x[i] = y[i] * hd::exp(-s[u]) - b[u];
  }
};

template <class T>
struct ActNormInputGrad {
  const T* dy;
  T* dx;
  const T* s;
  int latent;
  VAE_HD void operator()(int64_t i) const { dx[i] = dy[i] * hd::exp(s[i % latent]); }
};

template <class T>
struct ActNormParamGrad {
  const T* dy;
  const T* y;
  const T* s;
  GradWeight<T> wld;
  int rows, latent;
  T* db;
  T* ds;
  VAE_HD void operator()(int64_t u) const {
    T gb = T(0), gs = T(0);
    for (int r = 0; r < rows; ++r) {
      const int64_t i = int64_t(r) * latent + u;
      gb += dy[i];
      gs += dy[i] * y[i] + wld.at(r);
    }
    db[u] = gb * hd::exp(s[u]);
    ds[u] = gs;
  }
};

// ---------------------------------------------------------------------- invertible linear (LU)

template <class T>
struct LuForward {
  const T* x;
  T* y;
  T* t;  // [rows, L] kept for the backward
  T* logdet;
  const T* lu;
  const T* ls;
  int latent;
  VAE_HD void operator()(int64_t r) const {
    const int L = latent;
    const T* xr = x + r * L;
    T* tr = t + r * L;
    T* yr = y + r * L;
    T acc = T(0);
    for (int i = 0; i < L; ++i) {  // t = U x
      T v = hd::exp(ls[i]) * xr[i];
      for (int j = i + 1; j < L; ++j) v += lu[int64_t(i) * L + j] * xr[j];
      tr[i] = v;
      acc += ls[i];
    }
    for (int i = 0; i < L; ++i) {  // y_(L-1-i) = (L t)_i = t_i + sum_{j<i} lu_ij t_j
      T v = tr[i];
      for (int j = 0; j < i; ++j) v += lu[int64_t(i) * L + j] * tr[j];
      yr[L - 1 - i] = v;
    }
    if (logdet) logdet[r] += acc;
  }
};

template <class T>
struct LuInverse {
  const T* y;
  T* x;  // must not alias y
  const T* lu;
  const T* ls;
  int latent;
  VAE_HD void operator()(int64_t r) const {
    const int L = latent;
    const T* yr = y + r * L;
    T* xr = x + r * L;
    // L t = P^T y (forward substitution, unit diagonal): t kept in x.
    for (int i = 0; i < L; ++i) {
      T v = yr[L - 1 - i];
      for (int j = 0; j < i; ++j) v -= lu[int64_t(i) * L + j] * xr[j];
      xr[i] = v;
    }
    // U x = t (back substitution, diagonal e^ls), in place.
    for (int i = L - 1; i >= 0; --i) {
      T v = xr[i];
      for (int j = i + 1; j < L; ++j) v -= lu[int64_t(i) * L + j] * xr[j];
      xr[i] = v * hd::exp(-ls[i]);
    }
  }
};

template <class T>
struct LuInputGrad {
  const T* dy;
  T* dx;
  T* dt;  // [rows, L] kept for the parameter gradients
  const T* lu;
  const T* ls;
  int latent;
  VAE_HD void operator()(int64_t r) const {
    const int L = latent;
    const T* g = dy + r * L;
    T* dtr = dt + r * L;
    T* dxr = dx + r * L;
    // dt = L^T dt2, dt2_i = dy_(L-1-i): dt_j = dt2_j + sum_{i>j} lu_ij dt2_i.
    for (int j = 0; j < L; ++j) {
      T v = g[L - 1 - j];
      for (int i = j + 1; i < L; ++i) v += lu[int64_t(i) * L + j] * g[L - 1 - i];
      dtr[j] = v;
    }
    // dx = U^T dt: dx_j = e^ls_j dt_j + sum_{i<j} lu_ij dt_i.
    for (int j = 0; j < L; ++j) {
      T v = hd::exp(ls[j]) * dtr[j];
      for (int i = 0; i < j; ++i) v += lu[int64_t(i) * L + j] * dtr[i];
      dxr[j] = v;
    }
  }
};

template <class T>
struct LuParamGrad {
  const T* x;   // the layer's input
  const T* t;   // U x, kept by the forward
  const T* dy;  // the upstream
  const T* dt;  // kept by LuInputGrad
  const T* ls;
  GradWeight<T> wld;
  int rows, latent;
  T* dlu;  // [L, L]
  T* dls;  // [L]
  // Items [0, L*L): dlu entries; [L*L, L*L + L): dls.
  VAE_HD void operator()(int64_t item) const {
    const int L = latent;
    if (item >= int64_t(L) * L) {
      const int i = static_cast<int>(item - int64_t(L) * L);
      T g = T(0);
      for (int r = 0; r < rows; ++r) g += dt[int64_t(r) * L + i] * x[int64_t(r) * L + i] * hd::exp(ls[i]) + wld.at(r);
      dls[i] = g;
      return;
    }
    const int i = static_cast<int>(item / L), j = static_cast<int>(item % L);
    T g = T(0);
    if (i > j)
      for (int r = 0; r < rows; ++r) g += dy[int64_t(r) * L + (L - 1 - i)] * t[int64_t(r) * L + j];
    else if (i < j)
      for (int r = 0; r < rows; ++r) g += dt[int64_t(r) * L + i] * x[int64_t(r) * L + j];
    dlu[item] = g;
  }
};

// ----------------------------------------------------------------------------- affine coupling

template <class T>
struct CouplingParams {
  const T* w1;  // [H, d]
  const T* b1;  // [H]
  const T* w2;  // [2m, H]
  const T* b2;  // [2m]
  int latent, hidden;
  VAE_HD int d() const { return latent / 2; }
  VAE_HD int m() const { return latent - latent / 2; }
  // hp [H] and o [2m] for the pass-through half xa.
  VAE_HD void net(const T* xa, T* hp, T* o) const {
    const int D = d(), M2 = 2 * m();
    for (int h = 0; h < hidden; ++h) {
      T v = b1[h];
      for (int i = 0; i < D; ++i) v += w1[int64_t(h) * D + i] * xa[i];
      hp[h] = v;
    }
    for (int j = 0; j < M2; ++j) {
      T v = b2[j];
      for (int h = 0; h < hidden; ++h) v += w2[int64_t(j) * hidden + h] * (hp[h] > T(0) ? hp[h] : T(0));
      o[j] = v;
    }
  }
};

template <class T>
struct CouplingForward {
  CouplingParams<T> p;
  const T* x;
  T* y;
  T* hp;  // [rows, H] kept
  T* o;   // [rows, 2m] kept
  T* logdet;
  VAE_HD void operator()(int64_t r) const {
    const int L = p.latent, D = p.d(), M = p.m();
    const T* xr = x + r * L;
    T* yr = y + r * L;
    T* hr = hp + r * p.hidden;
    T* orow = o + r * 2 * M;
    p.net(xr, hr, orow);
    T acc = T(0);
    for (int i = 0; i < D; ++i) yr[i] = xr[i];
    for (int j = 0; j < M; ++j) {
      const T ls = hd::tanh(orow[j]);
      yr[D + j] = xr[D + j] * hd::exp(ls) + orow[M + j];
      acc += ls;
    }
    if (logdet) logdet[r] += acc;
  }
};

// The inverse keeps nothing: hp and o are per-row scratch the caller provides ([rows, H], [rows, 2m]).
template <class T>
struct CouplingInverse {
  CouplingParams<T> p;
  const T* y;
  T* x;
  T* hp;
  T* o;
  VAE_HD void operator()(int64_t r) const {
    const int L = p.latent, D = p.d(), M = p.m();
    const T* yr = y + r * L;
    T* xr = x + r * L;
    for (int i = 0; i < D; ++i) xr[i] = yr[i];
    p.net(xr, hp + r * p.hidden, o + r * 2 * M);
    const T* orow = o + r * 2 * M;
    for (int j = 0; j < M; ++j) xr[D + j] = (yr[D + j] - orow[M + j]) * hd::exp(-hd::tanh(orow[j]));
  }
};

template <class T>
struct CouplingInputGrad {
  CouplingParams<T> p;
  const T* x;
  const T* dy;
  const T* hp;  // kept by the forward
  const T* o;   // kept by the forward
  GradWeight<T> wld;
  T* dx;
  T* dout;  // [rows, 2m] kept: do
  T* dhp;   // [rows, H] kept
  VAE_HD void operator()(int64_t r) const {
    const int L = p.latent, D = p.d(), M = p.m(), H = p.hidden;
    const T* xr = x + r * L;
    const T* g = dy + r * L;
    const T* hr = hp + r * H;
    const T* orow = o + r * 2 * M;
    T* dor = dout + r * 2 * M;
    T* dhr = dhp + r * H;
    T* dxr = dx + r * L;
    const T w = wld.at(r);
    for (int j = 0; j < M; ++j) {
      const T ls = hd::tanh(orow[j]);
      const T e = hd::exp(ls);
      dor[j] = (g[D + j] * xr[D + j] * e + w) * (T(1) - ls * ls);
      dor[M + j] = g[D + j];
      dxr[D + j] = g[D + j] * e;
    }
    for (int h = 0; h < H; ++h) {
      T v = T(0);
      if (hr[h] > T(0))
        for (int j = 0; j < 2 * M; ++j) v += p.w2[int64_t(j) * H + h] * dor[j];
      dhr[h] = v;
    }
    for (int i = 0; i < D; ++i) {
      T v = g[i];
      for (int h = 0; h < H; ++h) v += p.w1[int64_t(h) * D + i] * dhr[h];
      dxr[i] = v;
    }
  }
};

template <class T>
struct CouplingParamGrad {
  CouplingParams<T> p;
  const T* x;
  const T* hp;
  const T* dout;
  const T* dhp;
  int rows;
  T* dw1;
  T* db1;
  T* dw2;
  T* db2;
  // Items: W1 (H*d), b1 (H), W2 (2m*H), b2 (2m), in that order.
  VAE_HD void operator()(int64_t item) const {
    const int L = p.latent, D = p.d(), M2 = 2 * p.m(), H = p.hidden;
    const int64_t n_w1 = int64_t(H) * D, n_w2 = int64_t(M2) * H;
    T g = T(0);
    if (item < n_w1) {
      const int h = static_cast<int>(item / D), i = static_cast<int>(item % D);
      for (int r = 0; r < rows; ++r) g += dhp[int64_t(r) * H + h] * x[int64_t(r) * L + i];
      dw1[item] = g;
    } else if (item < n_w1 + H) {
      const int h = static_cast<int>(item - n_w1);
      for (int r = 0; r < rows; ++r) g += dhp[int64_t(r) * H + h];
      db1[h] = g;
    } else if (item < n_w1 + H + n_w2) {
      const int64_t k = item - n_w1 - H;
      const int j = static_cast<int>(k / H), h = static_cast<int>(k % H);
      for (int r = 0; r < rows; ++r) {
        const T a = hp[int64_t(r) * H + h];
        g += dout[int64_t(r) * M2 + j] * (a > T(0) ? a : T(0));
      }
      dw2[k] = g;
    } else {
      const int j = static_cast<int>(item - n_w1 - H - n_w2);
      for (int r = 0; r < rows; ++r) g += dout[int64_t(r) * M2 + j];
      db2[j] = g;
    }
  }
};

// ------------------------------------------------------------------------------ entry points

template <class Be, class T>
void actnorm_forward(Be& be, const T* x, int rows, int latent, const T* b, const T* s, T* y, T* logdet) {
  check(rows >= 1 && latent >= 1 && x && y && b && s, "actnorm_forward", "empty shape or null pointer");
  run(be, ActNormForward<T>{x, y, logdet, b, s, latent}, rows);
}
template <class Be, class T>
void actnorm_inverse(Be& be, const T* y, int rows, int latent, const T* b, const T* s, T* x) {
  check(rows >= 1 && latent >= 1 && x && y && b && s, "actnorm_inverse", "empty shape or null pointer");
  run(be, ActNormInverse<T>{y, x, b, s, latent}, int64_t(rows) * latent);
}
// y: the forward's output. db, ds may be null (no parameter gradients: a second pass for z alone).
template <class Be, class T>
void actnorm_backward(Be& be, const T* y, const T* dy, int rows, int latent, const T* s, const GradWeight<T>& wld,
                      T* dx, T* db, T* ds) {
  check(rows >= 1 && latent >= 1 && y && dy && s && dx, "actnorm_backward", "empty shape or null pointer");
  if (db && ds) run(be, ActNormParamGrad<T>{dy, y, s, wld, rows, latent, db, ds}, latent);
  run(be, ActNormInputGrad<T>{dy, dx, s, latent}, int64_t(rows) * latent);
}

// t: [rows, L], kept for the backward.
template <class Be, class T>
void lu_forward(Be& be, const T* x, int rows, int latent, const T* lu, const T* ls, T* y, T* t, T* logdet) {
  check(rows >= 1 && latent >= 1 && x && y && t && lu && ls && x != y, "lu_forward", "empty shape, null pointer or x == y");
  run(be, LuForward<T>{x, y, t, logdet, lu, ls, latent}, rows);
}
template <class Be, class T>
void lu_inverse(Be& be, const T* y, int rows, int latent, const T* lu, const T* ls, T* x) {
  check(rows >= 1 && latent >= 1 && x && y && lu && ls && x != y, "lu_inverse", "empty shape, null pointer or x == y");
  run(be, LuInverse<T>{y, x, lu, ls, latent}, rows);
}
// dt: [rows, L] scratch; dlu, dls null: no parameter gradients.
template <class Be, class T>
void lu_backward(Be& be, const T* x, const T* t, const T* dy, int rows, int latent, const T* lu, const T* ls,
                 const GradWeight<T>& wld, T* dx, T* dt, T* dlu, T* dls) {
  check(rows >= 1 && latent >= 1 && x && t && dy && lu && ls && dx && dt && dx != dy, "lu_backward",
        "empty shape, null pointer or dx == dy");
  run(be, LuInputGrad<T>{dy, dx, dt, lu, ls, latent}, rows);
  if (dlu && dls) run(be, LuParamGrad<T>{x, t, dy, dt, ls, wld, rows, latent, dlu, dls}, int64_t(latent) * latent + latent);
}

template <class Be, class T>
void coupling_forward(Be& be, const CouplingParams<T>& p, const T* x, int rows, T* y, T* hp, T* o, T* logdet) {
  check(rows >= 1 && p.latent >= 2 && p.hidden >= 1 && x && y && hp && o && x != y, "coupling_forward",
        "empty shape, a latent below 2, null pointer or x == y");
  run(be, CouplingForward<T>{p, x, y, hp, o, logdet}, rows);
}
template <class Be, class T>
void coupling_inverse(Be& be, const CouplingParams<T>& p, const T* y, int rows, T* x, T* hp, T* o) {
  check(rows >= 1 && p.latent >= 2 && x && y && hp && o && x != y, "coupling_inverse", "empty shape or null pointer");
  run(be, CouplingInverse<T>{p, y, x, hp, o}, rows);
}
// dout [rows, 2m] and dhp [rows, H] are scratch; dw1 .. db2 null: no parameter gradients.
template <class Be, class T>
void coupling_backward(Be& be, const CouplingParams<T>& p, const T* x, const T* dy, const T* hp, const T* o, int rows,
                       const GradWeight<T>& wld, T* dx, T* dout, T* dhp, T* dw1, T* db1, T* dw2, T* db2) {
  check(rows >= 1 && p.latent >= 2 && x && dy && hp && o && dx && dout && dhp && dx != dy, "coupling_backward",
        "empty shape, null pointer or dx == dy");
  run(be, CouplingInputGrad<T>{p, x, dy, hp, o, wld, dx, dout, dhp}, rows);
  if (dw1 && db1 && dw2 && db2)
    run(be, CouplingParamGrad<T>{p, x, hp, dout, dhp, rows, dw1, db1, dw2, db2},
        int64_t(p.hidden) * p.d() + p.hidden + int64_t(2 * p.m()) * p.hidden + 2 * p.m());
}

}  // namespace vae::ops
