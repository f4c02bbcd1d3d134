// The Backend interface: every operation the graph, the trainer and the evaluator use.
// All pointers address memory on the backend's device; shapes are row-major [rows, cols].
// The CPU implementation (cpu/) is the reference; a CUDA implementation must agree with it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "step_scalars.cuh"
#include "vae/tensor.hpp"
#include "vae_math.cuh"

namespace vae {

// The shape of one 2-D convolution: input [n, c, h, w], weight [k, c, kh, kw], output [n, k, oh, ow]
// with oh = (h + 2*pad - kh) / stride + 1 (and ow alike), the same stride and zero padding both ways.
struct ConvGeometry {
  int n = 0, c = 0, h = 0, w = 0;  // input
  int k = 0, kh = 0, kw = 0;       // output channels, kernel
  int stride = 1, pad = 0;
  int oh() const { return (h + 2 * pad - kh) / stride + 1; }
  int ow() const { return (w + 2 * pad - kw) / stride + 1; }
  bool operator==(const ConvGeometry&) const = default;
  // Throws vae::Error naming `who` unless every size is positive and the kernel fits the padded input.
  void check(const char* who) const;
};

// Backend memory a convolution may use as scratch, with its real size: an algorithm chosen for one
// batch size may need more than the workspace sized in prepare for another, so every call says how
// much it has and the backend checks (the CPU) or chooses within it (cuDNN).
struct Workspace {
  void* data = nullptr;
  size_t bytes = 0;
};

struct AdamArgs {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
  bool decoupled = false;   // AdamW
  int64_t step = 1;         // 1-based step count for bias correction
  float clip_norm = 0.0f;   // global-norm clipping threshold; 0 = off
};

// The divergence guard of a training step, in the backend's memory. When either the step's loss
// (*loss) or its gradient norm is not finite, adam_step leaves the parameters and moments as they
// are and adds 1 to *skipped_steps; decided on the device, so a recorded step needs no host check.
struct StepGuard {
  const float* loss = nullptr;     // the step's total loss (loss_reduce's out[0])
  float* skipped_steps = nullptr;  // incremented per skipped step
  VAE_HD bool active() const { return loss != nullptr && skipped_steps != nullptr; }
};

// Numerics switches. The CPU backend has one numerics and ignores them.
struct BackendOptions {
  bool tf32 = true;             // CUDA: TF32 tensor-core math in GEMMs; false = strict FP32
  bool fused_epilogues = true;  // CUDA: bias, ReLU and their gradients in the cuBLASLt GEMM when possible
};

// The per-step constants of Adam for a.step (bias corrections folded into step_size and
// inv_sqrt_bc2, in double before rounding); grad_scale is left at 1 for the caller's clipping.
math::AdamCoefficients adam_coefficients(const AdamArgs& a);

// Queued work recorded once and replayed. On CUDA, Backend::capture records what `enqueue` queues
// on the backend's stream into a CUDA graph and replay() launches the graph: one launch for the
// whole sequence, with every kernel argument fixed at capture time. On the CPU, replay() runs
// `enqueue` again.
class RecordedWork {
 public:
  virtual ~RecordedWork() = default;
  virtual void replay() = 0;
};

// Copies n floats from the backend's memory to the host without blocking: start() queues the copy
// behind the work already queued, ready() says whether it has landed, wait() blocks until it has
// and returns the values. On the CPU the copy is made in start().
class HostReadback {
 public:
  virtual ~HostReadback() = default;
  virtual void start(const float* src) = 0;
  virtual bool ready() = 0;
  virtual const float* wait() = 0;
};

// What differs between devices: memory and streams, recording and readback, the GEMMs, the
// convolutions, the optimizer, the step table and the loss reduction. Every other operation is
// written once as a functor (kernels/for_each.cuh) and runs on either device through ops::run.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  // The CUDA stream work is queued on (a cudaStream_t), for ops written once (kernels/for_each.cuh);
  // null on the CPU.
  virtual void* native_stream() { return nullptr; }
  virtual void set_options(const BackendOptions& /*options*/) {}
  // Waits for all work queued on the backend (no-op on the CPU). Not allowed while recording.
  void synchronize();
  // Records the work `enqueue` queues (see RecordedWork). Nothing may allocate, copy between host
  // and device or synchronise inside `enqueue` (recording_guard.hpp checks it, on every backend).
  // The CPU's recording just keeps `enqueue`.
  virtual std::unique_ptr<RecordedWork> capture(std::function<void()> enqueue);
  // A readback of n >= 1 floats (see HostReadback).
  std::unique_ptr<HostReadback> make_readback(int n);

  // *current = table[*cursor]; ++*cursor; cursor must be below count (all in the backend's memory).
  virtual void select_step(const StepScalars* table, int64_t count, int64_t* cursor, StepScalars* current) = 0;

  // y[rows,out] = x[rows,in] W[out,in]^T + b[out]
  virtual void linear_forward(const float* x, const float* w, const float* b, float* y, int rows,
                              int in, int out) = 0;
  // dW = dy^T x, db = column sums of dy, dx = dy W. Overwrites dW and db; db (when the bias
  // gradient came from linear_relu_input_backward) and dx (the first layer) may be null.
  virtual void linear_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                               float* db, int rows, int in, int out) = 0;
  // A linear layer followed by ReLU, the pair the CUDA backend runs as one cuBLASLt GEMM with a
  // RELU_AUX_BIAS epilogue: y[rows,out] = max(0, x W^T + b). relu_mask is backend memory of
  // relu_mask_bytes(rows, out) bytes (null when that is 0) where the backend may keep a bit-mask of
  // y > 0 for linear_relu_input_backward; returns whether it wrote one.
  virtual size_t relu_mask_bytes(int /*rows*/, int /*out*/) const { return 0; }
  virtual bool linear_relu_forward(const float* x, const float* w, const float* b, float* y, void* relu_mask,
                                   int rows, int in, int out) = 0;
  // The input gradient of a linear layer whose input a[rows,in] is a ReLU's output, taken through
  // that ReLU, with the bias gradient of the layer below it (a DRELU_BGRAD epilogue on CUDA):
  //   dpre[rows,in] = (dy W) * (a > 0),  dbias[in] = column sums of dpre.
  // relu_mask: the bit-mask linear_relu_forward wrote for a, or null.
  virtual void linear_relu_input_backward(const float* w, const float* dy, const float* a, const void* relu_mask,
                                          float* dpre, float* dbias, int rows, int in, int out) = 0;
  // A 2-D convolution (cross-correlation, as PyTorch's Conv2d) over NCHW float32, in three parts:
  //   forward:          y[n,k,oy,ox] = b[k] + sum_{c,i,j} w[k,c,i,j] x[n,c,oy*s-p+i,ox*s-p+j]
  //   backward_data:    dx = the adjoint of forward in x (zero padding dropped); also ConvTranspose2d's forward
  //   backward_filter:  dw[k,c,i,j] = sum_{n,oy,ox} dy[n,k,oy,ox] x[n,c,..], db[k] = sum_{n,oy,ox} dy[n,k,oy,ox]
  // Each overwrites its output (b and db may be null). The workspace is backend memory, sized once
  // in prepare from conv_workspace_bytes (the largest batch's request): the calls allocate nothing,
  // so a step that holds them can be recorded. On CUDA they are cuDNN's: per geometry, the first
  // deterministic algorithm (fastest first) whose workspace fits ws.bytes, an error if none does.
  // The CPU needs at least conv_workspace_bytes(g) and throws otherwise.
  virtual size_t conv_workspace_bytes(const ConvGeometry& g) = 0;
  virtual void conv_forward(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
                            Workspace ws) = 0;
  virtual void conv_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx,
                                  Workspace ws) = 0;
  virtual void conv_backward_filter(const ConvGeometry& g, const float* x, const float* dy, float* dw, float* db,
                                    Workspace ws) = 0;
  // out[0] = mean(nll + beta*kl), out[1] = mean(nll), out[2] = mean(kl); a fixed summation order;
  // beta is the step record's (step_record.hpp), read when the work runs.
  virtual void loss_reduce(const float* nll, const float* kl, int rows, const StepScalars* step, float* out) = 0;

  // Global-norm clipping (when clip_norm > 0) and one Adam/AdamW step over a flat buffer, with the
  // learning rate, moments' decay and bias corrections of step->adam (adam_coefficients), read when
  // the step runs. Writes the pre-clipping gradient norm to grad_norm_out. With an active guard, a
  // step whose loss or gradient norm is not finite changes nothing but the guard's count.
  virtual void adam_step(float* p, const float* g, float* m, float* v, int64_t n, float clip_norm,
                         const StepScalars* step, float* grad_norm_out, const StepGuard& guard) = 0;


 protected:
  // synchronize's backend part.
  virtual void wait_idle() {}
  // make_readback's backend part, n already checked. The CPU's copies in start().
  virtual std::unique_ptr<HostReadback> new_readback(int n);
};

std::unique_ptr<Backend> make_backend(Device device);
std::unique_ptr<Backend> make_cpu_backend();
std::unique_ptr<Backend> make_cuda_backend();  // only in builds with VAE_WITH_CUDA

}  // namespace vae
