#include "cli/generate_commands.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

namespace vae::cli {
namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Fashion-MNIST's class names, for the data set this engine defaults to.
const std::vector<std::string> kFashionMnistNames = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                     "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

std::vector<std::string> class_names_for(const GenerateCommands& g, const Dataset& d) {
  if (!g.class_names.empty()) {
    std::vector<std::string> names;
    size_t start = 0;
    while (start <= g.class_names.size()) {
      const size_t comma = std::min(g.class_names.find(',', start), g.class_names.size());
      names.push_back(g.class_names.substr(start, comma - start));
      start = comma + 1;
    }
    return names;
  }
  if (!d.class_names.empty()) return d.class_names;
  std::string path = d.source;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (ends_with(path, "fashion-mnist")) return kFashionMnistNames;
  return {};
}

const ImageSet& split_of(const Dataset& d, const std::string& split) {
  if (split == "train") return d.train;
  if (split == "test") return d.test;
  throw Error("--split must be train or test, got '" + split + "'");
}

// The images [n, C*H*W] in [0, 1] of a set's rows.
std::vector<float> images_of(const ImageSet& set, const std::vector<int64_t>& rows) {
  const int d = set.pixels_per_image();
  std::vector<float> x;
  x.reserve(rows.size() * d);
  for (int64_t r : rows)
    for (int i = 0; i < d; ++i) x.push_back(set.pixels[static_cast<size_t>(r * d + i)] / 255.0f);
  return x;
}

void check_index(int64_t index, const ImageSet& set, const std::string& flag, const std::string& split) {
  if (index < 0 || index >= set.count)
    throw Error(flag + " " + std::to_string(index) + " is past the " + split + " set's " + std::to_string(set.count) +
                " images (indices 0.." + std::to_string(set.count - 1) + ")");
}

// A --label value: a class index, or "all" (one row per class). Empty: none given.
std::optional<int32_t> parse_label(const std::string& text) {
  if (text.empty() || text == "all") return std::nullopt;
  int32_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size())
    throw Error("--label must be a class index or 'all', got '" + text + "'");
  return v;
}

void check_label_flag(const Model& model, const std::string& label) {
  if (!label.empty() && !model.config().conditional)
    throw Error("--label " + label + ": this model is not conditional, so it cannot be asked for a label (train one "
                "with --conditional on a data set with labels)");
  if (const auto v = parse_label(label); v && (*v < 0 || *v >= model.config().classes))
    throw Error("--label " + label + " is out of range: the model has classes 0.." +
                std::to_string(model.config().classes - 1));
}

void write_images(const std::string& path, const std::vector<float>& images, int n, const ModelConfig& c, int columns,
                  int scale, const std::vector<std::string>& row_labels = {}) {
  if (ends_with(path, ".npy")) {
    write_npy(path, images, {n, c.image_channels, c.image_height, c.image_width});
    return;
  }
  if (!ends_with(path, ".png")) throw Error("--out '" + path + "' must end in .png or .npy");
  write_png_grid_scaled(path, images, n, c.image_channels, c.image_height, c.image_width, columns, scale, row_labels);
}

// A conditional model's class names for its grid rows: the sub-folders of the PNG folder its run
// trained on, Fashion-MNIST's names for that data set, else "class K".
std::vector<std::string> class_row_labels(const Model& model) {
  const int classes = model.config().classes;
  std::vector<std::string> names;
  std::string data = model.origin().data;
  while (data.size() > 1 && data.back() == '/') data.pop_back();
  std::error_code ec;
  if (ends_with(data, "fashion-mnist") && classes == static_cast<int>(kFashionMnistNames.size())) {
    names = kFashionMnistNames;
  } else if (!data.empty() && std::filesystem::is_directory(data, ec)) {
    for (const auto& entry : std::filesystem::directory_iterator(data, ec))
      if (entry.is_directory(ec)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    if (static_cast<int>(names.size()) != classes) names.clear();
  }
  if (names.empty()) {
    for (int k = 0; k < classes; ++k) names.push_back("class " + std::to_string(k));
    return names;
  }
  for (int k = 0; k < classes; ++k) names[static_cast<size_t>(k)] = std::to_string(k) + " " + names[static_cast<size_t>(k)];
  return names;
}

AggregatePosterior fit_aggregate(Model& model, const GenerateCommands& g) {
  const auto start = clock_type::now();
  const Dataset d = load_data_for(model, g.data);
  const LatentCodes codes = encode_images(model, d.train, g.fit_limit);
  AggregatePosterior a = fit_aggregate_posterior(codes.code(), codes.count, codes.latent, g.components, g.seed);
  std::printf("fitted a %d-component mixture to %lld training posterior means in %.1fs (%d EM iterations, mean log "
              "density %.3f)\n", a.components, static_cast<long long>(codes.count), seconds_since(start), a.iterations,
              a.mean_log_likelihood);
  return a;
}

SampleSource parse_source(const std::string& s) {
  if (s == "prior") return SampleSource::Prior;
  if (s == "aggregate") return SampleSource::Aggregate;
  throw Error("--from must be prior or aggregate, got '" + s + "'");
}

// The model's samples as SampleOptions says, with the source's mixture fitted when it needs one.
struct Sampled {
  std::vector<float> images;
  double seconds = 0;
};
std::string format_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// "temperature 0.8", or a hierarchy's "temperatures 1,0.7 (top first)" when given per level.
std::string temperature_text(const GenerateCommands& g) {
  if (g.level_temperatures.empty()) return "temperature " + format_number(g.temperature);
  std::string s = "temperatures ";
  for (size_t i = 0; i < g.level_temperatures.size(); ++i)
    s += std::string(i ? "," : "") + format_number(g.level_temperatures[i]);
  return s + " (top first)";
}

Sampled draw(Model& model, SampleOptions o, const GenerateCommands& g, AggregatePosterior* fitted) {
  o.source = parse_source(g.from);
  if (o.source == SampleSource::Aggregate) {
    *fitted = fit_aggregate(model, g);
    o.aggregate = fitted;
  }
  // One batch first, untimed: the backend's first calls choose GEMM plans and allocate.
  SampleOptions warm = o;
  warm.n = std::min(o.n, o.batch);
  if (warm.labels.size() > static_cast<size_t>(warm.n)) warm.labels.resize(static_cast<size_t>(warm.n));
  sample_images(model, warm);
  const auto start = clock_type::now();
  Sampled s;
  s.images = sample_images(model, o);
  s.seconds = seconds_since(start);
  return s;
}

int run_sample(GenerateCommands& g) {
  Model model = load_model(g.checkpoint, g.device, g.strict_fp32);
  check_label_flag(model, g.label);
  const ModelConfig& c = model.config();
  SampleOptions o;
  o.n = g.n;
  o.temperature = g.temperature;
  o.level_temperatures = g.level_temperatures;
  o.draw_pixels = g.pixels == "sample";
  o.seed = g.seed;
  int columns = g.columns;
  std::vector<std::string> row_labels;
  if (const auto v = parse_label(g.label)) {
    o.labels.assign(static_cast<size_t>(g.n), *v);
  } else if (c.conditional) {  // one row per class, --columns samples each, labelled with its class
    o.n = c.classes * g.columns;
    for (int i = 0; i < o.n; ++i) o.labels.push_back(i / g.columns);
    row_labels = class_row_labels(model);
  }
  AggregatePosterior fitted;
  const Sampled s = draw(model, o, g, &fitted);
  write_images(g.out, s.images, o.n, c, columns, g.scale, row_labels);
  std::printf("wrote %d samples (%s, %s%s) to %s; generated at %.0f samples/s on %s\n", o.n, g.from.c_str(),
              temperature_text(g).c_str(), c.conditional ? (g.label.empty() || g.label == "all" ? ", one row per class" : (", label " + g.label).c_str()) : "",
              g.out.c_str(), o.n / std::max(s.seconds, 1e-9), to_string(model.device()).c_str());
  return 0;
}

int run_encode(GenerateCommands& g) {
  Model model = load_model(g.checkpoint, g.device, g.strict_fp32);
  const Dataset d = load_data_for(model, g.data);
  const ImageSet& set = split_of(d, g.split);
  const auto start = clock_type::now();
  const LatentCodes codes = encode_images(model, set, g.limit);
  const double secs = seconds_since(start);
  std::error_code ec;
  std::filesystem::create_directories(g.out, ec);
  if (ec) throw Error("cannot create output folder '" + g.out + "': " + ec.message());
  const std::filesystem::path dir(g.out);
  write_npy((dir / "mu.npy").string(), codes.mu, {codes.count, codes.latent});
  write_npy((dir / "logvar.npy").string(), codes.logvar, {codes.count, codes.latent});
  // With a posterior flow, mu is its base Gaussian's mean; z.npy is that mean through the flow, the
  // code vae decode takes.
  if (!codes.codes.empty()) write_npy((dir / "z.npy").string(), codes.codes, {codes.count, codes.latent});
  if (!codes.labels.empty()) write_npy((dir / "labels.npy").string(), codes.labels, {codes.count});
  std::printf("encoded %lld %s images in %.2fs: wrote %s/{mu.npy,logvar.npy%s%s} ([%lld, %d] float32)\n",
              static_cast<long long>(codes.count), g.split.c_str(), secs, g.out.c_str(), codes.codes.empty() ? "" : ",z.npy",
              codes.labels.empty() ? "" : ",labels.npy", static_cast<long long>(codes.count), codes.latent);
  return 0;
}

int run_decode(GenerateCommands& g) {
  Model model = load_model(g.checkpoint, g.device, g.strict_fp32);
  check_label_flag(model, g.label);
  const ModelConfig& c = model.config();
  std::vector<int64_t> shape;
  const std::vector<float> z = read_npy_floats(g.codes, shape);
  if (shape.size() != 2 || shape[1] != c.latent || shape[0] < 1) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    throw Error("--codes '" + g.codes + "' has shape " + s + ") but this model decodes codes of shape [n, " +
                std::to_string(c.latent) + "] (float32; vae encode writes them)");
  }
  const int64_t n = shape[0];
  if (n > 1 << 20) throw Error("--codes holds more than 2^20 codes; decode them in parts");
  for (float v : z)
    if (!std::isfinite(v)) throw Error("--codes '" + g.codes + "' holds a value that is not finite");
  std::vector<int32_t> labels;
  if (!g.code_labels.empty()) {
    if (!c.conditional) throw Error("--code-labels: this model is not conditional, so it takes no labels");
    labels = read_npy_labels(g.code_labels);
  } else if (const auto v = parse_label(g.label)) {
    labels.assign(1, *v);
  } else if (c.conditional) {
    throw Error("this model is conditional: give --label L (for every code) or --code-labels labels.npy (one per code)");
  }
  const auto start = clock_type::now();
  const std::vector<float> images = decode_latents(model, z, n, labels);
  const double secs = seconds_since(start);
  write_images(g.out, images, static_cast<int>(n), c, g.columns, g.scale);
  std::printf("decoded %lld codes to %s (%.0f codes/s)\n", static_cast<long long>(n), g.out.c_str(), n / std::max(secs, 1e-9));
  return 0;
}

// Posterior means of some of a set's images (and their labels for a conditional model).
std::vector<float> posterior_means(Model& model, const ImageSet& set, const std::vector<int64_t>& rows,
                                   std::vector<int32_t>* labels) {
  ImageSet pick;
  pick.count = static_cast<int64_t>(rows.size());
  pick.channels = set.channels, pick.height = set.height, pick.width = set.width;
  const int d = set.pixels_per_image();
  for (int64_t r : rows) {
    pick.pixels.insert(pick.pixels.end(), set.pixels.begin() + r * d, set.pixels.begin() + (r + 1) * d);
    if (!set.labels.empty()) pick.labels.push_back(set.labels[static_cast<size_t>(r)]);
  }
  const LatentCodes codes = encode_images(model, pick);
  if (labels) *labels = pick.labels;
  return codes.code();
}

int run_interpolate(GenerateCommands& g) {
  Model model = load_model(g.checkpoint, g.device, g.strict_fp32);
  check_label_flag(model, g.label);
  if (g.mode != "linear" && g.mode != "spherical" && g.mode != "both")
    throw Error("--mode must be linear, spherical or both, got '" + g.mode + "'");
  const Dataset d = load_data_for(model, g.data);
  const ImageSet& set = split_of(d, g.split);
  check_index(g.index_from, set, "--from-index", g.split);
  check_index(g.index_to, set, "--to-index", g.split);
  const ModelConfig& c = model.config();
  const int L = c.latent, dim = c.input_dim();
  std::vector<int32_t> labels;
  const std::vector<float> mu = posterior_means(model, set, {g.index_from, g.index_to}, &labels);
  const std::vector<float> a(mu.begin(), mu.begin() + L), b(mu.begin() + L, mu.end());
  std::vector<int32_t> label;  // the first image's class, or --label
  if (c.conditional) label = {parse_label(g.label).value_or(labels.at(0))};
  const std::vector<float> ends = images_of(set, {g.index_from, g.index_to});
  std::vector<float> grid;
  std::vector<std::string> row_labels;
  int rows = 0;
  for (const bool spherical : {false, true}) {
    if ((spherical && g.mode == "linear") || (!spherical && g.mode == "spherical")) continue;
    row_labels.push_back(spherical ? "spherical" : "linear");
    const std::vector<float> path = decode_latents(model, interpolate_latents(a, b, g.steps, spherical), g.steps, label);
    // Each row: the first image, the decoded path, the second image.
    grid.insert(grid.end(), ends.begin(), ends.begin() + dim);
    grid.insert(grid.end(), path.begin(), path.end());
    grid.insert(grid.end(), ends.begin() + dim, ends.end());
    ++rows;
  }
  write_png_grid_scaled(g.out, grid, rows * (g.steps + 2), c.image_channels, c.image_height, c.image_width, g.steps + 2,
                        g.scale, row_labels);
  std::printf("wrote %s: %s image %lld to image %lld in %d steps (%s), the two images at the ends\n", g.out.c_str(),
              g.split.c_str(), static_cast<long long>(g.index_from), static_cast<long long>(g.index_to), g.steps, g.mode.c_str());
  return 0;
}

int run_traverse(GenerateCommands& g) {
  Model model = load_model(g.checkpoint, g.device, g.strict_fp32);
  check_label_flag(model, g.label);
  const Dataset d = load_data_for(model, g.data);
  const ImageSet& set = split_of(d, g.split);
  check_index(g.index, set, "--index", g.split);
  const ModelConfig& c = model.config();
  const int L = c.latent;
  // The dimensions in order of their KL on (up to 2000 of) the test set; the posterior means'
  // variance where the prior does not factorise.
  EvalOptions eo;
  eo.limit = 2000;
  eo.mi_samples = 0;
  const EvalResult r = evaluate(model, d.test, eo);
  const std::vector<double>& score = r.kl_per_dim.empty() ? r.mean_variance : r.kl_per_dim;
  std::vector<int> order(L);
  for (int u = 0; u < L; ++u) order[u] = u;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[a] > score[b]; });
  const int dims = std::min(g.dims, L);
  std::vector<int32_t> labels;
  const std::vector<float> base = posterior_means(model, set, {g.index}, &labels);
  std::vector<float> z;
  for (int row = 0; row < dims; ++row)
    for (int s = 0; s < g.steps; ++s) {
      std::vector<float> v = base;
      v[order[row]] = g.steps == 1 ? 0.0f : -g.range + 2.0f * g.range * s / (g.steps - 1);
      z.insert(z.end(), v.begin(), v.end());
    }
  std::vector<int32_t> label;
  if (c.conditional) label = {parse_label(g.label).value_or(labels.at(0))};
  const std::vector<float> images = decode_latents(model, z, int64_t(dims) * g.steps, label);
  std::vector<std::string> row_labels;  // each row's dimension and its KL (or the means' variance)
  for (int row = 0; row < dims; ++row) {
    char label[48];
    std::snprintf(label, sizeof label, "z%d %s %.2f", order[row], r.kl_per_dim.empty() ? "var" : "KL", score[order[row]]);
    row_labels.push_back(label);
  }
  write_png_grid_scaled(g.out, images, dims * g.steps, c.image_channels, c.image_height, c.image_width, g.steps, g.scale,
                        row_labels);
  std::printf("wrote %s: rows are dimensions", g.out.c_str());
  for (int row = 0; row < dims; ++row) std::printf(" %d (%s %.2f)", order[row], r.kl_per_dim.empty() ? "var" : "KL", score[order[row]]);
  std::printf(", each from %g to %g around %s image %lld's posterior mean\n", -g.range, g.range, g.split.c_str(),
              static_cast<long long>(g.index));
  return 0;
}

int run_plot_latent(GenerateCommands& g) {
  Model model = load_model(g.checkpoint, g.device, g.strict_fp32);
  const Dataset d = load_data_for(model, g.data);
  const ImageSet& set = split_of(d, g.split);
  const LatentCodes codes = encode_images(model, set, g.limit > 0 ? g.limit : 5000);
  const int L = codes.latent;
  std::vector<float> points;
  std::string title, xn = "z0", yn = "z1";
  if (L == 1) {
    points.resize(static_cast<size_t>(codes.count) * 2, 0.0f);
    for (int64_t i = 0; i < codes.count; ++i) points[static_cast<size_t>(i * 2)] = codes.code()[static_cast<size_t>(i)];
    title = "posterior means (1-D latent)";
    yn = "";
  } else if (L == 2) {
    points = codes.code();
    title = "posterior means (2-D latent)";
  } else {
    double explained[2];
    points = principal_components_2d(codes.code(), codes.count, L, explained);
    char t[160];
    std::snprintf(t, sizeof t, "PCA of %d-D posterior means: %.0f%% + %.0f%% of variance", L, 100 * explained[0],
                  100 * explained[1]);
    title = t, xn = "PC1", yn = "PC2";
  }
  write_scatter_png(g.out, points, codes.count, codes.labels, class_names_for(g, d), title, xn, yn);
  std::printf("wrote %s: %lld %s images' posterior means%s\n", g.out.c_str(), static_cast<long long>(codes.count),
              g.split.c_str(), codes.labels.empty() ? " (no labels: one colour)" : ", coloured by label");
  return 0;
}

int run_classifier(GenerateCommands& g) {
  const Dataset d = load_data(g.data);
  if (d.train.labels.empty())
    throw Error("the classifier needs labels: '" + d.source + "' has none (IDX label files, --labels for a .npy, "
                "or class sub-folders of PNGs)");
  ClassifierConfig cc;
  cc.channels = d.train.channels, cc.height = d.train.height, cc.width = d.train.width;
  cc.classes = 0;
  for (int32_t y : d.train.labels) cc.classes = std::max(cc.classes, y + 1);
  cc.classes = std::max(cc.classes, 2);
  Classifier clf(cc, parse_device(g.device));
  const auto start = clock_type::now();
  const std::vector<double> acc = clf.train(d, g.epochs, g.lr, g.seed);
  for (size_t e = 0; e < acc.size(); ++e) std::printf("epoch %zu/%d  test accuracy %.4f\n", e + 1, g.epochs, acc[e]);
  clf.save(g.out);
  std::printf("wrote %s (%d classes, %.1fs)\n", g.out.c_str(), cc.classes, seconds_since(start));
  return 0;
}

int run_quality(GenerateCommands& g) {
  Model model = load_model(g.checkpoint, g.device, g.strict_fp32);
  Classifier clf = Classifier::load(g.classifier, parse_device(g.device));
  const ModelConfig& c = model.config();
  const ClassifierConfig& cc = clf.config();
  if (cc.channels != c.image_channels || cc.height != c.image_height || cc.width != c.image_width)
    throw Error("the classifier takes " + std::to_string(cc.channels) + "x" + std::to_string(cc.height) + "x" +
                std::to_string(cc.width) + " images but the model makes " + std::to_string(c.image_channels) + "x" +
                std::to_string(c.image_height) + "x" + std::to_string(c.image_width));
  if (c.conditional && c.classes != cc.classes)
    throw Error("the model is conditional on " + std::to_string(c.classes) + " classes but the classifier has " +
                std::to_string(cc.classes));
  const Dataset d = load_data_for(model, g.data);
  const int64_t n_real = std::min<int64_t>(g.quality_n, d.test.count);
  std::vector<int64_t> rows(static_cast<size_t>(n_real));
  for (int64_t i = 0; i < n_real; ++i) rows[static_cast<size_t>(i)] = i;
  std::vector<float> real_features, sample_features;
  clf.predict(images_of(d.test, rows), n_real, &real_features);
  SampleOptions o;
  o.n = g.quality_n;
  o.temperature = g.temperature;
  o.level_temperatures = g.level_temperatures;
  o.draw_pixels = g.pixels == "sample";
  o.seed = g.seed;
  if (c.conditional)
    for (int i = 0; i < o.n; ++i) o.labels.push_back(i % c.classes);
  AggregatePosterior fitted;
  const Sampled s = draw(model, o, g, &fitted);
  const std::vector<int32_t> predicted = clf.predict(s.images, o.n, &sample_features);
  const int F = cc.hidden.back();
  const double fd = frechet_distance(real_features, n_real, sample_features, o.n, F);
  // The floor real images reach: the training set's first n against the test set.
  const int64_t n_train = std::min<int64_t>(g.quality_n, d.train.count);
  std::vector<int64_t> train_rows(static_cast<size_t>(n_train));
  for (int64_t i = 0; i < n_train; ++i) train_rows[static_cast<size_t>(i)] = i;
  std::vector<float> train_features;
  clf.predict(images_of(d.train, train_rows), n_train, &train_features);
  const double fd_real = frechet_distance(real_features, n_real, train_features, n_train, F);
  json j;
  j["n"] = o.n;
  j["source"] = g.from;
  j["temperature"] = g.temperature;
  j["frechet_distance"] = fd;
  j["frechet_distance_train_vs_test"] = fd_real;
  j["samples_per_s"] = o.n / std::max(s.seconds, 1e-9);
  j["device"] = to_string(model.device());
  if (!d.test.labels.empty()) j["classifier_test_accuracy"] = clf.accuracy(d.test);
  if (c.conditional) {
    int64_t right = 0;
    std::vector<int64_t> asked(static_cast<size_t>(c.classes), 0), right_of(static_cast<size_t>(c.classes), 0);
    for (int i = 0; i < o.n; ++i) {
      const auto label = static_cast<size_t>(o.labels[static_cast<size_t>(i)]);
      const bool ok = predicted[static_cast<size_t>(i)] == o.labels[static_cast<size_t>(i)];
      right += ok;
      ++asked[label];
      right_of[label] += ok;
    }
    j["conditional_accuracy"] = double(right) / o.n;
    // Per asked label: which classes the model draws well and which it confuses.
    std::vector<double> per_class;
    for (size_t k = 0; k < asked.size(); ++k) per_class.push_back(asked[k] > 0 ? double(right_of[k]) / asked[k] : 0.0);
    j["conditional_accuracy_per_class"] = per_class;
  }
  if (g.as_json) {
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("samples                  %d from the %s at %s (%.0f samples/s on %s)\n", o.n, g.from.c_str(),
              temperature_text(g).c_str(), j["samples_per_s"].get<double>(), j["device"].get<std::string>().c_str());
  std::printf("Frechet distance         %.3f (classifier features of samples vs %lld test images)\n", fd,
              static_cast<long long>(n_real));
  std::printf("  real images' floor     %.3f (%lld training vs test images)\n", fd_real, static_cast<long long>(n_train));
  if (j.contains("classifier_test_accuracy"))
    std::printf("classifier accuracy      %.4f on the test set\n", j["classifier_test_accuracy"].get<double>());
  if (c.conditional)
  {
    std::printf("conditional accuracy     %.4f (the classifier's class = the asked label)\n",
                j["conditional_accuracy"].get<double>());
    std::printf("  per asked label       ");
    for (double v : j["conditional_accuracy_per_class"].get<std::vector<double>>()) std::printf(" %.3f", v);
    std::printf("\n");
  }
  return 0;
}

void add_data(CLI::App* cmd, GenerateCommands& g) { add_data_flags(cmd, g.data, true); }

void add_model(CLI::App* cmd, GenerateCommands& g) {
  cmd->add_option("--checkpoint", g.checkpoint, "model.safetensors from vae train")->required();
  cmd->add_option("--device", g.device, "cpu|cuda|auto");
  cmd->add_flag("--strict-fp32", g.strict_fp32, "CUDA: strict FP32 GEMMs instead of TF32 tensor cores");
  cmd->add_option("--threads", g.threads, "CPU threads, 0 = all cores")->check(CLI::Range(0, 1024));
}

void add_grid(CLI::App* cmd, GenerateCommands& g, bool with_columns) {
  if (with_columns) cmd->add_option("--columns", g.columns, "images per grid row (default 8)")->check(CLI::Range(1, 1024));
  cmd->add_option("--scale", g.scale, "draw each pixel as S x S (default 1)")->check(CLI::Range(1, 16));
}

void add_sampling(CLI::App* cmd, GenerateCommands& g) {
  cmd->add_option("--temperature", g.temperature, "spread of the samples: the prior's, or each fitted component's (default 1)")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--level-temperatures", g.level_temperatures,
                  "hierarchical models, from the prior: each level's temperature from the top, e.g. 1,0.7 (the last "
                  "serves the levels past the list; default: --temperature for all)")
      ->delimiter(',')
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--pixels", g.pixels,
                  "dlogistic and dmol models: mean (the distribution's mean; the mixture's most probable component's) "
                  "or sample (each pixel drawn from it) (default mean)")
      ->check(CLI::IsMember({"mean", "sample"}));
  cmd->add_option("--from", g.from, "prior|aggregate: the model's prior, or a mixture of Gaussians fitted to the "
                                    "training set's posterior means (default prior)");
  cmd->add_option("--components", g.components, "aggregate: the mixture's Gaussians (default 10)")->check(CLI::Range(1, 4096));
  cmd->add_option("--fit-limit", g.fit_limit, "aggregate: fit to the first N training images (default all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  cmd->add_option("--seed", g.seed, "random seed (default 0)");
}

}  // namespace

constexpr const char* kDefaultData = "/usr/share/datasets/fashion-mnist";

void add_data_flags(CLI::App* cmd, DataFlags& f, bool for_checkpoint) {
  const std::string given = for_checkpoint ? " (default: the data the checkpoint's run trained on, else Fashion-MNIST)"
                                           : " (default Fashion-MNIST)";
  const std::string split = for_checkpoint ? " (default: the run's split, else 0.1)" : " (default 0.1)";
  cmd->add_option("--data", f.data, "the data: an IDX folder, a .npy array or a PNG folder" + given);
  cmd->add_option("--labels", f.labels, "labels .npy for a .npy --data");
  cmd->add_option("--test-fraction", f.test_fraction,
                  "share of a .npy or PNG source held out as the test set; IDX folders with t10k files use those" + split)
      ->check(CLI::Range(1e-6, 0.999999));
}

std::string create_parent_folder(const std::string& file) {
  namespace fs = std::filesystem;
  const fs::path parent = fs::path(file).parent_path();
  std::error_code ec;
  if (parent.empty() || fs::is_directory(parent, ec)) return {};
  fs::path top = parent;
  while (top.has_parent_path() && top.parent_path() != top && !fs::exists(top.parent_path(), ec)) top = top.parent_path();
  fs::create_directories(parent, ec);
  if (ec) throw Error("cannot create folder '" + parent.string() + "' for '" + file + "': " + ec.message());
  return top.string();
}

void remove_if_empty(const std::string& folder) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (folder.empty() || !fs::is_directory(folder, ec)) return;
  for (const auto& entry : fs::recursive_directory_iterator(folder, ec))
    if (!entry.is_directory(ec)) return;
  fs::remove_all(folder, ec);
}

Dataset load_data(const DataFlags& f) {
  DataOptions d;
  d.labels = f.labels.value_or("");
  d.test_fraction = f.test_fraction.value_or(0.1);
  return load_dataset(f.data.value_or(kDefaultData), d);
}

Dataset load_data_for(const Model& model, const DataFlags& f, bool quiet) {
  const RunOrigin& origin = model.origin();
  if (f.data || origin.empty()) {
    if (!f.data && !quiet)
      std::fprintf(stderr, "data: %s (the checkpoint does not record its run's data; pass --data to read other data)\n",
                   kDefaultData);
    return load_data(f);
  }
  DataOptions d = origin.data_options();
  if (f.labels) d.labels = *f.labels;
  if (f.test_fraction) d.test_fraction = *f.test_fraction;
  Dataset data;
  try {
    data = load_dataset(origin.data, d);
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + " (the data the checkpoint's run trained on; if it moved, pass --data with its "
                "new place)");
  }
  char split[64] = "its own test split";
  if (data.test_fraction > 0) std::snprintf(split, sizeof split, "test fraction %g", data.test_fraction);
  if (!quiet)
    std::fprintf(stderr, "data: %s%s, %s, as the checkpoint's run trained on it (pass --data to read other data)\n",
               origin.data.c_str(), d.labels.empty() ? "" : (" with labels " + d.labels).c_str(), split);
  if (!quiet && !f.labels && !f.test_fraction && !origin.data_hash.empty() && dataset_hash(data) != origin.data_hash)
    std::fprintf(stderr, "note: the data at %s has changed since the run trained on it (its content hash differs)\n",
                 origin.data.c_str());
  return data;
}

Model load_model(const std::string& checkpoint, const std::string& device, bool strict_fp32) {
  Model model = load_checkpoint(checkpoint, parse_device(device));
  model.set_numerics({!strict_fp32, true});
  return model;
}

void add_generate_commands(CLI::App& app, GenerateCommands& g) {
  auto* sample = app.add_subcommand("sample", "decode samples from the prior or the aggregate posterior into a PNG grid or .npy");
  add_model(sample, g);
  sample->add_option("--n", g.n, "number of samples (default 64; a conditional model without --label: --columns per class)")
      ->check(CLI::Range(1, 1 << 20));
  add_sampling(sample, g);
  sample->add_option("--label", g.label, "a conditional model: the class to sample, or 'all' for one row per class (default)");
  sample->add_option("--out", g.out, "PNG grid or .npy [n, C, H, W] float32 to write")->required();
  add_data(sample, g);
  add_grid(sample, g, true);

  auto* encode = app.add_subcommand("encode", "write a data set's posterior means, log-variances and labels as .npy files");
  add_model(encode, g);
  add_data(encode, g);
  encode->add_option("--split", g.split, "train|test (default test)");
  encode->add_option("--limit", g.limit, "first N images only (default all)")->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  encode->add_option("--out", g.out, "folder for mu.npy, logvar.npy and labels.npy")->required();

  auto* decode = app.add_subcommand("decode", "decode a .npy of latent codes [n, latent] into a PNG grid or a .npy of images");
  add_model(decode, g);
  decode->add_option("--codes", g.codes, ".npy float32 [n, latent] (vae encode's mu.npy, say)")->required();
  decode->add_option("--label", g.label, "a conditional model: the class of every code");
  decode->add_option("--code-labels", g.code_labels, "a conditional model: .npy of one integer label per code");
  decode->add_option("--out", g.out, "PNG grid or .npy [n, C, H, W] float32 to write")->required();
  add_grid(decode, g, true);

  auto* interp = app.add_subcommand("interpolate", "decode the path between two images' posterior means as a PNG strip");
  add_model(interp, g);
  add_data(interp, g);
  interp->add_option("--split", g.split, "train|test (default test)");
  interp->add_option("--from-index", g.index_from, "the first image's index (default 0)");
  interp->add_option("--to-index", g.index_to, "the second image's index (default 1)");
  interp->add_option("--steps", g.steps, "codes on the path, both ends included (default 10)")->check(CLI::Range(2, 256));
  interp->add_option("--mode", g.mode, "linear|spherical|both (default linear; both: one row each)");
  interp->add_option("--label", g.label, "a conditional model: the class to decode with (default the first image's)");
  interp->add_option("--out", g.out, "PNG file to write")->required();
  add_grid(interp, g, false);

  auto* trav = app.add_subcommand("traverse", "vary one latent dimension at a time around an image's posterior mean; "
                                              "rows are dimensions in order of KL");
  add_model(trav, g);
  add_data(trav, g);
  trav->add_option("--split", g.split, "train|test (default test)");
  trav->add_option("--index", g.index, "the image's index (default 0)");
  trav->add_option("--dims", g.dims, "dimensions to show, the highest KL first (default 10)")->check(CLI::Range(1, 4096));
  trav->add_option("--steps", g.steps, "values per dimension (default 10)")->check(CLI::Range(1, 256));
  trav->add_option("--range", g.range, "values from -R to R (default 3)")->check(CLI::Range(0.0, 100.0));
  trav->add_option("--label", g.label, "a conditional model: the class to decode with (default the image's)");
  trav->add_option("--out", g.out, "PNG file to write")->required();
  add_grid(trav, g, false);

  auto* plot = app.add_subcommand("plot-latent", "scatter the posterior means (2-D, or their 2 leading principal "
                                                 "components) coloured by label, with a legend, as a PNG");
  add_model(plot, g);
  add_data(plot, g);
  plot->add_option("--split", g.split, "train|test (default test)");
  plot->add_option("--limit", g.limit, "first N images (default 5000)")->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  plot->add_option("--class-names", g.class_names, "comma-separated legend names (default: the data set's, or "
                                                   "Fashion-MNIST's for its folder)");
  plot->add_option("--out", g.out, "PNG file to write")->required();

  auto* clf = app.add_subcommand("classifier", "train the quality measure's classifier (an MLP, softmax cross-entropy)");
  add_data_flags(clf, g.data, false);
  clf->add_option("--epochs", g.epochs, "epochs (default 5)")->check(CLI::Range(1, 1000));
  clf->add_option("--lr", g.lr, "Adam learning rate (default 0.001)")->check(CLI::Range(1e-6, 1.0));
  clf->add_option("--seed", g.seed, "random seed (default 0)");
  clf->add_option("--device", g.device, "cpu|cuda|auto");
  clf->add_option("--threads", g.threads, "CPU threads, 0 = all cores")->check(CLI::Range(0, 1024));
  clf->add_option("--out", g.out, "classifier .safetensors to write")->required();

  auto* quality = app.add_subcommand("quality", "generation quality: the Frechet distance of the classifier's features "
                                                "(an analogue of FID, not FID) and, for a conditional model, the "
                                                "classifier's accuracy on its samples");
  add_model(quality, g);
  add_data(quality, g);
  quality->add_option("--classifier", g.classifier, "classifier .safetensors from vae classifier")->required();
  quality->add_option("--n", g.quality_n, "samples, and test images they are compared with (default 10000)")->check(CLI::Range(2, 1 << 20));
  add_sampling(quality, g);
  quality->add_flag("--json", g.as_json, "print one JSON object");
  g.commands = {sample, encode, decode, interp, trav, plot, clf, quality};
}

int run_generate_commands(GenerateCommands& g) {
  using Run = int (*)(GenerateCommands&);
  const Run runs[] = {run_sample, run_encode, run_decode, run_interpolate, run_traverse, run_plot_latent, run_classifier, run_quality};
  for (size_t i = 0; i < g.commands.size(); ++i)
    if (g.commands[i]->parsed()) {
      set_num_threads(g.threads);
      // Every --out's folder is made as needed (encode's --out is itself a folder, made there), and
      // removed again when the command fails before writing into it.
      const std::string made = g.out.empty() || g.commands[i]->get_name() == "encode" ? "" : create_parent_folder(g.out);
      try {
        return runs[i](g);
      } catch (...) {
        remove_if_empty(made);
        throw;
      }
    }
  return -1;
}

}  // namespace vae::cli
