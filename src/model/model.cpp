#include "condition.cuh"
#include "model/model_impl.hpp"
#include "model/model_use.hpp"
#include "model/networks.hpp"
#include "rows.cuh"
#include "vae/error.hpp"
#include "vae/model.hpp"

namespace vae {
namespace {

// The model's parameters in the flat buffer, in order: encoder, decoder, the latent block (the
// posterior flow's, then the prior's), the likelihood's; each part places and names its own.
// Returns the aligned end. Nothing is allocated.
int64_t lay_out(Sequential& encoder, Sequential& decoder, LatentBlock& latent, LikelihoodModel& likelihood,
                std::vector<ParamSlice>& slices) {
  int64_t end = encoder.layout(0);
  end = decoder.layout(end);
  end = latent.layout(end);
  end = likelihood.layout(end);
  encoder.param_slices("encoder.", slices);
  decoder.param_slices("decoder.", slices);
  latent.param_slices(slices);
  likelihood.param_slices(slices);
  return align_params(end);
}

int64_t scalars_in(const std::vector<ParamSlice>& slices) {
  int64_t n = 0;
  for (const auto& s : slices) n += shape_numel(s.shape);
  return n;
}

}  // namespace

// The count from the parts' own layouts, so no part keeps a formula of its size beside its layout.
// Widths are validated small enough that int64 cannot overflow.
int64_t ModelConfig::parameter_count() const {
  Sequential enc("encoder"), dec("decoder");
  build_networks(*this, enc, dec);
  LatentBlock latent(*this);
  const std::unique_ptr<LikelihoodModel> likelihood = make_likelihood(*this);
  std::vector<ParamSlice> slices;
  lay_out(enc, dec, latent, *likelihood, slices);
  return scalars_in(slices);
}

ModelImpl::ModelImpl(const ModelConfig& cfg, Device dev)
    : config(cfg), device(dev), backend(make_backend(dev)), latent_block(cfg), likelihood_model(make_likelihood(cfg)) {
  config.validate();
  if (config.conditional && config.classes < 2)
    throw Error("a conditional model needs the number of classes (model.classes, at least 2), which vae train takes "
                "from the data set's labels; got " + std::to_string(config.classes));
  build_networks(config, encoder, decoder);
  objective_ = make_objective(objective_config_, config, latent_block, *likelihood_model);

  const int64_t total = lay_out(encoder, decoder, latent_block, *likelihood_model, slices_);

  params_ = Tensor::zeros({total}, device);
  grads_ = Tensor::zeros({total}, device);
  encoder.bind(params_.data(), grads_.data());
  decoder.bind(params_.data(), grads_.data());
  latent_block.bind(params_.data(), grads_.data());
}

void ModelImpl::check_image_size(const ImageSet& set, const char* which) const {
  if (set.channels != config.image_channels || set.height != config.image_height || set.width != config.image_width)
    throw Error(std::string(which) + " images are " + std::to_string(set.channels) + "x" + std::to_string(set.height) +
                "x" + std::to_string(set.width) + " (channels x height x width) but the model expects " +
                std::to_string(config.image_channels) + "x" + std::to_string(config.image_height) + "x" +
                std::to_string(config.image_width));
}

void ModelImpl::set_objective(const ObjectiveConfig& o) {
  const bool by_dimension = latent_block.kl_by_dimension();
  std::unique_ptr<Objective> made;
  try {
    made = make_objective(o, config, latent_block, *likelihood_model);
  } catch (...) {
    latent_block.set_kl_by_dimension(by_dimension);  // as the current objective set it
    throw;
  }
  // The new objective's generation_ starts again from 0: carry the old one's count over, so that
  // workspace_generation() never returns to a value a recorded step was made at.
  generation_ += objective_->generation() + 1;
  objective_ = std::move(made);
  objective_config_ = o;
  capacity_ = 0;  // the workspace's sizes depend on the objective
}

void ModelImpl::prepare(int rows) {
  if (rows < 1) throw Error("batch must have at least one row");
  const int k = samples_per_row(), pseudo = latent_block.prior().pseudo_input_count();
  encoder.prepare(rows + pseudo, *backend);
  decoder.prepare(rows * k, *backend);
  latent_block.prepare(rows * k, *backend);
  objective_->prepare(rows, device);
  if (rows <= capacity_) return;
  const int L = latent(), d = input_dim(), n = rows * k;
  z_ = Tensor({n, L}, device);
  dz_ = Tensor({n, L}, device);
  dh_ = Tensor({rows + pseudo, latent_block.head_width()}, device);
  // The pseudo-inputs' rows get the prior's gradient in the top level's columns only: a hierarchy's
  // bottom-up columns there stay zero (no lower level reads a pseudo-input).
  if (pseudo > 0) dh_.fill(0.0f);
  kl_sample_ = Tensor({n}, device);
  kl_dim_ = Tensor({L}, device);
  nll_ = Tensor({n}, device);
  dlogits_ = Tensor({n, config.decoder_output_dim()}, device);
  loss_ = Tensor({3}, device);
  if (pseudo > 0) {
    x_all_ = Tensor({rows + pseudo, d}, device);
    dx_all_ = Tensor({rows + pseudo, d}, device);
  }
  if (k > 1) x_rep_ = Tensor({n, d}, device);
  prepare_condition(rows, n);
  capacity_ = rows;
  ++generation_;
}

void ModelImpl::prepare_condition(int encoder_rows, int decoder_rows) {
  if (!config.conditional) return;
  const int rows = std::max(encoder_rows, decoder_rows);
  if (rows <= condition_rows_) return;
  x_cond_ = Tensor({rows, input_dim() + config.encoder_condition_width()}, device);
  z_cond_ = Tensor({rows, config.decoder_input_dim()}, device);
  dz_cond_ = Tensor({rows, config.decoder_input_dim()}, device);
  condition_rows_ = rows;
  ++generation_;
}

void ModelImpl::check_labels(const std::vector<int32_t>* labels, int64_t rows, const char* what) const {
  if (!config.conditional) {
    if (labels && !labels->empty())
      throw Error(std::string(what) + ": this model is not conditional, so it takes no labels (train one with "
                  "--conditional)");
    return;
  }
  if (!labels || labels->empty())
    throw Error(std::string(what) + ": this model is conditional on " + std::to_string(config.classes) +
                " classes and needs a label for every row (vae sample --label, or data with labels)");
  if (static_cast<int64_t>(labels->size()) != rows)
    throw Error(std::string(what) + ": " + std::to_string(labels->size()) + " labels for " + std::to_string(rows) + " rows");
  for (size_t i = 0; i < labels->size(); ++i)
    if ((*labels)[i] < 0 || (*labels)[i] >= config.classes)
      throw Error(std::string(what) + ": label " + std::to_string((*labels)[i]) + " (row " + std::to_string(i) +
                  ") is outside the model's classes 0.." + std::to_string(config.classes - 1));
}

Tensor ModelImpl::labels_on_device(const std::vector<int32_t>& labels) const {
  return Tensor::from_host(std::vector<float>(labels.begin(), labels.end()), {static_cast<int64_t>(labels.size())}, device);
}

const float* ModelImpl::encoder_input(const float* x, const float* y, int rows) {
  if (!config.conditional) return x;
  if (!y) throw Error("internal: a conditional model's encoder ran without labels");
  const int64_t plane = config.encoder.type == NetworkType::Conv ? int64_t(config.image_height) * config.image_width : 1;
  ops::append_condition(*backend, x, y, rows, input_dim(), config.classes, plane, 1, x_cond_.data());
  return x_cond_.data();
}

const float* ModelImpl::decode_forward(const float* z, const float* y, int n, int repeat) {
  if (!config.conditional) return decoder.forward(*backend, z, n);
  if (!y) throw Error("internal: a conditional model's decoder ran without labels");
  ops::append_condition(*backend, z, y, n, latent(), config.classes, 1, repeat, z_cond_.data());
  return decoder.forward(*backend, z_cond_.data(), n);
}

void ModelImpl::decode_backward(const float* z, const float* dout, float* dz, int n) {
  if (!config.conditional) {
    decoder.backward(*backend, z, dout, dz, n);
    return;
  }
  decoder.backward(*backend, z_cond_.data(), dout, dz_cond_.data(), n);
  ops::take_columns(*backend, static_cast<const float*>(dz_cond_.data()), n, config.decoder_input_dim(), latent(), dz);
}

const float* ModelImpl::encode_batch(const float* x, int rows, bool training) {
  Backend& be = *backend;
  PseudoInputs* pseudo = latent_block.prior().pseudo_inputs();
  if (!pseudo) return encoder.forward(be, x, rows);  // x: encoder_input's (the condition appended)
  const int64_t d = input_dim();
  ops::copy_values(be, x, rows * d, x_all_.data());
  pseudo->write(be, x_all_.data() + rows * d);
  const float* h = encoder.forward(be, x_all_.data(), rows + pseudo->count());
  const int64_t after_batch = latent_block.posterior().row_offset(rows);
  pseudo->bind_encoding(h + after_batch, training ? dh_.data() + after_batch : nullptr);
  return h;
}

void ModelImpl::encoder_backward(const float* x, int rows) {
  Backend& be = *backend;
  PseudoInputs* pseudo = latent_block.prior().pseudo_inputs();
  if (!pseudo) {
    encoder.backward(be, x, dh_.data(), nullptr, rows);
    return;
  }
  encoder.backward(be, x_all_.data(), dh_.data(), dx_all_.data(), rows + pseudo->count());
  pseudo->backward(be, dx_all_.data() + int64_t(rows) * input_dim());
}

void ModelImpl::initialize_from_data(const float* x, int rows, uint64_t seed, const float* y) {
  if (!latent_block.has_flows()) return;
  prepare(rows);
  const float* h = encode_batch(encoder_input(x, y, rows), rows, false);
  latent_block.initialize_from(*backend, h, rows, seed, z_.data());
}

void ModelImpl::encode_pseudo_inputs() {
  PseudoInputs* pseudo = latent_block.prior().pseudo_inputs();
  if (!pseudo) return;
  prepare(1);
  pseudo->write(*backend, x_all_.data());
  pseudo->bind_encoding(encoder.forward(*backend, x_all_.data(), pseudo->count()), nullptr);
}

void ModelImpl::likelihood(const float* out, const float* x, float* nll_rows, float* dout, int rows, float grad_scale) {
  likelihood_model->nll(*backend, out, x, nll_rows, dout, rows, grad_scale, params_.data(), grads_.data());
}

void ModelImpl::forward_backward(const float* x_image, int rows, uint64_t seed, const StepScalars* step, const float* y,
                                 int64_t row0) {
  if (!step) throw Error("internal: forward_backward without its step record (step_record.hpp)");
  prepare(rows);
  Backend& be = *backend;
  const int d = input_dim(), k = samples_per_row(), n = rows * k;
  const LatentArgs args{rows, latent(), seed, 0, row0, 1.0f, step};
  const float* x = encoder_input(x_image, y, rows);
  const float* h = encode_batch(x, rows, true);
  latent_block.prior().bind_labels(y, k);  // p(z | y): z row i is data row i / k's
  objective_->sample(be, latent_block, args, h, z_.data(), kl_sample_.data());
  const float* xk = x_image;
  if (k > 1) {
    ops::repeat_rows(be, x_image, rows, d, k, x_rep_.data());
    xk = x_rep_.data();
  }
  const float* out = decode_forward(z_.data(), y, n, k);
  likelihood(out, xk, nll_.data(), dlogits_.data(), n, objective_->likelihood_grad_scale(rows));
  objective_->reduce(be, args, nll_.data(), kl_sample_.data(), loss_.data());
  objective_->weight_decoder_gradient(be, dlogits_.data(), rows, static_cast<int>(config.decoder_output_dim()));
  decode_backward(z_.data(), dlogits_.data(), dz_.data(), n);
  objective_->latent_backward(be, latent_block, args, h, z_.data(), dz_.data(), dh_.data());
  encoder_backward(x, rows);
}

const float* ModelImpl::forward_eval(const float* x_image, int rows, uint64_t seed, int64_t row0, float eps_scale,
                                     const float* y) {
  prepare(rows);
  Backend& be = *backend;
  const LatentArgs args{rows, latent(), seed, 0, row0, eps_scale, nullptr};
  const float* h = encode_batch(encoder_input(x_image, y, rows), rows, false);
  latent_block.prior().bind_labels(y, 1);
  // A hierarchy's lower levels report their KL per dimension whatever the top's prior.
  const bool kl_dims = latent_block.reports_kl_per_dim() || latent_block.top_down();
  latent_block.forward(be, args, h, z_.data(), kl_sample_.data(), kl_dims ? kl_dim_.data() : nullptr);
  const float* out = decode_forward(z_.data(), y, rows, 1);
  likelihood(out, x_image, nll_.data(), nullptr, rows, 1.0f);
  return h;
}

void ModelImpl::decode_images(const float* z, const float* y, int n, float* images, const PixelDraw* draw) {
  prepare_condition(0, n);
  decoder.prepare(n, *backend);
  const float* out = decode_forward(z, y, n, 1);
  if (draw) likelihood_model->sample_image(*backend, out, images, n, draw->seed, draw->row0);
  else likelihood_model->to_image(*backend, out, images, n);
}

Model::Model(const ModelConfig& config, Device device) : impl_(std::make_unique<ModelImpl>(config, device)) {}
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

const ModelConfig& Model::config() const { return impl_->config; }
Device Model::device() const { return impl_->device; }
const RunOrigin& Model::origin() const { return impl_->origin; }
void Model::set_origin(RunOrigin origin) { impl_->origin = std::move(origin); }

void Model::set_numerics(const Numerics& n) {
  const ModelUse use(*this, "set_numerics");
  impl_->backend->set_options({n.tf32, n.fused_epilogues});
}

int64_t Model::parameter_count() const { return scalars_in(impl_->slices()); }

void Model::initialize(uint64_t seed) {
  const ModelUse use(*this, "initialize");
  std::vector<float> host(static_cast<size_t>(impl_->params().numel()), 0.0f);
  uint32_t tensor_index = 0;
  impl_->encoder.initialize(host, impl_->config.init, seed, tensor_index);
  impl_->decoder.initialize(host, impl_->config.init, seed, tensor_index);
  impl_->latent_block.initialize(host, seed, tensor_index);
  impl_->likelihood_model->initialize(host);
  impl_->params().copy_from_host(host.data(), impl_->params().numel());
  impl_->grads().fill(0.0f);
}

std::vector<std::pair<std::string, Tensor>> Model::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& s : impl_->slices()) out.emplace_back(s.name, impl_->params().view(s.offset, s.shape));
  return out;
}

Tensor Model::encode(const Tensor& x) { return encode(x, {}); }
Tensor Model::decode(const Tensor& z) { return decode(z, {}); }

Tensor Model::encode(const Tensor& x, const std::vector<int32_t>& labels) {
  const ModelUse use(*this, "encode");
  ModelImpl& m = *impl_;
  if (x.shape().size() != 2 || x.dim(1) != m.input_dim())
    throw Error("encode: expected images [n, " + std::to_string(m.input_dim()) + "], got " + to_string(x.shape()));
  const int n = static_cast<int>(x.dim(0));
  m.check_labels(&labels, n, "encode");
  Tensor input({n, m.input_dim()}, m.device);
  input.copy_from(x);
  Tensor y;
  if (m.config.conditional) y = m.labels_on_device(labels);
  m.prepare_condition(n, 0);
  const float* in = m.encoder_input(input.data(), m.config.conditional ? y.data() : nullptr, n);
  m.encoder.prepare(n, *m.backend);
  m.encoder.forward(*m.backend, in, n);
  Tensor out({n, m.latent_block.head_width()}, m.device);
  out.copy_from(m.encoder.output_view(n));
  return out;
}

Tensor Model::decode(const Tensor& z, const std::vector<int32_t>& labels) {
  const ModelUse use(*this, "decode");
  ModelImpl& m = *impl_;
  if (z.shape().size() != 2 || z.dim(1) != m.latent())
    throw Error("decode: expected latent codes [n, " + std::to_string(m.latent()) + "], got " + to_string(z.shape()));
  const int n = static_cast<int>(z.dim(0));
  m.check_labels(&labels, n, "decode");
  Tensor input({n, m.latent()}, m.device);
  input.copy_from(z);
  Tensor y;
  if (m.config.conditional) y = m.labels_on_device(labels);
  Tensor out({n, m.input_dim()}, m.device);
  m.decode_images(input.data(), m.config.conditional ? y.data() : nullptr, n, out.data());
  return out;
}

}  // namespace vae
