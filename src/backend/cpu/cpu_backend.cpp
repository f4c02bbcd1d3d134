// The CPU backend: the float instantiation of cpu_ops.hpp plus the operations that need no template.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cpu/cpu_conv.hpp"
#include "backend/cpu/cpu_ops.hpp"
#include "vae/error.hpp"
#ifdef VAE_WITH_ONEDNN
#include <cstdlib>

#include "backend/cpu/onednn_conv.hpp"
#include "backend/cpu/onednn_matmul.hpp"
#endif

namespace vae {
namespace {

// Sum of squares in fixed 16K-element chunks (double inside a chunk, chunks added in order), so
// the result does not depend on how many threads ran.
double sum_of_squares(const float* g, int64_t n) {
  constexpr int64_t kChunk = 16384;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    double s = 0;
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i) s += static_cast<double>(g[i]) * g[i];
    partial[static_cast<size_t>(c)] = s;
  }
  double total = 0;
  for (double s : partial) total += s;
  return total;
}

class CpuBackend final : public Backend {
#ifdef VAE_WITH_ONEDNN
  // The linear layers' forward (bias and ReLU fused as post-ops) and input gradient through oneDNN's
  // matmul, and every weight gradient (dy^T x, a reduction over the batch with both operands
  // transposed) through OpenBLAS: per op, the faster of the two on the default MLP's layers
  // (bench/cpu-fast-path.md: BM_CpuLinearAB, both libraries call by call, oneDNN 1.02-1.17x on the
  // forward and input gradient from 128 to 8000 rows on a quiet AVX2 machine; BM_CpuLinear, the
  // weight gradient mostly slower through oneDNN 2.6's JIT sgemm).
  // VAE_CPU_MATMUL=openblas runs everything through OpenBLAS and VAE_CPU_MATMUL=onednn everything
  // through oneDNN, for side-by-side measurement.
  std::unique_ptr<cpu::OneDnnMatmul> onednn_;
  bool onednn_everywhere_ = false;
  void choose_matmul() {
    const char* v = std::getenv("VAE_CPU_MATMUL");
    const std::string mode = v ? v : "";
    if (mode != "openblas") onednn_ = std::make_unique<cpu::OneDnnMatmul>();
    onednn_everywhere_ = mode == "onednn";
  }
  bool onednn_for(int /*rows*/) const { return onednn_ != nullptr; }
#else
  static constexpr bool onednn_everywhere_ = false;
  void choose_matmul() {}
  bool onednn_for(int /*rows*/) const { return false; }
  struct NoOneDnn {
    void forward(const float*, const float*, const float*, float*, int, int, int, bool) {}
    void input_grad(const float*, const float*, float*, int, int, int) {}
    void weight_grad(const float*, const float*, float*, int, int, int) {}
  };
  std::unique_ptr<NoOneDnn> onednn_;
#endif

#ifdef VAE_WITH_ONEDNN
  // Convolutions through oneDNN's primitives (onednn_conv.hpp) or our im2col + GEMM (cpu_conv.hpp),
  // per operation and geometry, as measured (BM_CpuConvAB, bench/cpu-fast-path.md, AVX2): oneDNN's
  // blocked JIT kernels are 1.0-2.4x faster on every forward and backward-data call of the conv VAE
  // from 32 to 1024 images, but its weight gradient of a layer with a 1-channel input (the first
  // conv, the last transposed conv) runs at 11 GFLOP/s, 1.5-3.5x slower than im2col: the blocked
  // kernels vectorize over input channels, and a first layer has one. So the weight gradient of a
  // layer with fewer than 8 input channels (AVX2's block) stays on im2col.
  // VAE_CPU_CONV=im2col or =onednn puts every convolution on one path, for side-by-side measurement.
  using ConvOp = cpu::OneDnnConv::Op;
  std::unique_ptr<cpu::OneDnnConv> onednn_conv_;
  enum class ConvRule { Measured, Im2col, OneDnn } conv_rule_ = ConvRule::Measured;
  void choose_conv() {
    const char* v = std::getenv("VAE_CPU_CONV");
    const std::string mode = v ? v : "";
    conv_rule_ = mode == "im2col" ? ConvRule::Im2col : mode == "onednn" ? ConvRule::OneDnn : ConvRule::Measured;
    if (conv_rule_ != ConvRule::Im2col) onednn_conv_ = std::make_unique<cpu::OneDnnConv>();
  }
  bool conv_through_onednn(ConvOp op, const ConvGeometry& g) const {
    if (conv_rule_ != ConvRule::Measured) return conv_rule_ == ConvRule::OneDnn;
    const bool weight_gradient = op == ConvOp::BackwardWeights || op == ConvOp::BackwardWeightsBias;
    return !(weight_gradient && g.c < 8);
  }
  size_t onednn_conv_workspace_bytes(const ConvGeometry& g, bool& im2col_too) {
    size_t bytes = 0;
    for (ConvOp op : {ConvOp::Forward, ConvOp::ForwardBias, ConvOp::BackwardData, ConvOp::BackwardWeights,
                      ConvOp::BackwardWeightsBias}) {
      if (conv_through_onednn(op, g)) bytes = std::max(bytes, onednn_conv_->workspace_bytes(op, g));
      else im2col_too = true;
    }
    return bytes;
  }
#else
  enum class ConvOp { Forward, ForwardBias, BackwardData, BackwardWeights, BackwardWeightsBias };
  void choose_conv() {}
  bool conv_through_onednn(ConvOp, const ConvGeometry&) const { return false; }
  size_t onednn_conv_workspace_bytes(const ConvGeometry&, bool& im2col_too) {
    im2col_too = true;
    return 0;
  }
  struct NoOneDnnConv {
    void forward(const ConvGeometry&, const float*, const float*, const float*, float*, Workspace) {}
    void backward_data(const ConvGeometry&, const float*, const float*, float*, Workspace) {}
    void backward_weights(const ConvGeometry&, const float*, const float*, float*, float*, Workspace) {}
  };
  std::unique_ptr<NoOneDnnConv> onednn_conv_;
#endif

  // The workspace of one call, after checking that it holds conv_workspace_bytes(g), whichever path
  // the call takes: a smaller one would be written past its end.
  float* checked_workspace(const ConvGeometry& g, Workspace ws, const char* op) {
    const size_t need = conv_workspace_bytes(g);
    if (ws.bytes < need || !ws.data)
      throw Error(std::string(op) + ": the workspace holds " + std::to_string(ws.bytes) + " bytes, and this " +
                  std::to_string(g.n) + "-image convolution needs " + std::to_string(need) +
                  " (size it with conv_workspace_bytes for the largest batch, as Sequential::prepare does)");
    return static_cast<float*>(ws.data);
  }

 public:
  CpuBackend() {
    choose_matmul();
    choose_conv();
  }
  Device device() const override { return Device::CPU; }

  void linear_forward(const float* x, const float* w, const float* b, float* y, int rows, int in,
                      int out) override {
    if (onednn_for(rows)) return onednn_->forward(x, w, b, y, rows, in, out, false);
    cpu::linear_forward(x, w, b, y, rows, in, out);
  }
  void linear_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                       int rows, int in, int out) override {
    if (!onednn_for(rows)) return cpu::linear_backward(x, w, dy, dx, dw, db, rows, in, out);
    if (onednn_everywhere_) onednn_->weight_grad(dy, x, dw, rows, in, out);
    else cpu::gemm<float>(true, false, out, in, rows, 1.0f, dy, out, x, in, 0.0f, dw, in);
    if (db) cpu::column_sums(dy, db, rows, out);
    if (dx) onednn_->input_grad(dy, w, dx, rows, in, out);
  }
  bool linear_relu_forward(const float* x, const float* w, const float* b, float* y, void* /*relu_mask*/, int rows,
                           int in, int out) override {
    if (onednn_for(rows)) onednn_->forward(x, w, b, y, rows, in, out, true);
    else cpu::linear_relu_forward(x, w, b, y, rows, in, out);
    return false;
  }
  void linear_relu_input_backward(const float* w, const float* dy, const float* a, const void* /*relu_mask*/,
                                  float* dpre, float* dbias, int rows, int in, int out) override {
    if (!onednn_for(rows)) return cpu::linear_relu_input_backward(w, dy, a, dpre, dbias, rows, in, out);
    onednn_->input_grad(dy, w, dpre, rows, in, out);
    cpu::relu_mask_column_sums(a, dpre, dbias, rows, in);
  }
  size_t conv_workspace_bytes(const ConvGeometry& g) override {
    g.check("conv");
    bool im2col = false;
    const size_t onednn = onednn_conv_workspace_bytes(g, im2col);
    if (!im2col) return onednn;
    const int64_t rows = static_cast<int64_t>(g.n) * g.oh() * g.ow();
    if (rows > std::numeric_limits<int>::max() || static_cast<int64_t>(g.c) * g.kh * g.kw > std::numeric_limits<int>::max())
      throw Error("conv: " + std::to_string(rows) + " output positions in one batch is more than the CPU GEMM takes; "
                  "use a smaller --batch");
    return std::max(onednn, sizeof(float) * static_cast<size_t>(cpu::conv_workspace_elements(g)));
  }
  void conv_forward(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
                    Workspace ws) override {
    float* columns = checked_workspace(g, ws, "conv_forward");
    if (conv_through_onednn(b ? ConvOp::ForwardBias : ConvOp::Forward, g)) return onednn_conv_->forward(g, x, w, b, y, ws);
    cpu::conv_forward(g, x, w, b, y, columns);
  }
  void conv_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx, Workspace ws) override {
    float* columns = checked_workspace(g, ws, "conv_backward_data");
    if (conv_through_onednn(ConvOp::BackwardData, g)) return onednn_conv_->backward_data(g, dy, w, dx, ws);
    cpu::conv_backward_data(g, dy, w, dx, columns);
  }
  void conv_backward_filter(const ConvGeometry& g, const float* x, const float* dy, float* dw, float* db,
                            Workspace ws) override {
    float* columns = checked_workspace(g, ws, "conv_backward_filter");
    if (conv_through_onednn(db ? ConvOp::BackwardWeightsBias : ConvOp::BackwardWeights, g))
      return onednn_conv_->backward_weights(g, x, dy, dw, db, ws);
    cpu::conv_backward_filter(g, x, dy, dw, db, columns);
  }
  void select_step(const StepScalars* table, int64_t count, int64_t* cursor, StepScalars* current) override {
    if (*cursor < 0 || *cursor >= count)
      throw Error("select_step: step " + std::to_string(*cursor) + " is outside the table of " + std::to_string(count));
    *current = table[*cursor];
    ++*cursor;
  }
  void loss_reduce(const float* nll, const float* kl, int rows, const StepScalars* step, float* out) override {
    if (rows < 1 || !nll || !kl || !step || !out) throw Error("loss_reduce: empty shape or null pointer");
    const float beta = step->beta;
    double sn = 0, sk = 0;
    for (int r = 0; r < rows; ++r) {
      sn += nll[r];
      sk += kl[r];
    }
    out[0] = static_cast<float>((sn + static_cast<double>(beta) * sk) / rows);
    out[1] = static_cast<float>(sn / rows);
    out[2] = static_cast<float>(sk / rows);
  }
  void adam_step(float* p, const float* g, float* m, float* v, int64_t n, float clip_norm, const StepScalars* step,
                 float* grad_norm_out, const StepGuard& guard) override {
    if (n < 1 || !p || !g || !m || !v || !step) throw Error("adam_step: empty buffer or null pointer");
    const double norm = std::sqrt(sum_of_squares(g, n));
    if (grad_norm_out) *grad_norm_out = static_cast<float>(norm);
    if (guard.active() && !(std::isfinite(norm) && std::isfinite(*guard.loss))) {
      *guard.skipped_steps += 1.0f;
      return;
    }
    math::AdamCoefficients c = step->adam;
    // PyTorch's clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
    c.grad_scale = (clip_norm > 0 && norm > clip_norm) ? static_cast<float>(clip_norm / (norm + 1e-6)) : 1.0f;
    // The four buffers never overlap (the optimizer's own parameter, gradient and moment buffers):
    // said with restrict and simd, and with each thread's own copy of the coefficients, the update
    // vectorizes. Each element goes through the same IEEE
    // operations in a lane as in scalar code (elements do not mix), so the bits do not change.
    float* __restrict pr = p;
    const float* __restrict gr = g;
    float* __restrict mr = m;
    float* __restrict vr = v;
#pragma omp parallel
    {
      const math::AdamCoefficients local = c;  // in registers: its tests are loop invariants
#pragma omp for simd schedule(static)
      for (int64_t i = 0; i < n; ++i) math::adam_update(pr[i], gr[i], mr[i], vr[i], local);
    }
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace vae
