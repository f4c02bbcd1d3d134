// Column blocks of row-major buffers, for a hierarchy's levels: each level's head or sample is a
// contiguous [rows, cols] buffer, and its columns of the encoder's output (the bottom-up heads), of
// a top-down network's output or of the concatenated z the decoder reads sit at an offset within
// wider rows.
//   copy_columns: dst[r, c] = a[r, c]                              (each side its own row stride)
//   sum_columns:  dst[r, c] = a[r, c] + b[r, c] (+ e[r, c])        (a posterior head from its parts)
//   add_columns:  dst[r, c] += a[r, c]                             (gradients meeting)
// A side is a pointer at its first column and the stride of its rows. One item per element: any
// order gives the same bits. Bytes: 8, 12 (16) and 12 per element.
#pragma once

#include "for_each.cuh"

namespace vae::ops {

template <class T>
struct Columns {
  T* p;
  int64_t stride;
  VAE_HD T& at(int64_t r, int64_t c) const { return p[r * stride + c]; }
};

template <class T>
struct SumColumns {
  Columns<const T> a, b, e;  // e.p may be null
  Columns<T> dst;
  int64_t plane_items;  // cols
  bool add_to_dst;      // dst += a (b and e unused)
  VAE_HD void at(int64_t r, int64_t c) const {
    if (add_to_dst) {
      dst.at(r, c) += a.at(r, c);
      return;
    }
    T v = a.at(r, c);
    if (b.p) v += b.at(r, c);
    if (e.p) v += e.at(r, c);
    dst.at(r, c) = v;
  }
  VAE_HD void operator()(int64_t i) const { at(i / plane_items, i % plane_items); }
};

template <class T>
void check_columns(int rows, int64_t cols, const void* a, const void* dst, const char* op) {
  check(rows >= 0 && cols >= 1 && (rows == 0 || (a && dst)), op, "empty width or null pointer");
}

template <class Be, class T>
void copy_columns(Be& be, Columns<const T> a, Columns<T> dst, int rows, int64_t cols) {
  check_columns<T>(rows, cols, a.p, dst.p, "copy_columns");
  run(be, SumColumns<T>{a, {nullptr, 0}, {nullptr, 0}, dst, cols, false}, int64_t(rows) * cols);
}

template <class Be, class T>
void sum_columns(Be& be, Columns<const T> a, Columns<const T> b, Columns<const T> e, Columns<T> dst, int rows, int64_t cols) {
  check_columns<T>(rows, cols, a.p, dst.p, "sum_columns");
  check(b.p != nullptr, "sum_columns", "needs at least two addends");
  run(be, SumColumns<T>{a, b, e, dst, cols, false}, int64_t(rows) * cols);
}

template <class Be, class T>
void add_columns(Be& be, Columns<const T> a, Columns<T> dst, int rows, int64_t cols) {
  check_columns<T>(rows, cols, a.p, dst.p, "add_columns");
  run(be, SumColumns<T>{a, {nullptr, 0}, {nullptr, 0}, dst, cols, true}, int64_t(rows) * cols);
}

}  // namespace vae::ops
