#include <cmath>

#include "model/model_impl.hpp"
#include "model/networks.hpp"
#include "vae/error.hpp"
#include "vae/model.hpp"

namespace vae {

ModelImpl::ModelImpl(const ModelConfig& cfg, Device dev)
    : config(cfg), device(dev), backend(make_backend(dev)), latent_block(cfg) {
  config.validate();
  const int d = config.input_dim();
  build_networks(config, encoder, decoder);

  int64_t end = encoder.layout(0);
  end = decoder.layout(end);
  end = latent_block.prior().layout(end);
  if (config.likelihood == Likelihood::Gaussian && config.learned_sigma) {
    log_sigma_offset = align_params(end);
    end = log_sigma_offset + d;
  }
  const int64_t total = align_params(end);
  encoder.param_slices("encoder.", slices);
  decoder.param_slices("decoder.", slices);
  latent_block.prior().param_slices(slices);
  if (log_sigma_offset >= 0) slices.push_back({"likelihood.log_sigma", log_sigma_offset, {d}});

  params = Tensor::zeros({total}, device);
  grads = Tensor::zeros({total}, device);
  encoder.bind(params.data(), grads.data());
  decoder.bind(params.data(), grads.data());
  latent_block.prior().bind(params.data(), grads.data());
}

void ModelImpl::check_image_size(const ImageSet& set, const char* which) const {
  if (set.channels != config.image_channels || set.height != config.image_height || set.width != config.image_width)
    throw Error(std::string(which) + " images are " + std::to_string(set.channels) + "x" + std::to_string(set.height) +
                "x" + std::to_string(set.width) + " (channels x height x width) but the model expects " +
                std::to_string(config.image_channels) + "x" + std::to_string(config.image_height) + "x" +
                std::to_string(config.image_width));
}

void ModelImpl::prepare(int rows) {
  if (rows < 1) throw Error("batch must have at least one row");
  encoder.prepare(rows, *backend);
  decoder.prepare(rows, *backend);
  latent_block.prior().prepare(rows, device);
  if (rows <= capacity) return;
  const int L = latent(), d = input_dim();
  z = Tensor({rows, L}, device);
  dz = Tensor({rows, L}, device);
  dh = Tensor({rows, 2 * L}, device);
  kl_sample = Tensor({rows}, device);
  kl_dim = Tensor({L}, device);
  nll = Tensor({rows}, device);
  dlogits = Tensor({rows, d}, device);
  loss = Tensor({3}, device);
  capacity = rows;
  ++generation;
}

void ModelImpl::likelihood(const float* out, const float* x, float* nll_rows, float* dout, int rows, float grad_scale) {
  const int d = input_dim();
  if (config.likelihood == Likelihood::Bernoulli) {
    backend->bernoulli_nll(out, x, nll_rows, dout, rows, d, grad_scale);
  } else {
    const bool learned = log_sigma_offset >= 0;
    backend->gaussian_nll(out, x, learned ? params.data() + log_sigma_offset : nullptr,
                          std::log(config.gaussian_sigma), nll_rows, dout,
                          learned && dout ? grads.data() + log_sigma_offset : nullptr, rows, d, grad_scale);
  }
}

void ModelImpl::forward_backward(const float* x, int rows, float beta, uint64_t seed, uint64_t step,
                                 const StepScalars* per_step) {
  prepare(rows);
  Backend& be = *backend;
  const LatentArgs args{rows, latent(), seed, step, 0, 1.0f, per_step};
  const float* h = encoder.forward(be, x, rows);
  // No KL per dimension here: only evaluation reports it, and on the GPU it is a kernel of its own.
  latent_block.forward(be, args, h, z.data(), kl_sample.data(), nullptr);
  const float* logits = decoder.forward(be, z.data(), rows);
  likelihood(logits, x, nll.data(), dlogits.data(), rows, 1.0f / rows);
  be.loss_reduce(nll.data(), kl_sample.data(), rows, beta, per_step, loss.data());
  decoder.backward(be, z.data(), dlogits.data(), dz.data(), rows);
  latent_block.backward(be, args, h, z.data(), dz.data(), beta / rows, dh.data());
  encoder.backward(be, x, dh.data(), nullptr, rows);
}

const float* ModelImpl::forward_eval(const float* x, int rows, uint64_t seed, int64_t row0, float eps_scale) {
  prepare(rows);
  Backend& be = *backend;
  const LatentArgs args{rows, latent(), seed, 0, row0, eps_scale, nullptr};
  const float* h = encoder.forward(be, x, rows);
  latent_block.forward(be, args, h, z.data(), kl_sample.data(), latent_block.reports_kl_per_dim() ? kl_dim.data() : nullptr);
  const float* out = decoder.forward(be, z.data(), rows);
  likelihood(out, x, nll.data(), nullptr, rows, 1.0f);
  return h;
}

void ModelImpl::to_image(float* out, int64_t n) {
  if (config.likelihood == Likelihood::Bernoulli) backend->sigmoid(out, out, n);
  else backend->clamp01(out, out, n);
}

Model::Model(const ModelConfig& config, Device device) : impl_(std::make_unique<ModelImpl>(config, device)) {}
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

const ModelConfig& Model::config() const { return impl_->config; }
Device Model::device() const { return impl_->device; }

void Model::set_numerics(const Numerics& n) { impl_->backend->set_options({n.tf32, n.fused_epilogues}); }

int64_t Model::parameter_count() const {
  int64_t n = 0;
  for (const auto& s : impl_->slices) n += shape_numel(s.shape);
  return n;
}

void Model::initialize(uint64_t seed) {
  std::vector<float> host(static_cast<size_t>(impl_->params.numel()), 0.0f);
  uint32_t tensor_index = 0;
  impl_->encoder.initialize(host, impl_->config.init, seed, tensor_index);
  impl_->decoder.initialize(host, impl_->config.init, seed, tensor_index);
  impl_->latent_block.prior().initialize(host, seed, tensor_index);
  if (impl_->log_sigma_offset >= 0) {
    // Start the learned sigma at the configured fixed value (raw value = log sigma, well inside the clamp).
    const float ls = std::log(impl_->config.gaussian_sigma);
    for (int i = 0; i < impl_->input_dim(); ++i) host[static_cast<size_t>(impl_->log_sigma_offset + i)] = ls;
  }
  impl_->params.copy_from_host(host.data(), impl_->params.numel());
  impl_->grads.fill(0.0f);
}

std::vector<std::pair<std::string, Tensor>> Model::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& s : impl_->slices) out.emplace_back(s.name, impl_->params.view(s.offset, s.shape));
  return out;
}

Tensor Model::encode(const Tensor& x) {
  if (x.shape().size() != 2 || x.dim(1) != impl_->input_dim())
    throw Error("encode: expected images [n, " + std::to_string(impl_->input_dim()) + "], got " + to_string(x.shape()));
  const int n = static_cast<int>(x.dim(0));
  Tensor input({n, impl_->input_dim()}, impl_->device);
  input.copy_from(x);
  impl_->encoder.prepare(n, *impl_->backend);
  impl_->encoder.forward(*impl_->backend, input.data(), n);
  Tensor out({n, 2 * impl_->latent()}, impl_->device);
  out.copy_from(impl_->encoder.output_view(n));
  return out;
}

Tensor Model::decode(const Tensor& z) {
  if (z.shape().size() != 2 || z.dim(1) != impl_->latent())
    throw Error("decode: expected latent codes [n, " + std::to_string(impl_->latent()) + "], got " + to_string(z.shape()));
  const int n = static_cast<int>(z.dim(0));
  Tensor input({n, impl_->latent()}, impl_->device);
  input.copy_from(z);
  impl_->decoder.prepare(n, *impl_->backend);
  impl_->decoder.forward(*impl_->backend, input.data(), n);
  Tensor out({n, impl_->input_dim()}, impl_->device);
  out.copy_from(impl_->decoder.output_view(n));
  impl_->to_image(out.data(), out.numel());
  return out;
}

}  // namespace vae
