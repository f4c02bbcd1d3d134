// Evaluation: test -ELBO and its parts, active units, KL per dimension, and the importance-weighted
// estimate of -log p(x) (Burda et al.): log p(x) ~ log (1/k) sum_j p(x|z_j) p(z_j) / q(z_j|x),
// accumulated with a streaming log-sum-exp over chunks of samples so memory does not grow with k.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "backend/cpu/flush_denormals.hpp"
#include "backend/device_array.hpp"
#include "condition.cuh"
#include "gather_pixels.cuh"
#include "importance_sample.cuh"
#include "io/sha256.hpp"
#include "model/model_impl.hpp"
#include "model/model_use.hpp"
#include "philox.cuh"
#include "rows.cuh"
#include "train/level_report.hpp"
#include "vae/error.hpp"
#include "vae/generate.hpp"
#include "vae/train.hpp"

#include <nlohmann/json.hpp>

namespace vae {
namespace {

// Fixed seeds: the test set's binarisation and the evaluation noise are the same in every run,
// so numbers from different runs and seeds are comparable.
constexpr uint64_t kTestBinarizeSeed = 0x7e57b1a5ULL;
constexpr uint64_t kEvalNoiseSeed = 0xe7a1ULL;
// Decoder rows per importance-sampling chunk: bounds the evaluation's memory.
constexpr int64_t kImportanceChunkRows = 8192;

// Image indices 0 .. n-1.
std::vector<int32_t> image_indices(int64_t n) {
  std::vector<int32_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  return idx;
}

// The sums over samples i in [i0, i1) of the terms of (I(x; z), KL(q(z) || p(z))) as EvalResult
// states them, in double on the host: samples z_i (from image i; with a posterior flow its Gaussian
// sample z0_i, and logdet_i the flow's) against all n posteriors h. O((i1 - i0) * n * L): 0.3 G
// operations for 1000 x 10000 x 32, which a job's ranks split.
std::pair<double, double> mutual_information_sums(const Posterior& q, const std::vector<float>& h,
                                                  const std::vector<float>& z, const std::vector<float>& log_p,
                                                  const std::vector<float>& logdet, int64_t n, int i0, int i1) {
  const int L = q.latent();
  const Posterior::GaussianTerms terms = q.gaussian_terms(h.data(), n);
  // Per sample, then summed in order: the same bits for any thread count.
  std::vector<double> info(static_cast<size_t>(i1 - i0)), aggregate(static_cast<size_t>(i1 - i0));
#pragma omp parallel for schedule(static)
  for (int i = i0; i < i1; ++i) {
    const float* zi = z.data() + static_cast<size_t>(i) * L;
    double top = -std::numeric_limits<double>::infinity(), sum = 0;
    for (int64_t j = 0; j < n; ++j) {  // streaming log-sum-exp over every test posterior
      const double a = terms.log_density(j, zi);
      if (a > top) {
        sum = sum * std::exp(top - a) + 1.0;
        top = a;
      } else {
        sum += std::exp(a - top);
      }
    }
    const double log_aggregate = top + std::log(sum) - std::log(static_cast<double>(n));
    info[static_cast<size_t>(i - i0)] = terms.log_density(i, zi) - log_aggregate;
    const double ld = logdet.empty() ? 0.0 : double(logdet[static_cast<size_t>(i)]);
    aggregate[static_cast<size_t>(i - i0)] = log_aggregate - ld - double(log_p[static_cast<size_t>(i)]);
  }
  double si = 0, sa = 0;
  for (size_t i = 0; i < info.size(); ++i) si += info[i], sa += aggregate[i];
  return {si, sa};
}

std::string model_config_hash(const ModelConfig& config) {
  const std::string text = config.to_json();  // keys sorted: one text per configuration
  Sha256 h("the model configuration");
  h.add(text.data(), text.size());
  return h.hex();
}

std::string hex_seed(uint64_t v) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(v));
  return text;
}

}  // namespace

EvalResult evaluate(Model& model, const ImageSet& test, const EvalOptions& opt) {
  const ModelUse use(model, "evaluate");
  const FlushDenormalsScope flush_denormals;
  ModelImpl& m = model.impl();
  m.check_image_size(test, "test");
  if (opt.k < 0 || opt.k > 1000000) throw Error("k must be in [0, 1000000], got " + std::to_string(opt.k));
  if (opt.batch < 1) throw Error("evaluation batch must be positive");
  const int d = m.input_dim(), L = m.latent();
  const int64_t n = opt.limit > 0 ? std::min(opt.limit, test.count) : test.count;
  if (n < 1) throw Error("the test set is empty");
  const bool binarize = opt.binarize && m.likelihood_model->binarized_data();
  const int batch = static_cast<int>(std::min<int64_t>(opt.batch, n));

  EvalResult res;
  res.count = n;
  res.k = opt.k;
  std::vector<double> kl_dim(L, 0.0), mu_sum(L, 0.0), mu_sq(L, 0.0);
  double sum_nll = 0, sum_kl = 0, sum_log_px = 0;
  // The importance-weighted estimate's spread over images, and its weights' effective sample size.
  double sum_log_px_sq = 0, sum_ess = 0, min_ess = std::numeric_limits<double>::infinity();
  const auto start = std::chrono::steady_clock::now();

  Tensor x({batch, d}, m.device);
  // The mutual information's terms (see EvalResult): every test posterior, and the first
  // mi_samples images' samples with log p at them.
  // (None for a hierarchy: its q(z|x) is no single Gaussian to score samples against.)
  const TopDown* hierarchy = m.latent_block.top_down();
  const int mi = hierarchy ? 0 : static_cast<int>(std::min<int64_t>(std::max(opt.mi_samples, 0), n));
  Tensor level_mu = hierarchy ? Tensor({batch, L}, m.device) : Tensor();
  Tensor level_lv = hierarchy ? Tensor({batch, L}, m.device) : Tensor();
  std::vector<float> all_h, mi_z, mi_log_p, mi_logdet;
  const bool post_flow = m.latent_block.has_posterior_flow();
  double sum_post_logdet = 0, sum_prior_logdet = 0;
  Tensor log_p_z({batch}, m.device);
  const Posterior& posterior = m.latent_block.posterior();
  if (mi > 0) all_h.reserve(static_cast<size_t>(posterior.row_offset(n)));
  const int chunk = opt.k > 0 ? static_cast<int>(std::clamp<int64_t>(kImportanceChunkRows / batch, 1, opt.k)) : 0;
  Tensor z_iw, lpq, nll_iw, x_rep, run_max, run_sum, run_sum_sq;
  // Each binary test image is a function of its index alone (kStreamTestBinarize): the batch is
  // gathered (and binarised) once, and its k-fold replication for importance sampling copies it.
  // The test set and the indices of every image go to the device once.
  const DeviceArray<uint8_t> pixels = DeviceArray<uint8_t>::mirror(test.pixels, m.device);
  const std::vector<int32_t> all_host = image_indices(n);
  const DeviceArray<int32_t> all = DeviceArray<int32_t>::mirror(all_host, m.device);
  auto gather = [&](const int32_t* idx, int count, float* out) {
    ops::gather_pixels(*m.backend, pixels.data(), idx, count, d, binarize, kTestBinarizeSeed, kStreamTestBinarize, 0, nullptr, out);
  };
  // A conditional model is evaluated on p(x | y): the test labels are gathered beside the pixels.
  const bool conditional = m.config.conditional;
  if (conditional) m.check_labels(&test.labels, test.count, "test set");
  const DeviceArray<int32_t> labels = conditional ? DeviceArray<int32_t>::mirror(test.labels, m.device) : DeviceArray<int32_t>{};
  Tensor y = conditional ? Tensor({batch}, m.device) : Tensor();
  float* const yp = conditional ? y.data() : nullptr;
  if (opt.k > 0) {
    const int rows_iw = batch * chunk;
    m.prepare_condition(batch, rows_iw);
    m.decoder.prepare(rows_iw, *m.backend);
    m.latent_block.prepare(rows_iw, *m.backend);
    z_iw = Tensor({rows_iw, L}, m.device);
    lpq = Tensor({rows_iw}, m.device);
    nll_iw = Tensor({rows_iw}, m.device);
    x_rep = Tensor({rows_iw, d}, m.device);
    run_max = Tensor({batch}, m.device);
    run_sum = Tensor({batch}, m.device);
    run_sum_sq = Tensor({batch}, m.device);
  }

  // A job's ranks each take a contiguous run of the batches (so gathering their posteriors in rank
  // order gives the images' order); every batch keeps its rows' noise and binarisation.
  const int ranks = opt.group.size();
  const auto [first_batch, end_batch] = opt.group.share((n + batch - 1) / batch);
  const int64_t my_first = first_batch * batch, my_end = std::min<int64_t>(n, end_batch * batch);
  for (int64_t first = my_first; first < my_end; first += batch) {
    const int rows = static_cast<int>(std::min<int64_t>(batch, n - first));
    gather(all.data() + first, rows, x.data());
    if (conditional) ops::gather_labels(*m.backend, labels.data(), all.data() + first, rows, nullptr, yp);
    const float* h = m.forward_eval(x.data(), rows, kEvalNoiseSeed, first, 1.0f, yp);
    const std::vector<float> nll = m.nll().view(0, {rows}).to_host();
    const std::vector<float> kl = m.latent_term().view(0, {rows}).to_host();
    // A hierarchy's lower levels always report their KL per dimension (forward_eval).
    const bool per_dim = m.latent_block.reports_kl_per_dim() || hierarchy;
    const std::vector<float> kd = per_dim ? m.kl_dim().to_host() : std::vector<float>(L, 0.0f);
    const std::vector<float> hh = m.encoder.output_view(rows).to_host();
    std::vector<float> level_means;
    if (hierarchy) {
      m.latent_block.moments(*m.backend, h, rows, level_mu.data(), level_lv.data());
      level_means = level_mu.view(0, {rows, L}).to_host();
    }
    for (int r = 0; r < rows; ++r) {
      sum_nll += nll[r];
      sum_kl += kl[r];
      for (int u = 0; u < L; ++u) {
        const double mu = hierarchy ? double(level_means[size_t(r) * L + u]) : posterior.mean(hh.data(), r, u);
        mu_sum[u] += mu;
        mu_sq[u] += mu * mu;
      }
    }
    for (int u = 0; u < L; ++u) kl_dim[u] += kd[u];
    std::vector<float> post_logdet;
    if (post_flow) {
      post_logdet = m.latent_block.posterior().flow_logdet(rows).to_host();
      for (float v : post_logdet) sum_post_logdet += v;
    }
    if (mi > 0) {
      all_h.insert(all_h.end(), hh.begin(), hh.end());
      if (first < mi) {
        const int take = static_cast<int>(std::min<int64_t>(rows, mi - first));
        // The Gaussian's samples (before any posterior flow) against every posterior.
        const std::vector<float> zz = (post_flow ? m.latent_block.posterior().pre_flow_z(take) : m.z().view(0, {take, L})).to_host();
        mi_z.insert(mi_z.end(), zz.begin(), zz.end());
        if (post_flow) mi_logdet.insert(mi_logdet.end(), post_logdet.begin(), post_logdet.begin() + take);
        log_p_z.fill(0.0f);
        m.latent_block.prior().add_log_prob(*m.backend, m.z().data(), take, 1.0f, log_p_z.data());
        const std::vector<float> lp = log_p_z.view(0, {take}).to_host();
        mi_log_p.insert(mi_log_p.end(), lp.begin(), lp.end());
        const Tensor prior_logdet = m.latent_block.prior().last_logdet(take);
        if (prior_logdet.defined())
          for (float v : prior_logdet.to_host()) sum_prior_logdet += v;
      }
    }

    if (opt.k > 0) {
      run_max.fill(-std::numeric_limits<float>::infinity());
      run_sum.fill(0.0f);
      run_sum_sq.fill(0.0f);
      int replicated = 0;  // samples per row that x_rep currently holds
      for (int s0 = 0; s0 < opt.k; s0 += chunk) {
        const int kk = std::min(chunk, opt.k - s0);
        if (kk != replicated) {  // the batch's images, already gathered, copied kk times
          ops::repeat_rows(*m.backend, static_cast<const float*>(x.data()), rows, d, kk, x_rep.data());
          replicated = kk;
        }
        m.latent_block.prior().bind_labels(yp, kk);  // p(z | y): sample j of row r is row r's
        m.latent_block.importance_sample(*m.backend, h, rows, kk, kEvalNoiseSeed, first, s0, z_iw.data(), lpq.data());
        const float* out = m.decode_forward(z_iw.data(), yp, rows * kk, kk);
        m.likelihood(out, x_rep.data(), nll_iw.data(), nullptr, rows * kk, 1.0f);
        ops::logsumexp_accumulate(*m.backend, lpq.data(), nll_iw.data(), rows, kk, run_max.data(), run_sum.data(),
                                  run_sum_sq.data());
      }
      const std::vector<float> mx = run_max.view(0, {rows}).to_host(), sm = run_sum.view(0, {rows}).to_host();
      const std::vector<float> sq = run_sum_sq.view(0, {rows}).to_host();
      for (int r = 0; r < rows; ++r) {
        const double log_px = static_cast<double>(mx[r]) + std::log(static_cast<double>(sm[r])) - std::log(static_cast<double>(opt.k));
        sum_log_px += log_px;
        sum_log_px_sq += log_px * log_px;
        // (sum w)^2 / sum w^2, both relative to the row's largest weight.
        const double ess = sq[r] > 0 ? double(sm[r]) * double(sm[r]) / double(sq[r]) : 0.0;
        sum_ess += ess;
        min_ess = std::min(min_ess, ess);
      }
    }
    if (opt.on_progress) opt.on_progress(first + rows - my_first, my_end - my_first);
  }

  // The ranks' parts: sums added, the posteriors and samples concatenated in rank (image) order.
  if (ranks > 1) {
    std::vector<double> sums = {sum_nll, sum_kl, sum_log_px, sum_post_logdet, sum_prior_logdet, sum_log_px_sq, sum_ess};
    for (const auto* v : {&kl_dim, &mu_sum, &mu_sq}) sums.insert(sums.end(), v->begin(), v->end());
    opt.group.sum(sums.data(), static_cast<int64_t>(sums.size()));
    sum_nll = sums[0], sum_kl = sums[1], sum_log_px = sums[2], sum_post_logdet = sums[3], sum_prior_logdet = sums[4];
    sum_log_px_sq = sums[5], sum_ess = sums[6];
    size_t at = 7;
    if (opt.k > 0) {  // a rank with no images has min_ess infinite: it does not count
      const std::vector<float> mins = opt.group.all_gather({static_cast<float>(std::min(min_ess, 1e30))});
      min_ess = *std::min_element(mins.begin(), mins.end());
    }
    for (auto* v : {&kl_dim, &mu_sum, &mu_sq})
      for (double& x : *v) x = sums[at++];
    if (mi > 0) {
      all_h = opt.group.all_gather(all_h);
      mi_z = opt.group.all_gather(mi_z);
      mi_log_p = opt.group.all_gather(mi_log_p);
      if (post_flow) mi_logdet = opt.group.all_gather(mi_logdet);
    }
  }
  if (mi > 0) {
    // Each rank its share of the samples against every posterior, then the sums over ranks.
    const auto [i0, i1] = opt.group.share(mi);
    auto [info, aggregate] = mutual_information_sums(posterior, all_h, mi_z, mi_log_p, mi_logdet, n,
                                                     static_cast<int>(i0), static_cast<int>(i1));
    if (ranks > 1) {
      double both[2] = {info, aggregate};
      opt.group.sum(both, 2);
      info = both[0], aggregate = both[1];
    }
    res.mi_samples = mi;
    res.prior_flow_logdet = sum_prior_logdet / mi;
    res.mutual_info = info / mi;
    res.aggregate_kl = aggregate / mi;
  }
  res.posterior_flow_logdet = sum_post_logdet / n;
  res.has_posterior_flow = post_flow;
  res.has_prior_flow = m.config.prior.type == PriorType::Flow;
  res.recon = sum_nll / n;
  res.kl = sum_kl / n;
  res.neg_elbo = res.recon + res.kl;
  res.iwae_nll = opt.k > 0 ? -sum_log_px / n : 0.0;
  if (opt.k > 0) {
    // The standard error of the mean over images: sd of the images' log p(x) / sqrt(n) (the spread
    // of the test set, which dominates the estimator's own variance at k in the thousands).
    const double var = n > 1 ? std::max(0.0, (sum_log_px_sq - sum_log_px * sum_log_px / n) / double(n - 1)) : 0.0;
    res.iwae_stderr = std::sqrt(var / double(n));
    res.ess_mean = sum_ess / n;
    res.ess_min = min_ess;
  }
  res.test_images_hash = image_set_hash(test, n);
  res.binarized = binarize;
  res.model_config_hash = model_config_hash(m.config);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (hierarchy) {
    double lower = 0;
    for (int i = 0; i < hierarchy->levels(); ++i) {
      const int first = hierarchy->level_offset(i), size = hierarchy->level_size(i);
      double kl_level = 0;
      int active = 0, kl_active = 0;
      for (int u = first; u < first + size; ++u) {
        kl_level += kl_dim[u] / n;
        kl_active += kl_dim[u] / n > 0.01;
        const double mean = mu_sum[u] / n;
        active += std::max(0.0, mu_sq[u] / n - mean * mean) > 0.01;
      }
      if (i > 0) lower += kl_level;
      res.level_sizes.push_back(size);
      res.kl_per_level.push_back(kl_level);
      res.active_units_per_level.push_back(active);
      res.kl_active_units_per_level.push_back(i > 0 || m.latent_block.reports_kl_per_dim() ? kl_active : -1);
    }
    // The top's share is the rest (its KL per dimension exists only for the N(0, I) prior).
    res.kl_per_level[0] = res.kl - lower;
  }
  res.likelihood = to_string(m.config.likelihood);
  res.dimensions = m.input_dim();
  res.bpd_from_density = !m.likelihood_model->discrete();
  const double to_discrete = res.bpd_from_density ? double(res.dimensions) * std::log(255.0) : 0.0;
  const double bits = double(res.dimensions) * std::log(2.0);
  res.bpd_elbo = (res.neg_elbo + to_discrete) / bits;
  res.bpd = opt.k > 0 ? (res.iwae_nll + to_discrete) / bits : 0.0;
  if (m.latent_block.reports_kl_per_dim()) res.kl_per_dim.resize(L);
  res.mean_variance.resize(L);
  for (int u = 0; u < L; ++u) {
    if (!res.kl_per_dim.empty()) res.kl_per_dim[u] = kl_dim[u] / n;
    const double mean = mu_sum[u] / n;
    res.mean_variance[u] = std::max(0.0, mu_sq[u] / n - mean * mean);
    if (res.mean_variance[u] > 0.01) ++res.active_units;
  }
  return res;
}

std::string EvalResult::to_json() const {
  nlohmann::json j;
  j["count"] = count;
  j["neg_elbo"] = neg_elbo;
  j["recon"] = recon;
  j["kl"] = kl;
  j["active_units"] = active_units;
  j["kl_per_dim"] = kl_per_dim;
  j["k"] = k;
  if (k > 0) {
    j["iwae_nll"] = iwae_nll;
    j["iwae_stderr"] = iwae_stderr;
    j["ess_mean"] = ess_mean;
    j["ess_min"] = ess_min;
  }
  j["seconds"] = seconds;
  nlohmann::json p;
  p["k"] = k;
  p["estimator"] = k > 0 ? "importance_weighted" : "elbo";
  p["test_images"] = count;
  p["test_images_hash"] = test_images_hash;
  p["likelihood"] = likelihood;
  if (likelihood == "bernoulli") {
    p["binarization"] = binarized ? "static" : "none";
    p["training_binarization"] = "dynamic";
    if (binarized) p["test_binarization_seed"] = hex_seed(kTestBinarizeSeed);
  }
  p["eval_noise_seed"] = hex_seed(kEvalNoiseSeed);
  p["model_config_hash"] = model_config_hash;
  if (!data_hash.empty()) p["data_hash"] = data_hash;
  if (!test_split.empty()) p["test_split"] = test_split;
  if (!checkpoint.empty()) {
    p["checkpoint"] = checkpoint;
    p["checkpoint_step"] = checkpoint_step;
  }
  j["protocol"] = p;
  j["likelihood"] = likelihood;
  j["dimensions"] = dimensions;
  j["bpd_elbo"] = bpd_elbo;
  if (k > 0) j["bpd"] = bpd;
  j["bpd_from_density"] = bpd_from_density;
  if (!level_sizes.empty()) {
    j["levels"] = level_sizes;
    j["kl_per_level"] = kl_per_level;
    j["active_units_per_level"] = active_units_per_level;
    j["kl_active_units_per_level"] = kl_active_json(kl_active_units_per_level);
  }
  if (mi_samples > 0) {
    j["mutual_info"] = mutual_info;
    j["aggregate_kl"] = aggregate_kl;
    j["mi_samples"] = mi_samples;
  }
  if (has_posterior_flow) j["posterior_flow_logdet"] = posterior_flow_logdet;
  if (has_prior_flow) j["prior_flow_logdet"] = prior_flow_logdet;
  return j.dump();
}

namespace {

// The first n test images as grey levels [n, input_dim] on the model's device (only those n go there).
Tensor first_test_images(ModelImpl& m, const ImageSet& test, int n) {
  if (n < 1 || n > test.count) throw Error("n must be in [1, " + std::to_string(test.count) + "], got " + std::to_string(n));
  Tensor x({n, m.input_dim()}, m.device);
  const std::vector<int32_t> idx_host = image_indices(n);
  const DeviceArray<int32_t> idx = DeviceArray<int32_t>::mirror(idx_host, m.device);
  const std::vector<uint8_t> shown(test.pixels.begin(), test.pixels.begin() + int64_t(n) * m.input_dim());
  const DeviceArray<uint8_t> pixels = DeviceArray<uint8_t>::mirror(shown, m.device);
  ops::gather_pixels(*m.backend, pixels.data(), idx.data(), n, m.input_dim(), false, 0, kStreamTestBinarize, 0, nullptr, x.data());
  return x;
}

}  // namespace

Tensor sample_images(Model& model, int n, float temperature, uint64_t seed) {
  const ModelUse use(model, "sample");
  const FlushDenormalsScope flush_denormals;
  SampleOptions o;
  o.n = n;
  o.temperature = temperature;
  o.seed = seed;
  return model.decode(sample_latents(model, o));
}

std::pair<Tensor, Tensor> reconstruct_images(Model& model, const ImageSet& test, int n) {
  const ModelUse use(model, "reconstruct");
  const FlushDenormalsScope flush_denormals;
  ModelImpl& m = model.impl();
  m.check_image_size(test, "test");
  const Tensor x = first_test_images(m, test, n);
  // The posterior mean (through any posterior flow: encode_images' code); a conditional model
  // encodes and decodes each image with its own label.
  const LatentCodes codes = encode_images(model, test, n);
  const Tensor z = Tensor::from_host(codes.code(), {n, m.latent()}, m.device);
  return {x, model.decode(z, m.config.conditional ? codes.labels : std::vector<int32_t>{})};
}

Tensor reconstruct_keeping_levels(Model& model, const ImageSet& test, int n, int keep, float temperature, uint64_t seed) {
  const ModelUse use(model, "reconstruct");
  const FlushDenormalsScope flush_denormals;
  ModelImpl& m = model.impl();
  if (!m.latent_block.top_down()) throw Error("--keep-levels needs a hierarchical model (train one with --levels)");
  m.check_image_size(test, "test");
  if (!std::isfinite(temperature) || temperature < 0 || temperature > 100)
    throw Error("temperature must be in [0, 100], got " + std::to_string(temperature));
  const bool conditional = m.config.conditional;
  if (conditional) m.check_labels(&test.labels, test.count, "test set");
  const Tensor x = first_test_images(m, test, n);
  const std::vector<int32_t> labels =
      conditional ? std::vector<int32_t>(test.labels.begin(), test.labels.begin() + n) : std::vector<int32_t>{};
  const Tensor y = conditional ? m.labels_on_device(labels) : Tensor();
  // The forward at zero noise leaves the top's posterior mean and every head in place.
  const float* h = m.forward_eval(x.data(), n, 0, 0, 0.0f, conditional ? y.data() : nullptr);
  Tensor z({n, m.latent()}, m.device);
  m.latent_block.resample_below(*m.backend, h, n, keep, temperature, seed, z.data());
  return model.decode(z, labels);
}

}  // namespace vae
