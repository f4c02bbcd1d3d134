// How the CUDA backend picks among the algorithms a library's heuristic offers, written without
// CUDA headers so that the CPU tests hold the logic (the GPU path has had few runs to prove it).
//
// cuDNN convolutions: the heuristic lists candidates fastest first; we keep the deterministic ones
// whose math type gives the precision the run asked for, each with the workspace it needs, and at
// every call take the first that fits the workspace the caller really has. The workspace is sized
// once, for the largest batch (Sequential::prepare), while the algorithm can change with the batch
// (a short last batch, a larger evaluation batch): without the check cuDNN could be handed a
// workspace smaller than its algorithm writes.
//
// cuBLASLt GEMMs: the heuristic returns several algorithms; a plan tries them in order, and one
// refused at launch (a host-side NOT_SUPPORTED, nothing queued) is skipped for good, so a plan
// falls back instead of failing.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace vae {

// cuDNN's cudnnMathType_t by value (cudnn_conv.cpp checks the values against cudnn.h).
enum class ConvMath : int { Default = 0, TensorOp = 1, TensorOpAllowConversion = 2, Fma = 3 };

// Why an algorithm of this math type is refused for a run with TF32 on or off, or "" if accepted.
//  - TF32 off (strict FP32, --strict-fp32): only FMA math, as the GEMMs' CUBLAS_COMPUTE_32F.
//  - TF32 on: FMA, default and tensor-op math (TF32 tensor cores on FP32 data), but never
//    TensorOpAllowConversion, which converts FP32 data to FP16 (cuDNN's "FP32-to-FP16 conversion"):
//    the same 10-bit mantissa as TF32 but a 5-bit exponent, so activations over 65504 overflow and
//    small gradients flush to zero. TF32 keeps FP32's range; FP16 conversion is not what TF32 promises.
inline std::string conv_math_refusal(ConvMath math, bool tf32) {
  if (math == ConvMath::TensorOpAllowConversion)
    return "converts FP32 data to FP16 (FP16's range, not TF32's), which no run of ours asks for";
  if (!tf32 && math != ConvMath::Fma) return "uses tensor cores (TF32), and this run asked for strict FP32";
  return "";
}

// One algorithm the heuristic offered, as cuDNN describes it.
struct ConvCandidate {
  int algo = 0;
  ConvMath math = ConvMath::Default;
  bool succeeded = true;      // the heuristic's status for it was SUCCESS
  bool deterministic = true;  // CUDNN_DETERMINISTIC
  size_t workspace_bytes = 0;
};

// The candidates we may run, in the heuristic's order: succeeded, deterministic, an accepted math.
inline std::vector<ConvCandidate> usable_conv_candidates(const std::vector<ConvCandidate>& offered, bool tf32) {
  std::vector<ConvCandidate> out;
  for (const ConvCandidate& c : offered)
    if (c.succeeded && c.deterministic && conv_math_refusal(c.math, tf32).empty()) out.push_back(c);
  return out;
}

// The first usable candidate whose workspace fits `available` bytes, or null.
inline const ConvCandidate* first_fitting(const std::vector<ConvCandidate>& usable, size_t available) {
  for (const ConvCandidate& c : usable)
    if (c.workspace_bytes <= available) return &c;
  return nullptr;
}

// Runs attempt(i) for candidates i = next, next + 1, ... < count until one returns true, and
// returns that index; candidates refused on the way are passed over for good (next moves past them),
// so a refusal is paid once per plan. Returns -1 (next == count) when every candidate was refused.
template <class Attempt>
int first_accepted(int& next, int count, Attempt&& attempt) {
  for (; next < count; ++next)
    if (attempt(next)) return next;
  return -1;
}

}  // namespace vae
