// DLPack import and export (dlpack_bridge.hpp).
#include "dlpack_bridge.hpp"

#include <dlpack/dlpack.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <vector>

namespace py = pybind11;

namespace vae::python {
namespace {

constexpr const char* kCapsuleName = "dltensor";
constexpr const char* kUsedCapsuleName = "used_dltensor";

std::string device_text(int type, int id) {
  if (type == kDLCPU) return "the cpu";
  if (type == kDLCUDA) return "cuda:" + std::to_string(id);
  return "DLPack device type " + std::to_string(type);
}

std::string shape_text(const DLTensor& t) {
  std::string s = "(";
  for (int i = 0; i < t.ndim; ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
  return s + (t.ndim == 1 ? ",)" : ")");
}

// Row-major without gaps: no strides, or each stride the product of the later sizes (a size-1
// dimension's stride is free, as torch and numpy give it any value).
bool is_compact(const DLTensor& t) {
  if (!t.strides) return true;
  int64_t expected = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    if (t.shape[i] != 1 && t.strides[i] != expected) return false;
    expected *= t.shape[i];
  }
  return true;
}

// What an exported tensor's DLManagedTensor owns: the engine tensor (its storage) and the shape
// and strides the DLTensor points into.
struct ExportHolder {
  Tensor tensor;
  std::vector<int64_t> shape, strides;
  DLManagedTensor managed{};
};

void delete_export(DLManagedTensor* self) { delete static_cast<ExportHolder*>(self->manager_ctx); }

// A capsule nobody consumed still owns its tensor; a consumed one ("used_dltensor") belongs to its
// consumer.
void capsule_destructor(PyObject* capsule) {
  if (!PyCapsule_IsValid(capsule, kCapsuleName)) return;
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, kCapsuleName));
  if (managed && managed->deleter) managed->deleter(managed);
}

// vae.Tensor: an engine tensor handed out through DLPack.
struct ExportedTensor {
  Tensor tensor;
  Shape shape;

  DLDevice device() const {
    return tensor.device() == Device::CPU ? DLDevice{kDLCPU, 0} : DLDevice{kDLCUDA, cuda_device_index()};
  }
  py::tuple dlpack_device() const { return py::make_tuple(static_cast<int>(device().device_type), device().device_id); }

  py::capsule dlpack(const py::object& stream, const py::object& dl_device) const {
    (void)stream;  // any consumer stream is safe once the device has finished (below)
    if (!dl_device.is_none() && !dl_device.equal(dlpack_device()))
      throw ArgumentError("vae.Tensor.__dlpack__: the tensor lives on " + device_text(device().device_type, device().device_id) +
                          " and cannot be exported to another device; copy it with the consumer's library");
    {
      py::gil_scoped_release release;
      synchronize(tensor.device());
    }
    auto holder = std::make_unique<ExportHolder>();
    holder->tensor = tensor;
    holder->shape.assign(shape.begin(), shape.end());
    holder->strides.resize(shape.size());
    int64_t stride = 1;
    for (size_t i = shape.size(); i-- > 0;) {
      holder->strides[i] = stride;
      stride *= shape[i];
    }
    DLTensor& t = holder->managed.dl_tensor;
    t.data = const_cast<float*>(tensor.data());
    t.device = device();
    t.ndim = static_cast<int32_t>(shape.size());
    t.dtype = DLDataType{kDLFloat, 32, 1};
    t.shape = holder->shape.data();
    t.strides = holder->strides.data();
    t.byte_offset = 0;
    holder->managed.manager_ctx = holder.get();
    holder->managed.deleter = delete_export;
    DLManagedTensor* managed = &holder->managed;
    PyObject* capsule = PyCapsule_New(managed, kCapsuleName, capsule_destructor);
    if (!capsule) throw py::error_already_set();
    holder.release();  // the capsule (or its consumer) owns it now
    return py::reinterpret_steal<py::capsule>(capsule);
  }
};

}  // namespace

bool is_dlpack_tensor(const py::handle& obj) {
  return !py::isinstance<py::array>(obj) && py::hasattr(obj, "__dlpack__") && py::hasattr(obj, "__dlpack_device__");
}

Tensor borrow_dlpack(const py::object& obj, Device model_device, const char* what) {
  const py::tuple where = obj.attr("__dlpack_device__")();
  const int type = where[0].cast<int>(), id = where[1].cast<int>();
  if (type != kDLCPU && type != kDLCUDA)
    throw ArgumentError(std::string(what) + ": tensors on " + device_text(type, id) +
                        " are not supported; give a CPU or CUDA tensor (or a numpy array)");
  if (type == kDLCUDA) {
    if (model_device != Device::CUDA)
      throw ArgumentError(std::string(what) + ": the tensor is on " + device_text(type, id) +
                          " but the model is on the cpu; load the model with device=\"cuda\" or move the tensor "
                          "to the cpu");
    if (id != cuda_device_index())
      throw ArgumentError(std::string(what) + ": the tensor is on " + device_text(type, id) + " but the model is on cuda:" +
                          std::to_string(cuda_device_index()) + "; move the tensor to that device");
  }
  // Stream 1, the legacy default stream, for a CUDA producer (see the header); none for the CPU,
  // where producers such as numpy refuse a stream.
  const py::object capsule = type == kDLCUDA ? obj.attr("__dlpack__")(py::arg("stream") = 1) : obj.attr("__dlpack__")();
  if (!PyCapsule_IsValid(capsule.ptr(), kCapsuleName))
    throw ArgumentError(std::string(what) + ": __dlpack__ did not return an unused DLPack capsule");
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), kCapsuleName));
  // From here this call owns the tensor: mark the capsule consumed and delete through the owner.
  if (PyCapsule_SetName(capsule.ptr(), kUsedCapsuleName) != 0) throw py::error_already_set();
  std::shared_ptr<void> owner(managed, [](void* p) {
    auto* m = static_cast<DLManagedTensor*>(p);
    if (m->deleter) m->deleter(m);
  });
  const DLTensor& t = managed->dl_tensor;
  if (t.dtype.code != kDLFloat || t.dtype.bits != 32 || t.dtype.lanes != 1)
    throw ArgumentError(std::string(what) + ": DLPack tensors must be float32 (images as grey levels in [0, 1]); got "
                        "dtype code " + std::to_string(t.dtype.code) + " with " + std::to_string(t.dtype.bits) +
                        " bits (for torch: x.float() / 255; or pass a numpy array, which may be uint8)");
  if (!is_compact(t))
    throw ArgumentError(std::string(what) + ": the tensor of shape " + shape_text(t) +
                        " is not contiguous; pass x.contiguous() (torch) or cupy.ascontiguousarray(x)");
  Shape shape(t.shape, t.shape + t.ndim);
  auto* data = reinterpret_cast<float*>(static_cast<char*>(t.data) + t.byte_offset);
  return Tensor::borrow(data, std::move(shape), type == kDLCUDA ? Device::CUDA : Device::CPU, std::move(owner));
}

py::object export_tensor(const Tensor& tensor, Shape shape) {
  if (shape_numel(shape) != tensor.numel())
    throw Error("export_tensor: shape " + to_string(shape) + " for a tensor of " + std::to_string(tensor.numel()));
  return py::cast(ExportedTensor{tensor, std::move(shape)});
}

py::object export_like(const py::object& like, const Tensor& tensor, Shape shape) {
  py::object out = export_tensor(tensor, std::move(shape));
  const std::string module = py::str(py::type::of(like).attr("__module__"));
  const std::string root = module.substr(0, module.find('.'));
  try {
    const py::module_ library = py::module_::import(root.c_str());
    if (py::hasattr(library, "from_dlpack")) return library.attr("from_dlpack")(out);
  } catch (const py::error_already_set&) {
    // No importable library of that name: the caller gets the vae.Tensor.
  }
  return out;
}

void bind_tensor(py::module_& m) {
  py::class_<ExportedTensor>(m, "Tensor",
                             "A float32 tensor the engine owns, on the model's device: pass it to torch.from_dlpack, "
                             "cupy.from_dlpack or numpy.from_dlpack (CPU) to use it without a copy.")
      .def_property_readonly("shape", [](const ExportedTensor& t) { return py::tuple(py::cast(t.shape)); })
      .def_property_readonly("device", [](const ExportedTensor& t) {
        return t.tensor.device() == Device::CPU ? std::string("cpu") : "cuda:" + std::to_string(t.device().device_id);
      })
      .def(
          "__dlpack__",
          [](const ExportedTensor& t, const py::object& stream, const py::object&, const py::object& dl_device,
             const py::object& copy) {
            if (!copy.is_none() && copy.cast<bool>())
              throw ArgumentError("vae.Tensor.__dlpack__: copy=True is not supported; copy with the consumer's library");
            return t.dlpack(stream, dl_device);
          },
          py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(), py::arg("copy") = py::none(),
           "A DLPack capsule of this tensor (DLPack 0.6, unversioned, whatever max_version asks).")
      .def("__dlpack_device__", &ExportedTensor::dlpack_device)
      .def(
          "numpy",
          [](const ExportedTensor& t) {
            std::vector<float> host;
            {
              py::gil_scoped_release release;
              host = t.tensor.to_host();
            }
            py::array_t<float> out(std::vector<py::ssize_t>(t.shape.begin(), t.shape.end()));
            std::memcpy(out.mutable_data(), host.data(), host.size() * sizeof(float));
            return out;
          },
          "A copy in host memory as a numpy array.")
      .def("__repr__", [](const ExportedTensor& t) {
        return "vae.Tensor(shape=" + to_string(t.shape) + ", device=" + to_string(t.tensor.device()) + ")";
      });
}

}  // namespace vae::python
