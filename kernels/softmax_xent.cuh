// Softmax cross-entropy over class logits: the loss of the generation-quality classifier.
//   logits [rows, C], y [rows] (float class indices), p = softmax(logits[r])
//   loss[r]   = logsumexp_c logits[r, c] - logits[r, y_r]                                  [rows]
//   correct[r] = [argmax_c logits[r, c] == y_r]  (first maximum; optional)                  [rows]
//   dlogits[r, c] = w_r (p_c - [c == y_r]),  w_r = scale * (dloss ? dloss[r] : 1)  (optional) [rows, C]
// The gradient of sum_r w_r loss[r]; scale = 1 / rows gives the mean loss's. A label outside
// 0..C-1 (or not an integer) gives NaN for its row's loss, correct and dlogits, and reads no logit. One item per row, the
// classes in order: deterministic. Bytes per row: 4C read, 4C written with the gradient, 8 + 4.
#pragma once

#include "for_each.cuh"
#include "hd.cuh"

namespace vae::ops {

template <class T>
struct SoftmaxXent {
  const T* logits;
  const T* y;
  const T* dloss;  // per-row upstream, or null
  T* loss;
  T* correct;  // or null
  T* dlogits;  // or null
  int classes;
  T scale;
  VAE_HD void operator()(int64_t r) const {
    const T* l = logits + r * classes;
    // Labels live on the device (read when the op runs, inside a recorded step too), so the entry
    // point cannot check them: a label that is not a class index in [0, classes) reads nothing and
    // makes the row's loss, correctness and gradient NaN, which the caller's finiteness checks report.
    const T yr = y[r];
    if (!(yr >= T(0) && yr < T(classes)) || yr != T(int(yr))) {
      loss[r] = T(NAN);
      if (correct) correct[r] = T(NAN);
      if (dlogits)
        for (int c = 0; c < classes; ++c) dlogits[r * classes + c] = T(NAN);
      return;
    }
    const int label = int(yr);
    T top = l[0];
    int arg = 0;
    for (int c = 1; c < classes; ++c)
      if (l[c] > top) top = l[c], arg = c;
    T sum = T(0);
    for (int c = 0; c < classes; ++c) sum += hd::exp(l[c] - top);
    const T lse = top + hd::log(sum);
    loss[r] = lse - l[label];
    if (correct) correct[r] = arg == label ? T(1) : T(0);
    if (!dlogits) return;
    const T w = scale * (dloss ? dloss[r] : T(1));
    for (int c = 0; c < classes; ++c) dlogits[r * classes + c] = w * (hd::exp(l[c] - lse) - (c == label ? T(1) : T(0)));
  }
};

template <class Be, class T>
void softmax_xent(Be& be, const T* logits, const T* y, int rows, int classes, T* loss, T* correct, T* dlogits,
                  scalar_t<T> scale, const T* dloss = nullptr) {
  check(rows >= 1 && classes >= 2 && logits && y && loss, "softmax_xent", "empty shape or null pointer");
  run(be, SoftmaxXent<T>{logits, y, dloss, loss, correct, dlogits, classes, scale}, rows);
}

}  // namespace vae::ops
