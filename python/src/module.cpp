// The Python extension vae._core (pybind11): the library's models, training, evaluation and
// generation on numpy arrays. python/vae/__init__.py re-exports it with the Python-side helpers.
// Arrays in: uint8 (0-255) or float32 in [0, 1] images [N, H, W] or [N, C, H, W], float32 codes
// [N, L], integer labels [N]; any other dtype or rank is refused with a message naming what was
// expected (non-contiguous arrays are copied). Arrays out: new float32 numpy arrays.
// DLPack tensors (torch, CuPy; float32, contiguous) take the device path instead: borrowed where
// they lie, and the results handed back as the same kind of tensor on the model's device
// (dlpack_bridge.hpp), with no trip through the host on CUDA.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "argument_error.hpp"
#include "dlpack_bridge.hpp"
#include "io/atomic_file.hpp"
#include "io/checkpoint_contents.hpp"
#include "model/model_use.hpp"
#include "vae/vae.hpp"

namespace py = pybind11;
using vae::python::ArgumentError;

namespace {

std::string shape_text(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Images as the library's uint8 [N, C, H, W] pixels (float32 is rounded to 1/255, as the .npy
// reader does).
vae::ImageSet images_from(const py::array& a, const char* what) {
  const bool u8 = py::isinstance<py::array_t<uint8_t>>(a), f32 = py::isinstance<py::array_t<float>>(a);
  if (!u8 && !f32)
    throw ArgumentError(std::string(what) + ": images must be uint8 (0-255) or float32 in [0, 1], got dtype " +
                        std::string(py::str(a.dtype())) + " (use x.astype(numpy.float32) / 255)");
  if (a.ndim() != 3 && a.ndim() != 4)
    throw ArgumentError(std::string(what) + ": images must be [N, H, W] or [N, C, H, W], got shape " + shape_text(a));
  vae::ImageSet s;
  s.count = a.shape(0);
  s.channels = a.ndim() == 4 ? static_cast<int>(a.shape(1)) : 1;
  s.height = static_cast<int>(a.shape(a.ndim() - 2));
  s.width = static_cast<int>(a.shape(a.ndim() - 1));
  if (s.count < 1 || s.channels < 1 || s.channels > 4 || s.height < 1 || s.width < 1)
    throw ArgumentError(std::string(what) + ": images [N, C, H, W] need N >= 1 and 1 to 4 channels, got shape " +
                        shape_text(a));
  const size_t n = static_cast<size_t>(s.count) * s.pixels_per_image();
  s.pixels.resize(n);
  if (u8) {
    const auto c = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(a);
    std::memcpy(s.pixels.data(), c.data(), n);
  } else {
    const auto c = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
    const float* p = c.data();
    for (size_t i = 0; i < n; ++i) {
      if (!(p[i] >= 0.0f && p[i] <= 1.0f))
        throw ArgumentError(std::string(what) + ": float32 images must lie in [0, 1]; element " + std::to_string(i) +
                            " is " + std::to_string(p[i]));
      s.pixels[i] = static_cast<uint8_t>(std::lround(p[i] * 255.0f));
    }
  }
  return s;
}

std::vector<int32_t> labels_from(py::object o, int64_t n, const char* what) {
  if (o.is_none()) return {};
  // A CUDA tensor's labels come to the host first: the engine takes labels as host integers.
  if (vae::python::is_dlpack_tensor(o) && py::hasattr(o, "cpu")) o = o.attr("cpu")();
  else if (vae::python::is_dlpack_tensor(o) && py::hasattr(o, "get")) o = o.attr("get")();
  const py::array a = py::array::ensure(o);
  if (!a || a.ndim() != 1 || a.shape(0) != n || a.dtype().kind() != 'i' && a.dtype().kind() != 'u')
    throw ArgumentError(std::string(what) + ": labels must be a 1-D integer array of " + std::to_string(n) + " entries");
  const auto c = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = c.data()[i];
    if (v < 0 || v > INT32_MAX) throw ArgumentError(std::string(what) + ": label " + std::to_string(v) + " is negative or too large");
    out[static_cast<size_t>(i)] = static_cast<int32_t>(v);
  }
  return out;
}

// Anything numpy can read as an array (lists included); a clear refusal otherwise.
py::array as_array(const py::object& x, const char* what) {
  const py::array a = py::array::ensure(x);
  if (!a)
    throw ArgumentError(std::string(what) + ": expected a numpy array or a DLPack tensor (torch, CuPy), got " +
                        std::string(py::str(py::type::of(x).attr("__name__"))));
  return a;
}

py::array_t<float> array_of(const std::vector<float>& v, std::vector<py::ssize_t> shape) {
  py::array_t<float> out(shape);
  std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(float));
  return out;
}

vae::Shape image_shape(const vae::Model& m, int64_t n) {
  const vae::ModelConfig& c = m.config();
  return {n, c.image_channels, c.image_height, c.image_width};
}

// The images as a numpy array that owns the vector's memory: no copy of what may be 100s of MB.
py::array_t<float> image_array(const vae::Model& m, std::vector<float>&& v, int64_t n) {
  const vae::Shape shape = image_shape(m, n);
  auto* owned = new std::vector<float>(std::move(v));
  const py::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  return py::array_t<float>(std::vector<py::ssize_t>(shape.begin(), shape.end()), owned->data(), free_when_done);
}

// A CPU tensor as a numpy array that keeps the tensor's memory alive: no copy, and (unlike a
// std::vector) memory nobody zeroed first.
py::array_t<float> tensor_array(const vae::Tensor& t, const vae::Shape& shape) {
  auto* owned = new vae::Tensor(t);
  const py::capsule free_when_done(owned, [](void* p) { delete static_cast<vae::Tensor*>(p); });
  return py::array_t<float>(std::vector<py::ssize_t>(shape.begin(), shape.end()), owned->data(), free_when_done);
}

void check_size(const vae::Model& m, int64_t channels, int64_t height, int64_t width, const char* what) {
  const vae::ModelConfig& c = m.config();
  if (channels != c.image_channels || height != c.image_height || width != c.image_width)
    throw ArgumentError(std::string(what) + ": images are " + std::to_string(channels) + "x" + std::to_string(height) +
                        "x" + std::to_string(width) + " but the model takes " + std::to_string(c.image_channels) + "x" +
                        std::to_string(c.image_height) + "x" + std::to_string(c.image_width));
}

// A model's input: images of its size with their labels (none, or one per image).
vae::ImageSet image_set_for(const vae::Model& m, const py::object& x, const py::object& labels, const char* what) {
  vae::ImageSet s = images_from(as_array(x, what), what);
  check_size(m, s.channels, s.height, s.width, what);
  s.labels = labels_from(labels, s.count, what);
  return s;
}

// Float images [N, H, W] or [N, C, H, W] for model m, as grey levels [N, input_dim] where they
// lie. CPU memory is checked to lie in [0, 1]; CUDA memory is taken as given (a check would read
// it back to the host).
vae::Tensor float_images(const vae::Model& m, const vae::Tensor& t, const char* what) {
  const vae::Shape& sh = t.shape();
  if (sh.size() != 3 && sh.size() != 4)
    throw ArgumentError(std::string(what) + ": images must be [N, H, W] or [N, C, H, W], got shape " + vae::to_string(sh));
  if (sh[0] < 1) throw ArgumentError(std::string(what) + ": no images (shape " + vae::to_string(sh) + ")");
  check_size(m, sh.size() == 4 ? sh[1] : 1, sh[sh.size() - 2], sh[sh.size() - 1], what);
  if (t.device() == vae::Device::CPU)
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!(t.data()[i] >= 0.0f && t.data()[i] <= 1.0f))
        throw ArgumentError(std::string(what) + ": float32 images must lie in [0, 1]; element " + std::to_string(i) +
                            " is " + std::to_string(t.data()[i]));
  return t.reshape({sh[0], t.numel() / sh[0]});
}

// A float32 numpy array borrowed as a CPU tensor (a C-contiguous copy first when it is strided).
vae::Tensor borrow_numpy(const py::array& a) {
  auto c = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
  vae::Shape shape(c.shape(), c.shape() + c.ndim());
  float* data = c.mutable_data();
  PyObject* ref = c.release().ptr();  // the tensor's owner holds this reference
  return vae::Tensor::borrow(data, std::move(shape), vae::Device::CPU, std::shared_ptr<void>(ref, [](void* p) {
                               py::gil_scoped_acquire gil;
                               Py_DECREF(static_cast<PyObject*>(p));
                             }));
}

// The float path's images: a DLPack tensor, or a float32 numpy array, used as given (no rounding
// to 8 bits). Empty for a uint8 array, which takes the ImageSet path (pixels / 255).
vae::Tensor float_input(const vae::Model& m, const py::object& x, const char* what) {
  if (vae::python::is_dlpack_tensor(x)) return float_images(m, vae::python::borrow_dlpack(x, m.device(), what), what);
  const py::array a = as_array(x, what);
  if (py::isinstance<py::array_t<float>>(a) && (a.ndim() == 3 || a.ndim() == 4)) return float_images(m, borrow_numpy(a), what);
  return {};
}

// A result for the caller: the kind of tensor x is for a DLPack input, a numpy array otherwise.
py::object result_like(const py::object& x, const vae::Tensor& t, const vae::Shape& shape) {
  if (vae::python::is_dlpack_tensor(x)) return vae::python::export_like(x, t, shape);
  return array_of(t.to_host(), std::vector<py::ssize_t>(shape.begin(), shape.end()));
}

// Latent codes [N, latent]: a DLPack tensor, or a float32 numpy array (borrowed), where they lie.
vae::Tensor codes_input(const vae::Model& m, const py::object& z, const char* what) {
  const int L = m.config().latent;
  vae::Tensor t;
  if (vae::python::is_dlpack_tensor(z)) {
    t = vae::python::borrow_dlpack(z, m.device(), what);
  } else {
    const py::array a = as_array(z, what);
    if (!py::isinstance<py::array_t<float>>(a))
      throw ArgumentError(std::string(what) + ": codes must be float32 [N, " + std::to_string(L) + "], got dtype " +
                          std::string(py::str(a.dtype())) + " " + shape_text(a));
    t = borrow_numpy(a);
  }
  if (t.shape().size() != 2 || t.dim(1) != L || t.dim(0) < 1)
    throw ArgumentError(std::string(what) + ": codes must be float32 [N, " + std::to_string(L) + "], got shape " +
                        vae::to_string(t.shape()));
  // Host codes are checked (a NaN would decode to a plausible image); device codes are taken as
  // given, as device images are (a check would read them back).
  if (t.device() == vae::Device::CPU)
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(t.data()[i]))
        throw ArgumentError(std::string(what) + ": codes must be finite; row " + std::to_string(i / L) + " holds " +
                            std::to_string(t.data()[i]));
  return t;
}

// Labels given to a model that is not conditional are refused, not ignored (as sample's label is).
void refuse_labels_unless_conditional(const vae::Model& m, const py::object& labels, const char* what) {
  if (!labels.is_none() && !m.config().conditional)
    throw ArgumentError(std::string(what) + ": this model is not conditional, so it takes no labels (train a "
                        "conditional one with {\"conditional\": true})");
}
std::vector<int32_t> model_labels(const vae::Model& m, const py::object& labels, int64_t n, const char* what) {
  refuse_labels_unless_conditional(m, labels, what);
  return labels_from(labels, n, what);
}

// A count argument (sample's n) as an int in [1, hi], or an ArgumentError naming it.
int count_argument(const py::object& o, const char* what, const char* name, int hi) {
  if (!py::isinstance<py::int_>(o) && !(py::hasattr(o, "__index__") && !py::hasattr(o, "__len__")))
    throw ArgumentError(std::string(what) + ": " + name + " must be an integer, got " + std::string(py::str(o.get_type())));
  const py::int_ v(o);
  if (v < py::int_(1) || v > py::int_(hi))
    throw ArgumentError(std::string(what) + ": " + name + " must be in [1, " + std::to_string(hi) + "], got " +
                        py::str(static_cast<const py::object&>(v)).cast<std::string>());
  return v.cast<int>();
}

py::object image_set_arrays(const vae::ImageSet& s) {
  py::array_t<uint8_t> x({static_cast<py::ssize_t>(s.count), static_cast<py::ssize_t>(s.channels),
                          static_cast<py::ssize_t>(s.height), static_cast<py::ssize_t>(s.width)});
  std::memcpy(x.mutable_data(), s.pixels.data(), s.pixels.size());
  if (s.labels.empty()) return py::make_tuple(x, py::none());
  py::array_t<int32_t> y(static_cast<py::ssize_t>(s.labels.size()));
  std::memcpy(y.mutable_data(), s.labels.data(), s.labels.size() * sizeof(int32_t));
  return py::make_tuple(x, y);
}

vae::Device device_of(const std::string& d) {
  try {
    return vae::parse_device(d);
  } catch (const vae::Error& e) {
    throw ArgumentError(e.what());
  }
}

// A model configuration from None, a dict, JSON text or a config file's path; a whole run config's
// "model" section when it has one.
vae::ModelConfig model_config_from(const py::object& config) {
  if (config.is_none()) return vae::ModelConfig{};
  std::string text;
  if (py::isinstance<py::dict>(config)) {
    text = py::module_::import("json").attr("dumps")(config).cast<std::string>();
  } else if (py::isinstance<py::str>(config)) {
    text = config.cast<std::string>();
    if (text.find('{') == std::string::npos) {
      const std::vector<uint8_t> bytes = vae::read_file_bytes(text, "config file");
      text.assign(bytes.begin(), bytes.end());
    }
  } else {
    throw ArgumentError("config must be None, a dict, JSON text or a config file's path");
  }
  vae::ModelConfig model;
  vae::TrainConfig train;
  const py::object parsed = py::module_::import("json").attr("loads")(text);
  if (py::isinstance<py::dict>(parsed) && parsed.cast<py::dict>().contains("model")) {
    vae::run_config_from_json(text, model, train);
    return model;
  }
  return vae::ModelConfig::from_json(text);
}


// The model's parameters on the host, to put back (restore_parameters) when training diverges.
std::vector<std::vector<float>> parameters_of(const vae::Model& model) {
  std::vector<std::vector<float>> values;
  for (const auto& [name, t] : model.named_parameters()) values.push_back(t.to_host());
  return values;
}
void restore_parameters(vae::Model& model, const std::vector<std::vector<float>>& values) {
  size_t i = 0;
  for (auto& [name, t] : model.named_parameters()) {
    t.copy_from_host(values[i].data(), static_cast<int64_t>(values[i].size()));
    ++i;
  }
}

// A training step's progress as the callbacks get it.
py::dict progress_dict(const vae::StepProgress& p) {
  py::dict d;
  d["epoch"] = p.epoch;
  d["step"] = p.step;
  d["steps_per_epoch"] = p.steps_per_epoch;
  d["loss"] = p.loss;
  d["samples_per_s"] = p.samples_per_s;
  return d;
}

// The sample options of Model.sample: one label for all, or one per sample.
vae::SampleOptions sample_options(int n, float temperature, const py::object& label, uint64_t seed,
                                  const vae::AggregatePosterior* aggregate) {
  vae::SampleOptions o;
  o.n = n;
  o.temperature = temperature;
  o.seed = seed;
  if (aggregate) {
    o.source = vae::SampleSource::Aggregate;
    o.aggregate = aggregate;
  }
  // One class for all: a Python int or a numpy integer scalar (an __index__ without a length).
  if (py::isinstance<py::int_>(label) || (py::hasattr(label, "__index__") && !py::hasattr(label, "__len__")))
    o.labels.assign(static_cast<size_t>(std::max(n, 1)), py::int_(label).cast<int32_t>());
  else if (!label.is_none()) o.labels = labels_from(label, n, "sample");
  return o;
}

py::array_t<double> doubles(const std::vector<double>& v, std::vector<py::ssize_t> shape) {
  py::array_t<double> out(shape);
  std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(double));
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "vae's C++ engine (pybind11); use the vae package, which re-exports it.";
  static py::exception<vae::Error> error(m, "Error", PyExc_RuntimeError);
  // vae.ArgumentError is both a ValueError and a vae.Error, so either except clause catches it.
  static PyObject* argument_error = [&] {
    PyObject* bases = PyTuple_Pack(2, PyExc_ValueError, error.ptr());
    PyObject* type = PyErr_NewExceptionWithDoc("vae._core.ArgumentError",
                                               "A bad argument: a wrong dtype, shape or value, with what was expected.",
                                               bases, nullptr);
    Py_XDECREF(bases);
    if (!type) throw py::error_already_set();
    return type;
  }();
  m.attr("ArgumentError") = py::handle(argument_error);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ArgumentError& e) {
      PyErr_SetString(argument_error, e.what());
    } catch (const vae::Error& e) {
      error(e.what());
    }
  });
  vae::python::bind_tensor(m);

  py::class_<vae::AggregatePosterior>(
      m, "AggregatePosterior",
      "A diagonal Gaussian mixture fitted by EM to training images' posterior means (vae.fit_aggregate): "
      "Model.sample(aggregate=...) samples it instead of the prior.")
      .def_readonly("components", &vae::AggregatePosterior::components)
      .def_readonly("latent", &vae::AggregatePosterior::latent)
      .def_readonly("iterations", &vae::AggregatePosterior::iterations, "EM iterations run")
      .def_readonly("mean_log_likelihood", &vae::AggregatePosterior::mean_log_likelihood,
                    "mean log density of the fitted codes, nats per point")
      .def_property_readonly("weights", [](const vae::AggregatePosterior& a) { return doubles(a.weights, {a.components}); })
      .def_property_readonly("means",
                             [](const vae::AggregatePosterior& a) { return doubles(a.means, {a.components, a.latent}); })
      .def_property_readonly(
          "variances", [](const vae::AggregatePosterior& a) { return doubles(a.variances, {a.components, a.latent}); });

  py::class_<vae::Model>(m, "Model", "A VAE: its configuration, parameters and device.")
      .def(py::init([](const py::object& config, const std::string& device, uint64_t seed) {
             vae::Model model(model_config_from(config), device_of(device));
             model.initialize(seed);
             return model;
           }),
           py::arg("config") = py::none(), py::arg("device") = "auto", py::arg("seed") = 0,
           "A freshly initialised model. config: None (the default MLP VAE), a dict or JSON text of the model "
           "section or of a whole run config ({\"model\": ...}), or the path of a config file such as "
           "configs/conv.json. device: \"auto\" (the default: CUDA when a GPU is usable, else the CPU), \"cpu\" or \"cuda\".")
      .def_property_readonly("config", [](const vae::Model& m) {
        return py::module_::import("json").attr("loads")(m.config().to_json());
      }, "The model configuration as a dict (what vae.Model(config) takes).")
      .def_property_readonly("config_json", [](const vae::Model& m) { return m.config().to_json(); },
                             "The model configuration as JSON text.")
      .def_property_readonly("device", [](const vae::Model& m) { return vae::to_string(m.device()); },
                             "\"cpu\" or \"cuda\".")
      .def_property_readonly("latent", [](const vae::Model& m) { return m.config().latent; }, "The latent size L.")
      .def_property_readonly("image_shape", [](const vae::Model& m) {
        const vae::ModelConfig& c = m.config();
        return py::make_tuple(c.image_channels, c.image_height, c.image_width);
      }, "(C, H, W) of the images the model takes and gives.")
      .def_property_readonly("parameter_count", &vae::Model::parameter_count, "Trainable scalars.")
      .def_property_readonly("origin", [](const vae::Model& m) -> py::object {
        if (m.origin().empty()) return py::none();
        return py::module_::import("json").attr("loads")(m.origin().to_json());
      }, "The run that trained the model, as its checkpoint records it: a dict with run_id, data (absolute path), "
         "labels, test_fraction and data_hash; None for a model no run (vae train, vae.run) trained.")
      .def("__repr__", [](const vae::Model& m) {
        const vae::ModelConfig& c = m.config();
        return "vae.Model(" + vae::to_string(c.encoder.type) + " encoder, latent " + std::to_string(c.latent) + ", prior " +
               vae::to_string(c.prior.type) + ", " + vae::to_string(c.likelihood) + " likelihood, images " +
               std::to_string(c.image_channels) + "x" + std::to_string(c.image_height) + "x" +
               std::to_string(c.image_width) + (c.conditional ? ", conditional on " + std::to_string(c.classes) + " classes" : "") +
               ", " + std::to_string(m.parameter_count()) + " parameters, " + vae::to_string(m.device()) + ")";
      })
      .def("state_dict", [](const vae::Model& m) {
        // Copied under the model's lock, without the interpreter's (model/model_use.hpp).
        std::vector<std::pair<std::string, vae::Tensor>> named;
        std::vector<std::vector<float>> values;
        {
          py::gil_scoped_release release;
          const vae::ModelUse use(m, "state_dict");
          named = m.named_parameters();
          for (const auto& [name, t] : named) values.push_back(t.to_host());
        }
        py::dict d;
        for (size_t i = 0; i < named.size(); ++i) {
          const vae::Shape& shape = named[i].second.shape();
          d[py::str(named[i].first)] = array_of(values[i], std::vector<py::ssize_t>(shape.begin(), shape.end()));
        }
        return d;
      }, "The parameters as float32 numpy arrays (copies) named as in the checkpoint (model.save).")
      .def("load_state_dict", [](vae::Model& m, const py::dict& d) {
        // Every check before the first copy: a refused dict leaves the model as it was.
        std::vector<std::pair<vae::Tensor, py::array_t<float, py::array::c_style | py::array::forcecast>>> todo;
        std::set<std::string> names;
        for (auto& [name, t] : m.named_parameters()) {
          names.insert(name);
          if (!d.contains(name)) throw ArgumentError("load_state_dict: the dict lacks '" + name + "'");
          py::array_t<float, py::array::c_style | py::array::forcecast> a(d[py::str(name)]);
          std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
          if (shape != t.shape())
            throw ArgumentError("load_state_dict: '" + name + "' has shape " + vae::to_string(shape) + " but the model's is " +
                                vae::to_string(t.shape()));
          for (py::ssize_t i = 0; i < a.size(); ++i)
            if (!std::isfinite(a.data()[i]))
              throw ArgumentError("load_state_dict: '" + name + "' holds a value that is not finite");
          todo.emplace_back(t, a);
        }
        for (const auto& [key, value] : d)
          if (!names.count(py::str(key).cast<std::string>()))
            throw ArgumentError("load_state_dict: '" + py::str(key).cast<std::string>() + "' is not a parameter of this model");
        py::gil_scoped_release release;
        const vae::ModelUse use(m, "load_state_dict");
        for (auto& [t, a] : todo) t.copy_from_host(a.data(), a.size());
      }, py::arg("state_dict"),
      "Sets the parameters from a dict like state_dict()'s: every name, the same shapes, finite values; nothing "
      "changes unless all of it is right.")
      .def(py::pickle(
          [](const vae::Model& m) {
            std::vector<uint8_t> bytes;
            {
              py::gil_scoped_release release;
              bytes = vae::serialize_safetensors(vae::checkpoint_contents(m, "a pickled model", -1));
            }
            return py::make_tuple(py::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                                  vae::to_string(m.device()));
          },
          [](const py::tuple& state) {
            if (state.size() != 2) throw ArgumentError("a pickled vae.Model is (checkpoint bytes, device)");
            const std::string bytes = state[0].cast<std::string>();
            return vae::model_from_contents(
                vae::parse_safetensors(std::vector<uint8_t>(bytes.begin(), bytes.end()), "a pickled model"),
                "a pickled model", device_of(state[1].cast<std::string>()), "");
          }))
      .def("save", [](const vae::Model& m, const std::string& path) {
        py::gil_scoped_release release;
        vae::save_checkpoint(m, path);
      }, py::arg("path"),
           "Writes a safetensors checkpoint (atomically: a temporary file, then a rename); vae.load and the CLI read it.")
      .def(
          "encode",
          [](vae::Model& m, const py::object& x, const py::object& labels) -> py::tuple {
            const int64_t L = m.config().latent;
            if (const vae::Tensor t = float_input(m, x, "encode"); t.defined()) {
              const std::vector<int32_t> y = model_labels(m, labels, t.dim(0), "encode");
              vae::LatentTensors c;
              {
                py::gil_scoped_release release;
                c = vae::encode_tensor(m, t, y);
              }
              return py::make_tuple(result_like(x, c.mu, {t.dim(0), L}), result_like(x, c.logvar, {t.dim(0), L}));
            }
            refuse_labels_unless_conditional(m, labels, "encode");
            const vae::ImageSet set = image_set_for(m, x, labels, "encode");
            vae::LatentCodes c;
            {
              py::gil_scoped_release release;
              c = vae::encode_images(m, set);
            }
            return py::make_tuple(array_of(c.mu, {c.count, L}), array_of(c.logvar, {c.count, L}));
          },
          py::arg("x"), py::arg("labels") = py::none(),
          "The posterior of each image, (mu, logvar), float32 [N, L] each (logvar as the model clamps it). "
          "x: uint8 (pixels / 255) or float32 in [0, 1] (used as given), [N, H, W] or [N, C, H, W], as a numpy "
          "array (numpy out) or a float32 DLPack tensor (torch, CuPy: the same kind of tensor out, on the model's "
          "device). labels: one per image for a conditional model. With a posterior flow these are its base "
          "Gaussian's.")
      .def(
          "decode",
          [](vae::Model& m, const py::object& z, const py::object& labels) -> py::object {
            const vae::Tensor t = codes_input(m, z, "decode");
            const std::vector<int32_t> y = model_labels(m, labels, t.dim(0), "decode");
            vae::Tensor images;
            {
              py::gil_scoped_release release;
              images = vae::decode_tensor(m, t, y);
            }
            return result_like(z, images, image_shape(m, t.dim(0)));
          },
          py::arg("z"), py::arg("labels") = py::none(),
          "Images float32 [N, C, H, W] in [0, 1] (the decoder's mean) for codes z float32 [N, L]: numpy in, numpy "
          "out; a DLPack tensor in, the same kind out on the model's device.")
      .def(
          "sample",
          [](vae::Model& m, const py::object& n_arg, float temperature, const py::object& label, uint64_t seed,
             const vae::AggregatePosterior* aggregate, bool dlpack, const std::vector<float>& level_temperatures,
             const std::string& pixels) -> py::object {
            const int n = count_argument(n_arg, "sample", "n", 1 << 20);
            vae::SampleOptions o = sample_options(n, temperature, label, seed, aggregate);
            if (pixels != "mean" && pixels != "sample")
              throw vae::python::ArgumentError("sample: pixels must be 'mean' or 'sample', got '" + pixels + "'");
            o.level_temperatures = level_temperatures;
            o.draw_pixels = pixels == "sample";
            if (dlpack || m.device() == vae::Device::CPU) {
              vae::Tensor images;
              {
                py::gil_scoped_release release;
                images = vae::sample_tensor(m, o);
              }
              if (dlpack) return vae::python::export_tensor(images, image_shape(m, n));
              return tensor_array(images, image_shape(m, n));  // decoded straight into the array's memory
            }
            std::vector<float> images;
            {
              py::gil_scoped_release release;
              images = vae::sample_images(m, o);
            }
            return image_array(m, std::move(images), n);
          },
          py::arg("n"), py::arg("temperature") = 1.0f, py::arg("label") = py::none(), py::arg("seed") = 0,
          py::arg("aggregate") = nullptr, py::arg("dlpack") = false,
          py::arg("level_temperatures") = std::vector<float>{}, py::arg("pixels") = "mean",
          "n images float32 [n, C, H, W] decoded from the prior's z at a temperature (or from a fitted "
          "vae.AggregatePosterior). label: for a conditional model, one class for all or one per sample. "
          "seed: the same seed gives the same bits. dlpack=True returns a vae.Tensor on the model's device "
          "(torch.from_dlpack takes it without a copy) instead of a numpy array. level_temperatures: a "
          "hierarchy's temperature per level from the top. pixels='sample': a dlogistic or dmol model's "
          "pixels drawn from the likelihood instead of its mean.")
      .def(
          "reconstruct",
          [](vae::Model& m, const py::object& x, const py::object& labels) -> py::object {
            if (const vae::Tensor t = float_input(m, x, "reconstruct"); t.defined()) {
              const std::vector<int32_t> y = model_labels(m, labels, t.dim(0), "reconstruct");
              vae::Tensor images;
              {
                py::gil_scoped_release release;
                const vae::LatentTensors c = vae::encode_tensor(m, t, y);
                images = vae::decode_tensor(m, c.code(), y);
              }
              return result_like(x, images, image_shape(m, t.dim(0)));
            }
            refuse_labels_unless_conditional(m, labels, "reconstruct");
            const vae::ImageSet s = image_set_for(m, x, labels, "reconstruct");
            std::vector<float> images;
            {
              py::gil_scoped_release release;
              const vae::LatentCodes c = vae::encode_images(m, s);
              images = vae::decode_latents(m, c.code(), c.count, s.labels);
            }
            return image_array(m, std::move(images), s.count);
          },
          py::arg("x"), py::arg("labels") = py::none(),
          "Each image decoded from its posterior mean (pushed through any posterior flow), float32 "
          "[N, C, H, W]; numpy or DLPack as for encode.");

  m.def("set_threads", &vae::set_num_threads, py::arg("threads"),
        "CPU threads for everything that follows (0: all cores); vae.train's threads= sets it for a run. The same "
        "seed gives the same bits for the same thread count.");

  m.def("load", [](const std::string& path, const std::string& device) { return vae::load_checkpoint(path, device_of(device)); },
        py::arg("path"), py::arg("device") = "auto",
        "A model from a safetensors checkpoint written by model.save or vae train (its configuration is in the file), on "
        "device (\"auto\": CUDA when a GPU is usable).");

  m.def(
      "load_data",
      [](const std::string& path, double test_fraction, const std::string& labels) {
        vae::DataOptions o;
        o.test_fraction = test_fraction;
        o.labels = labels;
        vae::Dataset d;
        {
          py::gil_scoped_release release;
          d = vae::load_dataset(path, o);
        }
        std::string hash;
        py::dict out;
        const py::tuple train = image_set_arrays(d.train), test = image_set_arrays(d.test);
        out["train_x"] = train[0];
        out["train_labels"] = train[1];
        out["test_x"] = test[0];
        out["test_labels"] = test[1];
        out["source"] = d.source;
        out["class_names"] = d.class_names;
        out["test_fraction"] = d.test_fraction;
        out["test_split"] = vae::test_split_description(d);
        {
          py::gil_scoped_release release;
          hash = vae::dataset_hash(d);
        }
        out["hash"] = hash;
        return out;
      },
      py::arg("path"), py::arg("test_fraction") = 0.1, py::arg("labels") = "",
      "A data set as the CLI's --data reads it (an IDX folder such as Fashion-MNIST's, a .npy file with "
      "labels from the labels .npy, or a folder of PNGs): a dict with train_x and test_x (uint8 [N, C, H, W]), "
      "train_labels and test_labels (int32 [N], or None), source, class_names, test_fraction (the share held out, 0 "
      "when the source has its own test split), test_split (the same in words, as vae eval --json records it) and "
      "hash (its content hash, as a run records it).");

  m.def(
      "fit_aggregate",
      [](vae::Model& model, const py::object& x, const py::object& labels, int components, uint64_t seed, int64_t limit) {
        const vae::ImageSet s = image_set_for(model, x, labels, "fit_aggregate");
        py::gil_scoped_release release;
        const vae::LatentCodes c = vae::encode_images(model, s, limit);
        return vae::fit_aggregate_posterior(c.code(), c.count, c.latent, components, seed);
      },
      py::arg("model"), py::arg("x"), py::arg("labels") = py::none(), py::arg("components") = 10, py::arg("seed") = 0,
      py::arg("limit") = 20000,
      "Fits a diagonal Gaussian mixture of `components` by EM to the posterior means (f(mu) with a posterior flow) "
      "of the first `limit` images of x (0: all), for Model.sample(aggregate=...): vae sample --from aggregate.");

  m.def(
      "evaluate",
      [](vae::Model& model, const py::object& x, const py::object& labels, int k, int64_t limit) {
        const vae::ImageSet s = image_set_for(model, x, labels, "evaluate");
        vae::EvalOptions o;
        o.k = k;
        o.limit = limit;
        vae::EvalResult r;
        {
          py::gil_scoped_release release;
          r = vae::evaluate(model, s, o);
        }
        return py::module_::import("json").attr("loads")(r.to_json());
      },
      py::arg("model"), py::arg("x"), py::arg("labels") = py::none(), py::arg("k") = 0, py::arg("limit") = 0);

  // The same encode from C++ alone, timed there: bench/python_overhead.py compares it with
  // Model.encode called from Python in the same process.
  m.def(
      "_encode_seconds",
      [](vae::Model& model, const py::object& x, int repeats) {
        const vae::ImageSet s = image_set_for(model, x, py::none(), "_encode_seconds");
        py::gil_scoped_release release;
        std::vector<double> seconds;
        for (int r = 0; r < repeats; ++r) {
          const auto start = std::chrono::steady_clock::now();
          const vae::LatentCodes c = vae::encode_images(model, s);
          seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        }
        return seconds;
      },
      py::arg("model"), py::arg("x"), py::arg("repeats") = 5);

  // Training: the run configuration's "train" and "objective" sections as JSON, the data as arrays.
  // on_step(dict) runs with the GIL every few steps; Ctrl-C (checked there) or an exception it raises
  // stops the run after the current step. checkpoint: a path written at every epoch's end and at a
  // stop, with the step it holds.
  m.def(
      "train",
      [](vae::Model& model, const std::string& run_json, const py::object& x, const py::object& labels,
         const py::object& test_x, const py::object& test_labels, const py::object& on_step, const std::string& checkpoint,
         const py::object& on_epoch) {
        vae::ModelConfig unused = model.config();
        vae::TrainConfig cfg;
        vae::run_config_from_json(run_json, unused, cfg);
        cfg.validate();
        vae::Dataset data;
        data.train = image_set_for(model, x, labels, "train");
        data.test = test_x.is_none() ? data.train : image_set_for(model, test_x, test_labels, "train (test set)");
        vae::hold_out_validation(data, cfg.validation_fraction, cfg.validation_split == vae::ValidationSplit::Tail);
        vae::Trainer trainer(model, cfg);
        py::list history;
        bool stop = false;
        std::exception_ptr raised;
        std::vector<vae::EpochMetrics> epochs;
        auto save = [&] {
          if (!checkpoint.empty()) vae::save_checkpoint(model, checkpoint, trainer.progress().global_step);
        };
        // The parameters at the start and after each epoch: a run that diverges leaves the model as
        // it was at the last epoch's end (the checkpoint's), not with the blown-up weights.
        std::vector<std::vector<float>> last_good = parameters_of(model);
        {
          py::gil_scoped_release release;
          try {
            epochs = trainer.fit(
                data,
                [&](const vae::StepProgress& p) {
                  py::gil_scoped_acquire gil;
                  try {
                    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
                    if (!on_step.is_none()) on_step(progress_dict(p));
                  } catch (...) {
                    raised = std::current_exception();
                    stop = true;
                  }
                },
                [&](const vae::EpochMetrics& e) {
                  save();
                  last_good = parameters_of(model);
                  if (on_epoch.is_none()) return;
                  py::gil_scoped_acquire gil;
                  try {
                    on_epoch(py::module_::import("json").attr("loads")(e.to_json()));
                  } catch (...) {
                    if (!raised) raised = std::current_exception();
                    stop = true;
                  }
                },
                [&] { return stop; });
          } catch (const vae::TrainingDiverged&) {
            restore_parameters(model, last_good);
            throw;
          }
          if (trainer.stopped() && trainer.progress().steps_into_epoch > 0) save();  // an epoch's end was saved already
        }
        if (raised) std::rethrow_exception(raised);
        for (const vae::EpochMetrics& e : epochs) history.append(py::module_::import("json").attr("loads")(e.to_json()));
        return history;
      },
      py::arg("model"), py::arg("run_json"), py::arg("x"), py::arg("labels") = py::none(), py::arg("test_x") = py::none(),
      py::arg("test_labels") = py::none(), py::arg("on_step") = py::none(), py::arg("checkpoint") = "",
      py::arg("on_epoch") = py::none());

  // A run folder as `vae train` keeps it (vae/run.hpp, the policy the CLI uses): a new run from a
  // whole run configuration (JSON text, or a file's path), or the run in `out` resumed. epochs and
  // threads: when > 0, replace the configuration's. on_step(dict) runs with the GIL every few steps;
  // on_epoch(dict) after each epoch's files are written; Ctrl-C (checked there) or an exception from
  // either stops the run after the current step with its state saved, and is raised.
  m.def(
      "run",
      [](const std::string& out, const std::string& run_config, bool resume, bool overwrite, int epochs, int threads,
         const py::object& on_step, const py::object& on_epoch, const std::string& data) {
        auto changed = [epochs, threads, &data](vae::TrainConfig& t) {
          if (epochs > 0) t.epochs = epochs;
          if (threads > 0) t.threads = threads;
          if (!data.empty()) t.data_dir = data;
        };
        std::optional<vae::TrainingRun> run;
        {
          py::gil_scoped_release release;
          if (resume) {
            run.emplace(vae::TrainingRun::resume(out, [&](vae::ModelConfig&, vae::TrainConfig& t) { changed(t); }));
          } else {
            vae::ModelConfig model;
            vae::TrainConfig train;
            if (run_config.find('{') != std::string::npos) vae::run_config_from_json(run_config, model, train);
            else if (!run_config.empty()) vae::read_run_config(run_config, model, train);
            train.out_dir = out;
            changed(train);
            run.emplace(vae::TrainingRun::start(model, train, overwrite));
          }
          run->prepare_folder();
        }
        bool stop = false;
        std::exception_ptr raised;
        auto guarded = [&](const std::function<void()>& work) {
          py::gil_scoped_acquire gil;
          try {
            if (PyErr_CheckSignals() != 0) throw py::error_already_set();
            work();
          } catch (...) {
            if (!raised) raised = std::current_exception();
            stop = true;
          }
        };
        const py::object loads = py::module_::import("json").attr("loads");
        py::list history;
        {
          py::gil_scoped_release release;
          run->fit(
              [&](const vae::StepProgress& p) {
                guarded([&] {
                  if (!on_step.is_none()) on_step(progress_dict(p));
                });
              },
              [&](const vae::EpochMetrics& e) {
                guarded([&] {
                  const py::object metrics = loads(e.to_json());
                  history.append(metrics);
                  if (!on_epoch.is_none()) on_epoch(metrics);
                });
              },
              [&] { return stop; });
        }
        if (raised) std::rethrow_exception(raised);
        return history;
      },
      py::arg("out"), py::arg("run_config") = "", py::arg("resume") = false, py::arg("overwrite") = false,
      py::arg("epochs") = 0, py::arg("threads") = 0, py::arg("on_step") = py::none(), py::arg("on_epoch") = py::none(),
      py::arg("data") = "");
}
