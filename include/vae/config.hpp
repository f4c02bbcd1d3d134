// Model and training configuration. Both round-trip through JSON (config.json, checkpoint
// metadata); validate() rejects out-of-range values with a message naming the field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vae/tensor.hpp"

namespace vae {

enum class Activation { ReLU, LeakyReLU, Tanh, SiLU, Gated };
enum class LogvarClampKind { None, Hard, Soft };
enum class Likelihood { Bernoulli, Gaussian, DiscretizedLogistic, MixtureDiscretizedLogistic };
enum class InitScheme { Torch, Kaiming, Xavier };
enum class OptimizerKind { Adam, AdamW };
enum class LrSchedule { Constant, Cosine };
enum class NetworkType { MLP, Conv };
enum class PriorType { StandardNormal, MixtureOfGaussians, Vamp, Flow, LabelGaussian };
enum class ObjectiveType { Elbo, Iwae, IwaeDreg };
enum class WarmupSchedule { Linear, Cyclical, LinearEpochs };
enum class ValidationSplit { Permuted, Tail };

std::string to_string(Activation a);
std::string to_string(Likelihood l);
std::string to_string(LogvarClampKind k);
std::string to_string(InitScheme s);
std::string to_string(OptimizerKind o);
std::string to_string(LrSchedule s);
std::string to_string(NetworkType t);
std::string to_string(PriorType t);
std::string to_string(ObjectiveType t);
std::string to_string(WarmupSchedule w);
std::string to_string(ValidationSplit v);
Activation parse_activation(const std::string& s);
Likelihood parse_likelihood(const std::string& s);
// "none", "hard" or "soft".
LogvarClampKind parse_logvar_clamp(const std::string& s);
InitScheme parse_init(const std::string& s);
OptimizerKind parse_optimizer(const std::string& s);
LrSchedule parse_schedule(const std::string& s);
NetworkType parse_network(const std::string& s);
// "standard_normal" (also "standard", the CLI's spelling), "mog", "vamp", "flow" or "label_gaussian".
PriorType parse_prior(const std::string& s);
// "elbo", "iwae" or "iwae_dreg" (also "iwae-dreg", the CLI's spelling).
ObjectiveType parse_objective(const std::string& s);
WarmupSchedule parse_warmup(const std::string& s);
// "permuted" or "tail".
ValidationSplit parse_validation_split(const std::string& s);

// The largest model a configuration or checkpoint may describe: 2^30 parameters, which with their
// gradients and Adam moments is 16 GiB. Checked before anything is allocated.
inline constexpr int64_t kMaxParameters = int64_t{1} << 30;

// The encoder network, image -> the posterior's parameters; the decoder is its mirror image.
//   mlp:  Linear(hidden[0]), act, ..., Linear(2 * latent)
//   conv: Conv2d(channels[0], kernel, stride, padding), act, ..., Flatten, then the mlp part
// activation "gated": every hidden layer (Linear, Conv2d, ConvTranspose2d) has twice its width and
// a Gate after it, h = a * sigmoid(g) (Dauphin et al.; vae_vampprior's GatedDense and GatedConv2d).
// The decoder runs the same layers backwards: Linear layers up to the last conv's output,
// Reshape, ConvTranspose2d layers (output padding chosen so every size comes back exactly), and no
// activation after its last layer (it gives logits or Gaussian means).
struct EncoderConfig {
  NetworkType type = NetworkType::MLP;
  std::vector<int> channels;          // conv: output channels of each conv layer, in encoder order
  int kernel = 4, stride = 2, padding = 1;  // conv: square kernel, the same for every conv layer
  std::vector<int> hidden{512, 256};  // widths of the fully connected layers (after the convs)
  Activation activation = Activation::ReLU;
  float leaky_slope = 0.01f;
};

// p(z). standard_normal: N(0, I), no parameters. mog: a learned mixture of `components` diagonal
// Gaussians (logits [K], means [K, latent], log-variances [K, latent]; see kernels/mog_prior.cuh).
// vamp: the VampPrior (Tomczak & Welling 2018), the equal-weight mixture of the posteriors of
// `components` learned pseudo-inputs [K, C*H*W] passed through the encoder (latent/prior.hpp).
// label_gaussian: p(z | y), a learned diagonal Gaussian per class (means [classes, L], log-variances
// [classes, L]; kernels/label_gaussian_prior.cuh), for conditional models: sampling and evaluation
// go through the label's Gaussian.
// flow: N(0, I) pushed through `flow_steps` RealNVP/Glow steps (ActNorm, LU linear, affine coupling
// with a `flow_hidden`-wide MLP; kernels/flow.cuh): log p(z) = log N(g(z)) + log |det dg/dz|.
struct PriorConfig {
  PriorType type = PriorType::StandardNormal;
  int flow_steps = 4;    // flow only
  int flow_hidden = 64;  // flow only
  // mog and vamp; 0 = the type's default: 10 Gaussians (mog), 500 pseudo-inputs (vamp, the paper's).
  int components = 0;
  // Whether the type is a mixture with a components count, and that count (the default when 0).
  // Which keys each type takes, their ranges and defaults are declared once, in src/config.cpp's
  // table of prior types.
  bool has_components() const;
  int count() const;
};

// The model as a tree of components. In JSON (config.json's "model", checkpoints' metadata):
//   {"image": {"channels", "height", "width"}, "encoder": {"type": "mlp"|"conv", ...},
//    "decoder": {"type": "mirror"}, "posterior": {"type": "gaussian", "latent", "flow_steps", "flow_hidden"},
//    "prior": {"type": "standard_normal"|"mog"|"vamp"|"flow", "components", "flow_steps", "flow_hidden"}, "likelihood": {"type": "bernoulli"|"gaussian", "sigma",
//    "learned_sigma"}, "init": "torch"|"kaiming"|"xavier"}
// from_json also reads the flat form written before the tree (image_channels, hidden, latent, ...).
struct ModelConfig {
  int image_channels = 1;  // 1 grey, 3 RGB (2 and 4 with alpha); set from the data set
  int image_height = 28;
  int image_width = 28;
  EncoderConfig encoder;
  int latent = 32;  // posterior: diagonal Gaussian over this many dimensions
  // Posterior flow: the reparameterised sample passed through this many flow steps (the prior's
  // kind), their log-determinant entering log q(z|x). 0 = the plain diagonal Gaussian.
  int posterior_flow_steps = 0;
  int posterior_flow_hidden = 64;
  // The posterior's log-variance held in [logvar_min, logvar_max] by a LogvarClamp module on the
  // encoder head: hard (vae_vampprior's Hardtanh(-6, 2)), soft (c + s tanh((raw - c) / s)), or none
  // (the kernels' own wide soft clamp to (-30, 20) only). A hierarchy clamps every Gaussian it
  // has: each level's posterior and each lower level's conditional prior (vae_vampprior's HVAE).
  // In JSON: the posterior section's "logvar_clamp", "logvar_min", "logvar_max".
  LogvarClampKind logvar_clamp = LogvarClampKind::None;
  float logvar_min = -6.0f;
  float logvar_max = 2.0f;
  // Hierarchical latents (src/latent/top_down.hpp): the levels' sizes from the top level z_L down
  // to z_1; empty (or one entry) = one level of `latent`. With two or more, latent is their sum, the
  // decoder reads every level (z = [z_L | ... | z_1]), the prior above applies to the top level, and
  // each lower level has a conditional prior p(z_l | z_{l+1}) and a posterior q(z_l | x, z_{l+1})
  // sharing one top-down network (top_down_hidden wide; 0 = the encoder's last hidden width).
  // residual_posterior: the posterior's head is the prior's plus a learned shift (NVAE). In JSON:
  // the posterior section's "levels", "top_down_hidden", "residual".
  std::vector<int> levels;
  int top_down_hidden = 0;
  bool residual_posterior = false;
  bool hierarchical() const { return levels.size() >= 2; }
  int top_latent() const { return hierarchical() ? levels.front() : latent; }
  int top_down_width() const;
  PriorConfig prior;
  Likelihood likelihood = Likelihood::Bernoulli;
  // Gaussian likelihood: a learned per-pixel log-sigma, or a fixed sigma.
  bool learned_sigma = false;
  float gaussian_sigma = 0.1f;
  // dlogistic: a discretized logistic per value of 8-bit data (256 bins; the decoder gives a mean
  // and a log-scale per value). dmol: a mixture of `likelihood_components` discretized logistics per
  // pixel (PixelCNN++/NVAE; RGB with the linear colour coupling of the means). In JSON: the
  // likelihood section's "components" (dmol only; 0 = 10).
  int likelihood_components = 0;
  int mixture_components() const { return likelihood_components > 0 ? likelihood_components : 10; }
  // Whether the likelihood is a probability of the 8-bit values themselves (Bernoulli on binarized
  // data, dlogistic, dmol) rather than a density over [0, 1] (Gaussian).
  bool discrete_likelihood() const { return likelihood != Likelihood::Gaussian; }
  // The decoder's output channels per pixel position: the image's channels (Bernoulli logits,
  // Gaussian means), twice them (dlogistic: means, then log-scales), or the mixture's
  // K (1 + 2C + C(C-1)/2) (dmol: logits, means, log-scales, colour coefficients).
  int decoder_output_channels() const;
  int64_t decoder_output_dim() const { return int64_t(decoder_output_channels()) * image_height * image_width; }
  // Torch: PyTorch's nn.Linear default, U(+-1/sqrt(fan_in)) for weight and bias.
  // Kaiming: He uniform for ReLU, U(+-sqrt(6/fan_in)), zero bias. Xavier: U(+-sqrt(6/(in+out))), zero bias.
  InitScheme init = InitScheme::Torch;
  // Conditional VAE: the class label as a condition of the encoder and the decoder, q(z|x, y) and
  // p(x|z, y) (the prior stays p(z)). The encoder's input gets the one-hot label appended (mlp) or
  // one constant plane per class after the image's channels (conv); the decoder's input is [z | one-hot].
  // classes is set from the data set's labels by vae train. In JSON: "conditional": true, "classes": N.
  bool conditional = false;
  int classes = 0;

  int input_dim() const { return image_channels * image_height * image_width; }
  // The condition's values appended to each encoder input row: classes (mlp) or classes planes (conv).
  int64_t encoder_condition_width() const {
    if (!conditional) return 0;
    return encoder.type == NetworkType::Conv ? int64_t(classes) * image_height * image_width : classes;
  }
  int decoder_input_dim() const { return latent + (conditional ? classes : 0); }
  // Trainable scalars the configuration implies (exact, without alignment padding): the model's
  // parts laid out as a Model lays them out, with nothing allocated (src/model/model.cpp).
  int64_t parameter_count() const;
  // Rejects out-of-range fields, networks whose shapes do not chain, and models above
  // kMaxParameters, with a message naming the field.
  void validate() const;
  std::string to_json() const;
  static ModelConfig from_json(const std::string& text);
};

// The training objective over per-sample terms (latent/objective.hpp has the math).
//   elbo:      loss = mean_r nll_r + beta_t * R, the KL regulariser R being one of
//                mean_r kl_r                                  (plain; beta_t from the warm-up)
//                sum_g max(free_bits * |g|, mean_r kl_rg)      (free bits over groups g of dimensions)
//                |mean_r kl_r - C_t|, C_t = capacity * min(1, t / capacity_epochs)   (capacity)
//   iwae:      loss = mean_b -log (1/k) sum_j p(x_b, z_bj) / q(z_bj | x_b), k samples per row
//   iwae_dreg: the same loss; the encoder's gradient is the doubly-reparameterised estimator
//              (Tucker et al. 2018), the decoder's and the prior's are IWAE's.
// Warm-up: linear takes beta_t from 0 to beta over warmup_epochs epochs, step by step;
// linear_epochs holds beta_t = beta * min(1, e / warmup_epochs) through epoch e (vae_vampprior's
// schedule: 1/warmup_epochs of beta in the first epoch); cyclical (Fu et al. 2019) repeats cycles of
// warmup_epochs epochs, rising over the first warmup_ratio of each and holding.
// In JSON: the run config's "objective" section.
struct ObjectiveConfig {
  ObjectiveType type = ObjectiveType::Elbo;
  float beta = 1.0f;      // weight of the KL term (the capacity objective's gamma)
  int warmup_epochs = 0;  // 0 = no warm-up
  WarmupSchedule warmup = WarmupSchedule::Linear;
  float warmup_ratio = 0.5f;  // cyclical: the share of each cycle over which beta rises
  float free_bits = 0.0f;     // nats per dimension; 0 = off
  int free_bits_group = 1;    // dimensions per group (must divide the latent size)
  float capacity = 0.0f;      // nats; 0 = off
  int capacity_epochs = 0;    // epochs over which C rises from 0 to capacity (0: C = capacity throughout)
  int k = 1;                  // iwae: importance samples per row in training
  bool importance_weighted() const { return type != ObjectiveType::Elbo; }
  // Rejects out-of-range fields and combinations that do not belong together (beta with iwae,
  // free bits with capacity), naming the field.
  void validate() const;
  // The rules that need the model: free-bits groups divide the latent size, and groups smaller
  // than the latent need the factorised standard normal prior.
  void check_model(const ModelConfig& model) const;
  std::string to_json() const;
  static ObjectiveConfig from_json(const std::string& text, ObjectiveConfig defaults);
  static ObjectiveConfig from_json(const std::string& text) { return from_json(text, ObjectiveConfig{}); }
};

// Training: data, optimizer, schedule, limits, device and numerics, and the objective. Every field
// is declared once in src/config.cpp (its JSON key, type, range, default's help text and CLI flag):
// parsing, validation, serialisation and the vae train flags all come from that declaration.
struct TrainConfig {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  std::string labels_path;      // labels .npy for a .npy data set (optional)
  double test_fraction = 0.1;   // held out when the data has no test split of its own
  // A validation set held out of the training images (0 = none): round(fraction * N) images, either
  // a fixed pseudo-random share (permuted: the same images for every seed) or the last ones of the
  // training split (tail: vae_vampprior's fixed validation, Fashion-MNIST's last 10,000 at 1/6). Each
  // epoch evaluates it; best.safetensors and early stopping then go by its bound, not the test set's:
  // the -ELBO, or for iwae and iwae_dreg the k-sample bound they train.
  double validation_fraction = 0;
  ValidationSplit validation_split = ValidationSplit::Permuted;
  // Early stopping (0 = off; needs a validation set): the run ends after this many epochs in a row
  // without a new best validation bound, not counting the epochs of a KL warm-up (vae_vampprior's rule).
  int early_stopping = 0;
  std::string out_dir = "runs/latest";
  int epochs = 10;
  int batch = 128;
  OptimizerKind optimizer = OptimizerKind::Adam;
  float lr = 1e-3f;
  float min_lr = 0.0f;  // floor of the cosine schedule
  LrSchedule schedule = LrSchedule::Constant;
  float adam_beta1 = 0.9f;
  float adam_beta2 = 0.999f;
  float adam_eps = 1e-8f;
  float weight_decay = 0.0f;
  float clip_norm = 0.0f;  // 0 = no clipping
  ObjectiveConfig objective;  // the run config's "objective" section
  uint64_t seed = 0;
  int threads = 0;             // 0 = all cores
  int64_t train_limit = 0;     // use only the first N training images (0 = all)
  int64_t test_limit = 0;      // evaluate on the first N test images (0 = all)
  Device device = Device::CPU;
  // CUDA: record each step once as a CUDA graph and replay it. false runs every kernel uncaptured
  // (same kernels, same bits; for debugging and profiling). The CPU ignores it.
  bool cuda_graph = true;
  // CUDA numerics (see Numerics in model.hpp): TF32 GEMMs, or strict FP32 when false; cuBLASLt
  // epilogue fusion, or our separate kernels when false. The CPU ignores both.
  bool tf32 = true;
  bool fused_epilogues = true;

  void validate() const;
  // The "train" section (without the objective, which has its own).
  std::string to_json() const;
  // Keys absent from text keep their value in defaults. The section as written before the objective
  // had its own ("beta" and "warmup_epochs" under "train") still reads, into objective.
  static TrainConfig from_json(const std::string& text, TrainConfig defaults);
  static TrainConfig from_json(const std::string& text) { return from_json(text, TrainConfig{}); }
};

// The "run" section of a run folder's config.json: the run's id and the content hash of its data
// (whose path, labels and split the "train" section holds). A TrainingRun writes it; a new run
// started from such a file (--config) takes the configuration and ignores the section.
struct RunIdentity {
  std::string id;         // 32 hex digits
  std::string data_hash;  // dataset_hash of the run's data (vae/data.hpp)
};

// A whole run's configuration file, {"model": {...}, "objective": {...}, "train": {...}, "run": {...}}
// (each section optional when reading; absent keys keep the values already in model and train).
// "run" is written when run is given, and read into run when given (left empty when absent).
std::string run_config_to_json(const ModelConfig& model, const TrainConfig& train, const RunIdentity* run = nullptr);
void run_config_from_json(const std::string& text, ModelConfig& model, TrainConfig& train, RunIdentity* run = nullptr);

// Applies the thread count to OpenMP and OpenBLAS (0 = all cores), for the whole process: every call
// on a model, from whichever thread, runs with it (OpenMP's own setting is per thread).
void set_num_threads(int threads);
// The count set_num_threads last applied; 0 before the first call.
int num_threads();

}  // namespace vae
