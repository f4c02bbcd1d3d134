// The Python extension vae._core (pybind11): the library's models, training, evaluation and
// generation on numpy arrays. python/vae/__init__.py re-exports it with the Python-side helpers.
// Arrays in: uint8 (0-255) or float32 in [0, 1] images [N, H, W] or [N, C, H, W], float32 codes
// [N, L], integer labels [N]; any other dtype or rank is refused with a message naming what was
// expected (non-contiguous arrays are copied). Arrays out: new float32 numpy arrays.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "io/atomic_file.hpp"
#include "vae/vae.hpp"

namespace py = pybind11;

namespace {

// A bad argument from Python: raised as vae.ArgumentError (a ValueError and a vae.Error).
struct ArgumentError : vae::Error {
  using vae::Error::Error;
};

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

std::vector<int32_t> labels_from(const py::object& o, int64_t n, const char* what) {
  if (o.is_none()) return {};
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

std::vector<float> floats_in_01(const vae::ImageSet& s) {
  std::vector<float> x(s.pixels.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = s.pixels[i] / 255.0f;
  return x;
}

py::array_t<float> array_of(const std::vector<float>& v, std::vector<py::ssize_t> shape) {
  py::array_t<float> out(shape);
  std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(float));
  return out;
}

py::array_t<float> image_array(const vae::Model& m, const std::vector<float>& v, int64_t n) {
  const vae::ModelConfig& c = m.config();
  return array_of(v, {static_cast<py::ssize_t>(n), c.image_channels, c.image_height, c.image_width});
}

void check_size(const vae::Model& m, const vae::ImageSet& s, const char* what) {
  const vae::ModelConfig& c = m.config();
  if (s.channels != c.image_channels || s.height != c.image_height || s.width != c.image_width)
    throw ArgumentError(std::string(what) + ": images are " + std::to_string(s.channels) + "x" + std::to_string(s.height) +
                        "x" + std::to_string(s.width) + " but the model takes " + std::to_string(c.image_channels) + "x" +
                        std::to_string(c.image_height) + "x" + std::to_string(c.image_width));
}

// A model's input: images of its size with their labels (none, or one per image).
vae::ImageSet image_set_for(const vae::Model& m, const py::array& x, const py::object& labels, const char* what) {
  vae::ImageSet s = images_from(x, what);
  check_size(m, s, what);
  s.labels = labels_from(labels, s.count, what);
  return s;
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

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "vae's C++ engine (pybind11); use the vae package, which re-exports it.";
  static py::exception<vae::Error> error(m, "Error", PyExc_RuntimeError);
  static py::exception<ArgumentError> argument_error(m, "ArgumentError", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ArgumentError& e) {
      argument_error(e.what());
    } catch (const vae::Error& e) {
      error(e.what());
    }
  });

  py::class_<vae::Model>(m, "Model", "A VAE: its configuration, parameters and device.")
      .def(py::init([](const py::object& config, const std::string& device, uint64_t seed) {
             vae::Model model(model_config_from(config), device_of(device));
             model.initialize(seed);
             return model;
           }),
           py::arg("config") = py::none(), py::arg("device") = "cpu", py::arg("seed") = 0,
           "A freshly initialised model. config: None (the default MLP VAE), a dict or JSON text of the model "
           "section or of a whole run config ({\"model\": ...}), or the path of a config file such as configs/conv.json.")
      .def_property_readonly("config_json", [](const vae::Model& m) { return m.config().to_json(); })
      .def_property_readonly("device", [](const vae::Model& m) { return vae::to_string(m.device()); })
      .def_property_readonly("parameter_count", &vae::Model::parameter_count)
      .def("save", [](const vae::Model& m, const std::string& path) { vae::save_checkpoint(m, path); }, py::arg("path"))
      .def(
          "encode",
          [](vae::Model& m, const py::array& x, const py::object& labels) {
            const vae::ImageSet set = image_set_for(m, x, labels, "encode");
            vae::LatentCodes c;
            {
              py::gil_scoped_release release;
              c = vae::encode_images(m, set);
            }
            const py::ssize_t n = c.count, L = c.latent;
            return py::make_tuple(array_of(c.mu, {n, L}), array_of(c.logvar, {n, L}));
          },
          py::arg("x"), py::arg("labels") = py::none())
      .def(
          "decode",
          [](vae::Model& m, const py::array& z, const py::object& labels) {
            if (!py::isinstance<py::array_t<float>>(z) || z.ndim() != 2 || z.shape(1) != m.config().latent)
              throw ArgumentError("decode: codes must be float32 [N, " + std::to_string(m.config().latent) + "], got " +
                                  std::string(py::str(z.dtype())) + " " + shape_text(z));
            const auto c = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(z);
            const int64_t n = z.shape(0);
            const std::vector<float> codes(c.data(), c.data() + n * m.config().latent);
            const std::vector<int32_t> y = labels_from(labels, n, "decode");
            std::vector<float> images;
            {
              py::gil_scoped_release release;
              images = vae::decode_latents(m, codes, n, y);
            }
            return image_array(m, images, n);
          },
          py::arg("z"), py::arg("labels") = py::none())
      .def(
          "sample",
          [](vae::Model& m, int n, float temperature, const py::object& label, uint64_t seed) {
            vae::SampleOptions o;
            o.n = n;
            o.temperature = temperature;
            o.seed = seed;
            if (!label.is_none()) o.labels.assign(static_cast<size_t>(n), label.cast<int32_t>());
            std::vector<float> images;
            {
              py::gil_scoped_release release;
              images = vae::sample_images(m, o);
            }
            return image_array(m, images, n);
          },
          py::arg("n"), py::arg("temperature") = 1.0f, py::arg("label") = py::none(), py::arg("seed") = 0)
      .def(
          "reconstruct",
          [](vae::Model& m, const py::array& x, const py::object& labels) {
            const vae::ImageSet s = image_set_for(m, x, labels, "reconstruct");
            std::vector<float> images;
            {
              py::gil_scoped_release release;
              const vae::LatentCodes c = vae::encode_images(m, s);
              images = vae::decode_latents(m, c.code(), c.count, s.labels);
            }
            return image_array(m, images, s.count);
          },
          py::arg("x"), py::arg("labels") = py::none());

  m.def("load", [](const std::string& path, const std::string& device) { return vae::load_checkpoint(path, device_of(device)); },
        py::arg("path"), py::arg("device") = "cpu");

  m.def(
      "evaluate",
      [](vae::Model& model, const py::array& x, const py::object& labels, int k, int64_t limit) {
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

  // Training: the run configuration's "train" and "objective" sections as JSON, the data as arrays.
  // on_step(dict) runs with the GIL every few steps; it may raise KeyboardInterrupt (or any
  // exception) to stop the run after the current step.
  m.def(
      "train",
      [](vae::Model& model, const std::string& run_json, const py::array& x, const py::object& labels,
         const py::object& test_x, const py::object& test_labels, const py::object& on_step) {
        vae::ModelConfig unused = model.config();
        vae::TrainConfig cfg;
        vae::run_config_from_json(run_json, unused, cfg);
        cfg.validate();
        vae::Dataset data;
        data.train = image_set_for(model, x, labels, "train");
        data.test = test_x.is_none() ? data.train
                                     : image_set_for(model, test_x.cast<py::array>(), test_labels, "train (test set)");
        vae::Trainer trainer(model, cfg);
        py::list history;
        bool stop = false;
        std::exception_ptr raised;
        std::vector<vae::EpochMetrics> epochs;
        {
          py::gil_scoped_release release;
          epochs = trainer.fit(
              data,
              [&](const vae::StepProgress& p) {
                py::gil_scoped_acquire gil;
                try {
                  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
                  if (!on_step.is_none()) {
                    py::dict d;
                    d["epoch"] = p.epoch;
                    d["step"] = p.step;
                    d["steps_per_epoch"] = p.steps_per_epoch;
                    d["loss"] = p.loss;
                    d["samples_per_s"] = p.samples_per_s;
                    on_step(d);
                  }
                } catch (...) {
                  raised = std::current_exception();
                  stop = true;
                }
              },
              {}, [&] { return stop; });
        }
        if (raised) std::rethrow_exception(raised);
        for (const vae::EpochMetrics& e : epochs) history.append(py::module_::import("json").attr("loads")(e.to_json()));
        return history;
      },
      py::arg("model"), py::arg("run_json"), py::arg("x"), py::arg("labels") = py::none(), py::arg("test_x") = py::none(),
      py::arg("test_labels") = py::none(), py::arg("on_step") = py::none());
}
