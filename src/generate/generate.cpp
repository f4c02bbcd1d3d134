// Sampling strategies and the latent tools (vae/generate.hpp).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "backend/cpu/flush_denormals.hpp"
#include "backend/device_array.hpp"
#include "gather_pixels.cuh"
#include "model/model_impl.hpp"
#include "model/model_use.hpp"
#include "philox.cuh"
#include "vae/error.hpp"
#include "vae/generate.hpp"
#include "vae_math.cuh"

extern "C" void dsyev_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
                       double* work, const int* lwork, int* info);

namespace vae {
namespace {

constexpr double kHalfLog2Pi = 0.91893853320467274178;
constexpr double kVarianceFloor = 1e-6;

// log N(x; m, v) summed over L dimensions.
double diag_log_normal(const float* x, const double* m, const double* v, int L) {
  double acc = 0;
  for (int u = 0; u < L; ++u) {
    const double d = double(x[u]) - m[u];
    acc += -0.5 * d * d / v[u] - 0.5 * std::log(v[u]) - kHalfLog2Pi;
  }
  return acc;
}

// Symmetric eigen-decomposition (LAPACK): a [n, n] row-major in, eigenvectors as its rows out
// (ascending eigenvalues in w).
void symmetric_eigen(std::vector<double>& a, int n, std::vector<double>& w) {
  w.assign(static_cast<size_t>(n), 0.0);
  int lwork = -1, info = 0;
  double query = 0;
  dsyev_("V", "U", &n, a.data(), &n, w.data(), &query, &lwork, &info);
  lwork = static_cast<int>(query);
  std::vector<double> work(static_cast<size_t>(std::max(lwork, 1)));
  dsyev_("V", "U", &n, a.data(), &n, w.data(), work.data(), &lwork, &info);
  if (info != 0) throw Error("symmetric eigen-decomposition failed (LAPACK dsyev info " + std::to_string(info) + ")");
  // Column-major eigenvectors of a symmetric matrix are the row-major matrix's rows: nothing to do.
}

}  // namespace

AggregatePosterior fit_aggregate_posterior(const std::vector<float>& codes, int64_t n, int L, int K, uint64_t seed,
                                           int max_iterations) {
  if (n < 1 || L < 1 || static_cast<int64_t>(codes.size()) != n * L)
    throw Error("fit_aggregate_posterior: expected codes [n, latent], got " + std::to_string(codes.size()) + " values");
  if (K < 1 || K > n)
    throw Error("the aggregate posterior's mixture needs 1 to " + std::to_string(n) + " components (one per code at "
                "most), got " + std::to_string(K));
  AggregatePosterior g;
  g.components = K;
  g.latent = L;
  g.weights.assign(static_cast<size_t>(K), 1.0 / K);
  g.means.resize(static_cast<size_t>(K) * L);
  g.variances.resize(static_cast<size_t>(K) * L);
  // Start: K distinct codes chosen by Philox, every variance the data's.
  std::vector<double> mean(L, 0.0), var(L, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int u = 0; u < L; ++u) mean[u] += codes[static_cast<size_t>(i * L + u)];
  for (int u = 0; u < L; ++u) mean[u] /= double(n);
  for (int64_t i = 0; i < n; ++i)
    for (int u = 0; u < L; ++u) {
      const double d = codes[static_cast<size_t>(i * L + u)] - mean[u];
      var[u] += d * d;
    }
  std::vector<int64_t> chosen;
  for (int k = 0; k < K; ++k) {
    int64_t pick = 0;
    for (uint64_t attempt = 0;; ++attempt) {
      const Philox4 bits = philox_block(seed, kStreamPriorComponent, static_cast<uint64_t>(k), attempt, 0x61);
      pick = static_cast<int64_t>(((uint64_t(bits.v[0]) << 32) | bits.v[1]) % static_cast<uint64_t>(n));
      if (std::find(chosen.begin(), chosen.end(), pick) == chosen.end() || attempt > 64) break;
    }
    chosen.push_back(pick);
    for (int u = 0; u < L; ++u) {
      g.means[static_cast<size_t>(k) * L + u] = codes[static_cast<size_t>(pick * L + u)];
      g.variances[static_cast<size_t>(k) * L + u] = std::max(var[u] / double(n), kVarianceFloor);
    }
  }
  std::vector<double> resp(static_cast<size_t>(n) * K), point_ll(static_cast<size_t>(n));
  double last = -std::numeric_limits<double>::infinity();
  for (int it = 1; it <= max_iterations; ++it) {
    // E step: responsibilities, one point per item (any thread count gives the same bits).
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      double* r = resp.data() + i * K;
      double top = -std::numeric_limits<double>::infinity();
      for (int k = 0; k < K; ++k) {
        r[k] = std::log(g.weights[k]) + diag_log_normal(codes.data() + i * L, g.means.data() + int64_t(k) * L,
                                                        g.variances.data() + int64_t(k) * L, L);
        top = std::max(top, r[k]);
      }
      double sum = 0;
      for (int k = 0; k < K; ++k) sum += std::exp(r[k] - top);
      for (int k = 0; k < K; ++k) r[k] = std::exp(r[k] - top) / sum;
      point_ll[static_cast<size_t>(i)] = top + std::log(sum);
    }
    double ll = 0;
    for (int64_t i = 0; i < n; ++i) ll += point_ll[static_cast<size_t>(i)];
    ll /= double(n);
    g.mean_log_likelihood = ll;
    g.iterations = it;
    // M step: per component, the points in order (deterministic).
#pragma omp parallel for schedule(static)
    for (int k = 0; k < K; ++k) {
      double nk = 0;
      std::vector<double> s1(L, 0.0), s2(L, 0.0);
      for (int64_t i = 0; i < n; ++i) {
        const double r = resp[static_cast<size_t>(i * K + k)];
        nk += r;
        for (int u = 0; u < L; ++u) s1[u] += r * codes[static_cast<size_t>(i * L + u)];
      }
      const double denom = std::max(nk, 1e-12);
      for (int u = 0; u < L; ++u) s1[u] /= denom;
      for (int64_t i = 0; i < n; ++i) {
        const double r = resp[static_cast<size_t>(i * K + k)];
        for (int u = 0; u < L; ++u) {
          const double d = codes[static_cast<size_t>(i * L + u)] - s1[u];
          s2[u] += r * d * d;
        }
      }
      g.weights[k] = std::max(nk / double(n), 1e-12);
      for (int u = 0; u < L; ++u) {
        g.means[static_cast<size_t>(k) * L + u] = s1[u];
        g.variances[static_cast<size_t>(k) * L + u] = std::max(s2[u] / denom, kVarianceFloor);
      }
    }
    if (ll - last < 1e-4) break;
    last = ll;
  }
  double total = 0;
  for (double w : g.weights) total += w;
  for (double& w : g.weights) w /= total;
  return g;
}

Tensor sample_latents(Model& model, const SampleOptions& o) {
  const ModelUse use(model, "sample");
  if (o.n < 1 || o.n > 1 << 20) throw Error("number of samples must be in [1, 1048576], got " + std::to_string(o.n));
  if (!std::isfinite(o.temperature) || o.temperature < 0 || o.temperature > 100)
    throw Error("temperature must be in [0, 100], got " + std::to_string(o.temperature));
  ModelImpl& m = model.impl();
  const int L = m.latent();
  Tensor z({o.n, L}, m.device);
  if (o.source == SampleSource::Prior) {
    m.encode_pseudo_inputs();
    Prior& prior = m.latent_block.prior();
    Tensor y;
    if (prior.conditional()) {
      // p(z | y): each sample from its own label's Gaussian (one label for all, or one each).
      std::vector<int32_t> all = o.labels;
      if (all.size() == 1 && o.n > 1) all.assign(static_cast<size_t>(o.n), o.labels[0]);
      m.check_labels(&all, o.n, "sample");
      y = m.labels_on_device(all);
      prior.bind_labels(y.data(), 1);
    }
    // A hierarchy: the top at o.temperature (or the first of level_temperatures), each lower level at
    // its own entry of level_temperatures (the last for the levels past the list).
    std::vector<float> temperatures = o.level_temperatures;
    if (temperatures.empty()) temperatures.push_back(o.temperature);
    for (float t : temperatures)
      if (!std::isfinite(t) || t < 0 || t > 100) throw Error("level temperatures must be in [0, 100], got " + std::to_string(t));
    m.latent_block.sample_prior(*m.backend, z.data(), o.n, temperatures, o.seed);
    return z;
  }
  const AggregatePosterior* g = o.aggregate;
  if (!g || g->components < 1) throw Error("sampling from the aggregate posterior needs its fitted mixture");
  if (g->latent != L)
    throw Error("the aggregate posterior's mixture is over " + std::to_string(g->latent) + " dimensions but the model's "
                "latent has " + std::to_string(L));
  // A component by weight, then its mean plus T times its standard deviation times noise (Philox:
  // the component stream for the choice, the prior stream for the noise, row = sample).
  std::vector<double> cumulative(static_cast<size_t>(g->components));
  double acc = 0;
  for (int k = 0; k < g->components; ++k) cumulative[static_cast<size_t>(k)] = acc += g->weights[static_cast<size_t>(k)];
  std::vector<float> host(static_cast<size_t>(o.n) * L);
  for (int i = 0; i < o.n; ++i) {
    const double u = philox_uniform(philox_block(o.seed, kStreamPriorComponent, static_cast<uint64_t>(i), 0, 0).v[0]) * acc;
    const int k = static_cast<int>(std::min<ptrdiff_t>(
        std::upper_bound(cumulative.begin(), cumulative.end(), u) - cumulative.begin(), g->components - 1));
    philox_row_normals(o.seed, kStreamPrior, static_cast<uint64_t>(i), 0, L, true, [&](int u_, float eps) {
      const size_t j = static_cast<size_t>(k) * L + u_;
      host[static_cast<size_t>(i) * L + u_] =
          static_cast<float>(g->means[j] + double(o.temperature) * std::sqrt(g->variances[j]) * double(eps));
    });
  }
  z.copy_from_host(host.data(), z.numel());
  return z;
}

namespace {

// Decodes codes z [n, L] (any device) in batches of `batch` rows, each batch's images [rows,
// input_dim] written to target(first, rows) (model's device memory), then done(first, rows) called.
// labels: none, one for every code, or one per code.
template <class Target, class Done>
void decode_batches(Model& model, const Tensor& z, const std::vector<int32_t>& labels, int batch, Target target,
                    Done done, const uint64_t* pixel_seed = nullptr) {
  const ModelUse use(model, "decode");
  ModelImpl& m = model.impl();
  const int L = m.latent();
  if (z.shape().size() != 2 || z.dim(1) != L || z.dim(0) < 1)
    throw Error("decode: expected codes [n, " + std::to_string(L) + "] with n >= 1, got " + to_string(z.shape()));
  if (batch < 1) throw Error("decode: batch must be positive");
  const int64_t n = z.dim(0);
  std::vector<int32_t> all = labels;
  if (all.size() == 1 && n > 1) all.assign(static_cast<size_t>(n), labels[0]);
  m.check_labels(&all, n, "decode");
  const FlushDenormalsScope flush_denormals;
  const int rows_max = static_cast<int>(std::min<int64_t>(batch, n));
  const bool in_place = z.device() == m.device;  // codes read where they lie
  Tensor codes = in_place ? Tensor() : Tensor({rows_max, L}, m.device);
  const Tensor y = all.empty() ? Tensor() : m.labels_on_device(all);  // all n, in order
  for (int64_t first = 0; first < n; first += batch) {
    const int rows = static_cast<int>(std::min<int64_t>(batch, n - first));
    const Tensor zb = z.view(first * L, {rows, L});
    if (!in_place) codes.view(0, {rows, L}).copy_from(zb);
    ModelImpl::PixelDraw draw;
    if (pixel_seed) draw = {*pixel_seed, first};
    m.decode_images(in_place ? zb.data() : codes.data(), y.defined() ? y.data() + first : nullptr, rows,
                    target(first, rows), pixel_seed ? &draw : nullptr);
    done(first, rows);
  }
}

std::vector<float> decode_to_host(Model& model, const Tensor& z, const std::vector<int32_t>& labels, int batch,
                                  const uint64_t* pixel_seed = nullptr) {
  const int d = model.impl().input_dim();
  const int64_t n = z.shape().size() == 2 ? z.dim(0) : 0;
  std::vector<float> out(static_cast<size_t>(std::max<int64_t>(n, 0)) * d);
  if (model.device() == Device::CPU) {  // the host's memory is the device's: straight into the result
    decode_batches(model, z, labels, batch, [&](int64_t first, int) { return out.data() + first * d; },
                   [](int64_t, int) {}, pixel_seed);
    return out;
  }
  Tensor images({std::min<int64_t>(std::max(batch, 1), std::max<int64_t>(n, 1)), d}, model.device());
  decode_batches(
      model, z, labels, batch, [&](int64_t, int) { return images.data(); },
      [&](int64_t first, int rows) {
        images.view(0, {rows, d}).copy_to_host(out.data() + first * d, int64_t(rows) * d);  // one copy, no temporary
      },
      pixel_seed);
  return out;
}

// Encodes n images in batches at zero noise. batch_input(first, rows, x_buffer) returns the
// batch's grey levels [rows, input_dim] on the model's device (in x_buffer or anywhere else);
// labels, for a conditional model, are all n images' labels.
template <class BatchInput>
LatentTensors encode_batches(Model& model, int64_t n, const std::vector<int32_t>& labels, int batch,
                             BatchInput batch_input) {
  const ModelUse use(model, "encode");
  ModelImpl& m = model.impl();
  if (n < 1) throw Error("encode: the data set is empty");
  if (batch < 1) throw Error("encode: batch must be positive");
  const int L = m.latent(), d = m.input_dim();
  const bool conditional = m.config.conditional, flow = m.latent_block.has_posterior_flow();
  m.check_labels(&labels, n, "encode");
  const FlushDenormalsScope flush_denormals;
  LatentTensors c;
  c.mu = Tensor({n, L}, m.device);
  c.logvar = Tensor({n, L}, m.device);
  if (flow) c.codes = Tensor({n, L}, m.device);
  const int rows_max = static_cast<int>(std::min<int64_t>(batch, n));
  Tensor x({rows_max, d}, m.device);
  const Tensor y = conditional ? m.labels_on_device(labels) : Tensor();  // all n, in order: batch b reads y + first
  for (int64_t first = 0; first < n; first += batch) {
    const int rows = static_cast<int>(std::min<int64_t>(batch, n - first));
    const float* xb = batch_input(first, rows, x);
    // The forward at zero noise: the encoder's output, and z = mu pushed through any posterior flow.
    m.forward_eval(xb, rows, 0, first, 0.0f, conditional ? y.data() + first : nullptr);
    m.latent_block.moments(*m.backend, m.encoder.output_view(rows).data(), rows, c.mu.data() + first * L,
                           c.logvar.data() + first * L);
    if (flow) c.codes.view(first * L, {rows, L}).copy_from(m.z().view(0, {rows, L}));
  }
  return c;
}

}  // namespace

std::vector<float> decode_latents(Model& model, const std::vector<float>& z, int64_t n, const std::vector<int32_t>& labels,
                                  int batch) {
  const int L = model.impl().latent();
  if (n < 1 || static_cast<int64_t>(z.size()) != n * L)
    throw Error("decode: expected codes [n, " + std::to_string(L) + "], got " + std::to_string(z.size()) + " values");
  return decode_to_host(model, Tensor::from_host(z, {n, L}, model.device()), labels, batch);
}

Tensor decode_tensor(Model& model, const Tensor& z, const std::vector<int32_t>& labels, int batch,
                     const uint64_t* pixel_seed) {
  const int d = model.impl().input_dim();
  Tensor out;
  decode_batches(
      model, z, labels, batch,
      [&](int64_t first, int) {
        if (!out.defined()) out = Tensor({z.dim(0), d}, model.device());
        return out.data() + first * d;
      },
      [](int64_t, int) {}, pixel_seed);
  return out;
}

std::vector<float> sample_images(Model& model, const SampleOptions& o) {
  const ModelUse use(model, "sample");
  const FlushDenormalsScope flush_denormals;
  const Tensor z = sample_latents(model, o);  // on the model's device: decoded there without a host round trip
  return decode_to_host(model, z, o.labels, o.batch, o.draw_pixels ? &o.seed : nullptr);
}

Tensor sample_tensor(Model& model, const SampleOptions& o) {
  const ModelUse use(model, "sample");
  const FlushDenormalsScope flush_denormals;
  return decode_tensor(model, sample_latents(model, o), o.labels, o.batch, o.draw_pixels ? &o.seed : nullptr);
}

LatentTensors encode_tensor(Model& model, const Tensor& x, const std::vector<int32_t>& labels, int batch) {
  const int d = model.impl().input_dim();
  if (x.shape().size() != 2 || x.dim(1) != d)
    throw Error("encode: expected images [n, " + std::to_string(d) + "], got " + to_string(x.shape()));
  const bool in_place = x.device() == model.device();
  return encode_batches(model, x.dim(0), labels, batch, [&](int64_t first, int rows, Tensor& buffer) -> const float* {
    const Tensor xb = x.view(first * d, {rows, d});
    if (in_place) return xb.data();  // read where it lies: no copy
    buffer.view(0, {rows, d}).copy_from(xb);
    return buffer.data();
  });
}

LatentCodes encode_images(Model& model, const ImageSet& set, int64_t limit, int batch) {
  const ModelUse use(model, "encode");
  ModelImpl& m = model.impl();
  m.check_image_size(set, "the");
  const int64_t n = limit > 0 ? std::min(limit, set.count) : set.count;
  if (n < 1) throw Error("encode: the data set is empty");
  const int d = m.input_dim();
  if (m.config.conditional) m.check_labels(&set.labels, set.count, "encode");
  LatentCodes c;
  c.count = n;
  c.latent = m.latent();
  if (static_cast<int64_t>(set.labels.size()) >= n) c.labels.assign(set.labels.begin(), set.labels.begin() + n);
  // The images (grey levels) are gathered on the model's device, as evaluate does.
  const DeviceArray<uint8_t> pixels = DeviceArray<uint8_t>::mirror(set.pixels, m.device);
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  const DeviceArray<int32_t> index = DeviceArray<int32_t>::mirror(order, m.device);
  const std::vector<int32_t> labels = m.config.conditional ? c.labels : std::vector<int32_t>{};
  const LatentTensors t = encode_batches(model, n, labels, batch, [&](int64_t first, int rows, Tensor& x) -> const float* {
    ops::gather_pixels(*m.backend, pixels.data(), index.data() + first, rows, d, false, 0, kStreamTestBinarize, 0, nullptr, x.data());
    return x.data();
  });
  c.mu = t.mu.to_host();
  c.logvar = t.logvar.to_host();
  if (t.codes.defined()) c.codes = t.codes.to_host();
  return c;
}

std::vector<float> interpolate_latents(const std::vector<float>& a, const std::vector<float>& b, int steps, bool spherical) {
  if (a.size() != b.size() || a.empty()) throw Error("interpolate: the two codes must have the same, nonzero size");
  if (steps < 2) throw Error("interpolate: need at least 2 steps, got " + std::to_string(steps));
  const size_t L = a.size();
  double na = 0, nb = 0, dot = 0;
  for (size_t u = 0; u < L; ++u) na += double(a[u]) * a[u], nb += double(b[u]) * b[u], dot += double(a[u]) * b[u];
  na = std::sqrt(na), nb = std::sqrt(nb);
  const double omega = na > 0 && nb > 0 ? std::acos(std::clamp(dot / (na * nb), -1.0, 1.0)) : 0.0;
  std::vector<float> out(static_cast<size_t>(steps) * L);
  for (int s = 0; s < steps; ++s) {
    const double t = double(s) / (steps - 1);
    double wa = 1 - t, wb = t;
    if (spherical && omega > 1e-6) {
      wa = std::sin((1 - t) * omega) / std::sin(omega);
      wb = std::sin(t * omega) / std::sin(omega);
    }
    for (size_t u = 0; u < L; ++u) out[static_cast<size_t>(s) * L + u] = static_cast<float>(wa * a[u] + wb * b[u]);
  }
  return out;
}

std::vector<float> principal_components_2d(const std::vector<float>& codes, int64_t n, int L, double explained[2]) {
  if (L < 2 || n < 2 || static_cast<int64_t>(codes.size()) != n * L)
    throw Error("principal components need at least 2 codes of at least 2 dimensions");
  std::vector<double> mean(L, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int u = 0; u < L; ++u) mean[u] += codes[static_cast<size_t>(i * L + u)];
  for (double& v : mean) v /= double(n);
  std::vector<double> cov(static_cast<size_t>(L) * L, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int a = 0; a < L; ++a) {
      const double da = codes[static_cast<size_t>(i * L + a)] - mean[a];
      for (int b = a; b < L; ++b) cov[static_cast<size_t>(a) * L + b] += da * (codes[static_cast<size_t>(i * L + b)] - mean[b]);
    }
  for (int a = 0; a < L; ++a)
    for (int b = a; b < L; ++b) cov[static_cast<size_t>(b) * L + a] = cov[static_cast<size_t>(a) * L + b] /= double(n - 1);
  std::vector<double> w;
  symmetric_eigen(cov, L, w);
  double total = 0;
  for (double v : w) total += std::max(v, 0.0);
  std::vector<float> out(static_cast<size_t>(n) * 2);
  for (int c = 0; c < 2; ++c) {
    const int k = L - 1 - c;  // ascending eigenvalues: the largest last
    const double* v = cov.data() + static_cast<size_t>(k) * L;
    // A fixed sign (the largest entry positive) so the plot does not flip between runs.
    int big = 0;
    for (int u = 1; u < L; ++u)
      if (std::fabs(v[u]) > std::fabs(v[big])) big = u;
    const double sign = v[big] < 0 ? -1.0 : 1.0;
    explained[c] = total > 0 ? std::max(w[k], 0.0) / total : 0.0;
    for (int64_t i = 0; i < n; ++i) {
      double p = 0;
      for (int u = 0; u < L; ++u) p += (codes[static_cast<size_t>(i * L + u)] - mean[u]) * v[u];
      out[static_cast<size_t>(i) * 2 + c] = static_cast<float>(sign * p);
    }
  }
  return out;
}

double frechet_distance(const std::vector<float>& a, int64_t na, const std::vector<float>& b, int64_t nb, int D) {
  if (D < 1 || na < 2 || nb < 2 || static_cast<int64_t>(a.size()) != na * D || static_cast<int64_t>(b.size()) != nb * D)
    throw Error("frechet_distance: expected two sets of at least 2 feature vectors of " + std::to_string(D));
  auto moments = [D](const std::vector<float>& x, int64_t n, std::vector<double>& mean, std::vector<double>& cov) {
    mean.assign(D, 0.0);
    cov.assign(static_cast<size_t>(D) * D, 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int u = 0; u < D; ++u) mean[u] += x[static_cast<size_t>(i * D + u)];
    for (double& v : mean) v /= double(n);
#pragma omp parallel for schedule(static)
    for (int p = 0; p < D; ++p)
      for (int q = p; q < D; ++q) {
        double s = 0;
        for (int64_t i = 0; i < n; ++i)
          s += (x[static_cast<size_t>(i * D + p)] - mean[p]) * (x[static_cast<size_t>(i * D + q)] - mean[q]);
        cov[static_cast<size_t>(p) * D + q] = cov[static_cast<size_t>(q) * D + p] = s / double(n - 1);
      }
  };
  std::vector<double> m1, s1, m2, s2;
  moments(a, na, m1, s1);
  moments(b, nb, m2, s2);
  // S1^1/2 from S1's eigen-decomposition (negative rounding clipped), then the symmetric
  // M = S1^1/2 S2 S1^1/2, whose square root's trace equals tr((S1 S2)^1/2).
  std::vector<double> v1 = s1, w1;
  symmetric_eigen(v1, D, w1);
  std::vector<double> root(static_cast<size_t>(D) * D, 0.0);
  for (int k = 0; k < D; ++k) {
    const double r = std::sqrt(std::max(w1[k], 0.0));
    const double* v = v1.data() + static_cast<size_t>(k) * D;
    for (int p = 0; p < D; ++p)
      for (int q = 0; q < D; ++q) root[static_cast<size_t>(p) * D + q] += r * v[p] * v[q];
  }
  std::vector<double> t(static_cast<size_t>(D) * D, 0.0), mm(static_cast<size_t>(D) * D, 0.0);
  for (int p = 0; p < D; ++p)
    for (int k = 0; k < D; ++k)
      for (int q = 0; q < D; ++q) t[static_cast<size_t>(p) * D + q] += root[static_cast<size_t>(p) * D + k] * s2[static_cast<size_t>(k) * D + q];
  for (int p = 0; p < D; ++p)
    for (int k = 0; k < D; ++k)
      for (int q = 0; q < D; ++q) mm[static_cast<size_t>(p) * D + q] += t[static_cast<size_t>(p) * D + k] * root[static_cast<size_t>(k) * D + q];
  for (int p = 0; p < D; ++p)
    for (int q = p + 1; q < D; ++q) {
      const double s = 0.5 * (mm[static_cast<size_t>(p) * D + q] + mm[static_cast<size_t>(q) * D + p]);
      mm[static_cast<size_t>(p) * D + q] = mm[static_cast<size_t>(q) * D + p] = s;
    }
  std::vector<double> wm;
  symmetric_eigen(mm, D, wm);
  double trace_root = 0, trace = 0, dist = 0;
  for (double v : wm) trace_root += std::sqrt(std::max(v, 0.0));
  for (int u = 0; u < D; ++u) {
    trace += s1[static_cast<size_t>(u) * D + u] + s2[static_cast<size_t>(u) * D + u];
    dist += (m1[u] - m2[u]) * (m1[u] - m2[u]);
  }
  return std::max(0.0, dist + trace - 2 * trace_root);
}

}  // namespace vae
