// The class condition of a conditional VAE (and the labels of the quality classifier), around the
// networks. Labels live on the device as float class indices (exact below 2^24), so one gathered
// label buffer serves the condition and the classifier's loss alike.
//   gather_labels:    y[r] = labels[index[row0 + r]]            (row0 from the step record when given)
//   append_condition: out[r, :cols] = x[r, :]
//                     out[r, cols + c * plane + p] = [y[r / repeat] == c],  c < classes, p < plane
//                     plane 1 appends a one-hot vector (MLP input, decoder input); plane H*W appends
//                     one constant plane per class ([C, H, W] becomes [C + classes, H, W], conv input)
//   take_columns:     out[r, c] = x[r * stride + c], c < cols   (the gradient of append_condition,
//                     and the latent's part of the decoder's input gradient)
// One item per output element: any order gives the same bits. Bytes: gather 12 per row;
// append_condition 4 per input element read, 4 per output element written (+4 per row);
// take_columns 8 per output element.
#pragma once

#include <cstdint>

#include "for_each.cuh"

namespace vae::ops {

template <class T>
struct GatherLabels {
  const int32_t* labels;
  const int32_t* index;
  const StepScalars* per_step;  // null: index is the batch's own
  T* y;
  VAE_HD void operator()(int64_t r) const {
    const int64_t first = permutation_offset_of(per_step);
    y[r] = T(labels[index[first + r]]);
  }
};

template <class T>
struct AppendCondition {
  const T* x;
  const T* y;
  T* out;
  int64_t cols, width;  // width = cols + classes * plane
  int64_t plane;
  int repeat;
  VAE_HD void operator()(int64_t i) const {
    const int64_t r = i / width, c = i % width;
    if (c < cols) {
      out[i] = x[r * cols + c];
      return;
    }
    const int64_t cls = (c - cols) / plane;
    out[i] = int64_t(y[r / repeat]) == cls ? T(1) : T(0);
  }
};

template <class T>
struct TakeColumns {
  const T* x;
  T* out;
  int64_t stride, cols;
  VAE_HD void operator()(int64_t i) const { out[i] = x[(i / cols) * stride + i % cols]; }
};

template <class Be, class T>
void gather_labels(Be& be, const int32_t* labels, const int32_t* index, int rows, const StepScalars* per_step, T* y) {
  check(rows >= 1 && labels && index && y, "gather_labels", "empty shape or null pointer");
  run(be, GatherLabels<T>{labels, index, per_step, y}, rows);
}

template <class Be, class T>
void append_condition(Be& be, const T* x, const T* y, int rows, int64_t cols, int classes, int64_t plane, int repeat,
                      T* out) {
  check(rows >= 1 && cols >= 1 && classes >= 1 && plane >= 1 && repeat >= 1 && x && y && out, "append_condition",
        "empty shape or null pointer");
  const int64_t width = cols + int64_t(classes) * plane;
  run(be, AppendCondition<T>{x, y, out, cols, width, plane, repeat}, int64_t(rows) * width);
}

template <class Be, class T>
void take_columns(Be& be, const T* x, int rows, int64_t stride, int64_t cols, T* out) {
  check(rows >= 1 && cols >= 1 && stride >= cols && x && out, "take_columns", "bad shape or null pointer");
  run(be, TakeColumns<T>{x, out, stride, cols}, int64_t(rows) * cols);
}

}  // namespace vae::ops
