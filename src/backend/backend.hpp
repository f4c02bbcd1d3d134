// The Backend interface: every operation the graph, the trainer and the evaluator use.
// All pointers address memory on the backend's device; shapes are row-major [rows, cols].
// The CPU implementation (cpu/) is the reference; a CUDA implementation must agree with it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "vae/tensor.hpp"
#include "vae_math.cuh"

namespace vae {

// The values of one training step that change from step to step. The trainer writes a table of
// them per epoch into the backend's memory, and select_step copies the current entry into a fixed
// record that the step's operations read when they run (not when they are queued). That is what
// lets one captured CUDA graph replay every step of a run: no kernel argument changes.
struct StepScalars {
  uint64_t philox_step = 0;       // counter word of this step's binarization and latent noise
  int64_t row0 = 0;               // first position of the batch in the epoch's permutation
  float beta = 1.0f;              // KL weight in the loss
  float kl_grad_weight = 0.0f;    // beta / rows: the KL term's weight in the gradient
  float capacity = 0.0f;          // the capacity objective's C at this step (nats)
  math::AdamCoefficients adam{};  // learning rate and bias corrections of this step (grad_scale unused)
};

// Where the reparameterisation noise for a batch comes from: element (r, c) uses Philox counter
// (c/4, row0 + r, step, kStreamLatent) under seed. eps_scale 0 gives z = mu (posterior mean).
struct LatentArgs {
  int rows = 0;
  int latent = 0;
  uint64_t seed = 0;
  uint64_t step = 0;
  int64_t row0 = 0;
  float eps_scale = 1.0f;
  // When set, step (and in the backward pass kl_weight) come from *per_step when the kernel runs.
  const StepScalars* per_step = nullptr;
};

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
  // Per-channel bias of an NCHW tensor [n, c, hw]: y[n,c,:] += b[c]; db[c] = sum over n and hw of dy[n,c,:]
  // (n in order, each image's hw in order: the same order on every backend and thread count).
  virtual void channel_bias_add(const float* b, float* y, int n, int c, int hw) = 0;
  virtual void channel_bias_grad(const float* dy, float* db, int n, int c, int hw) = 0;

  virtual void activation_forward(math::Act act, float slope, const float* x, float* y, int64_t n) = 0;
  // dx = dy * act'(x)
  virtual void activation_backward(math::Act act, float slope, const float* x, const float* dy,
                                   float* dx, int64_t n) = 0;

  // h[rows, 2L] = [mu | raw logvar]; logvar = soft_clamp(raw). z = mu + eps_scale*exp(lv/2)*eps,
  // kl_sample[rows] = sum_u KL_u, kl_dim[L] = sum over rows of KL_u.
  virtual void latent_sample_kl_forward(const LatentArgs& a, const float* h, float* z, float* kl_sample,
                                        float* kl_dim) = 0;
  // dh from dz and the KL gradient scaled by kl_weight (beta / batch); recomputes eps.
  virtual void latent_sample_kl_backward(const LatentArgs& a, const float* h, const float* dz,
                                         float kl_weight, float* dh) = 0;

  // nll[rows] = sum_d -log p(x|logits); dlogits = grad_scale * d nll / d logits (skipped when null).
  virtual void bernoulli_nll(const float* logits, const float* x, float* nll, float* dlogits, int rows,
                             int d, float grad_scale) = 0;
  // Gaussian with per-pixel raw log-sigma (soft-clamped; null = fixed_log_sigma for every pixel).
  // dlog_sigma[d] (sum over rows, scaled) is written when both it and log_sigma_raw are non-null.
  virtual void gaussian_nll(const float* mean, const float* x, const float* log_sigma_raw,
                            float fixed_log_sigma, float* nll, float* dmean, float* dlog_sigma, int rows,
                            int d, float grad_scale) = 0;

  // out[0] = mean(nll + beta*kl), out[1] = mean(nll), out[2] = mean(kl); a fixed summation order.
  // beta comes from per_step when that is set.
  virtual void loss_reduce(const float* nll, const float* kl, int rows, float beta, const StepScalars* per_step,
                           float* out) = 0;
  // dst[i] += scale * src[i]: epoch sums of the loss parts stay on the device between reads. Adds
  // nothing when any src[i] is not finite: a skipped step's loss stays out of the sums.
  virtual void accumulate_scaled(const float* src, int n, float scale, float* dst) = 0;

  // Global-norm clipping (when a.clip_norm > 0) and one Adam/AdamW step over a flat buffer.
  // Writes the pre-clipping gradient norm to grad_norm_out. When per_step is set, the learning rate
  // and bias corrections are per_step->adam (read when the step runs) instead of a's. With an active
  // guard, a step whose loss or gradient norm is not finite changes nothing but the guard's count.
  virtual void adam_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamArgs& a,
                         const StepScalars* per_step, float* grad_norm_out, const StepGuard& guard) = 0;

  // x[r, :] = images[index[r], :] / 255, or Bernoulli draws of it when binarize. The draw for pixel c
  // of image i uses Philox counter (c/4, i, step, stream): it depends on the image, not on where the
  // image sits in the batch, so a repeated index gets the same binary image. When per_step is set,
  // the rows are index[per_step->row0 ...] and step is per_step->philox_step.
  virtual void gather_pixels(const uint8_t* images, const int32_t* index, int rows, int d, bool binarize,
                             uint64_t seed, uint32_t stream, uint64_t step, const StepScalars* per_step,
                             float* x) = 0;

  // For each data row b and sample j (row b*k + j): z = mu + sigma*eps with eps from Philox
  // (c/4, row0 + b, sample0 + j, kStreamImportance), and log p(z) - log q(z|x) per row.
  virtual void latent_importance_sample(const float* h, float* z, float* log_pz_minus_qz, int rows, int k,
                                        int latent, uint64_t seed, int64_t row0, int64_t sample0) = 0;
  // Streaming log-sum-exp over j of the log weights log_pz_minus_qz[b*k+j] - nll[b*k+j] into
  // (running_max[b], running_sum[b]): afterwards log sum_j w = max + log(sum).
  virtual void logsumexp_accumulate(const float* log_pz_minus_qz, const float* nll, int rows, int k,
                                    float* running_max, float* running_sum) = 0;

  // y = sigmoid(x) and y = clamp(x, 0, 1); both may run in place (x == y).
  virtual void sigmoid(const float* x, float* y, int64_t n) = 0;
  virtual void clamp01(const float* x, float* y, int64_t n) = 0;
  // z[rows, cols] = scale * N(0, 1) from Philox (c/4, r, step, stream).
  virtual void normal_fill(float* z, int rows, int cols, float scale, uint64_t seed, uint32_t stream,
                           uint64_t step) = 0;
  virtual void fill(float* x, int64_t n, float value) = 0;

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
