// DLPack between Python tensors and vae::Tensor, both ways, without copies: a torch.Tensor, CuPy
// array or numpy array (anything with __dlpack__ and __dlpack_device__) is borrowed as a
// vae::Tensor over the producer's memory; an engine tensor is handed out as a vae.Tensor whose
// __dlpack__ gives consumers (torch.from_dlpack, cupy.from_dlpack, numpy.from_dlpack) its memory.
//
// The protocol is DLPack 0.6's unversioned "dltensor" capsule (Debian's libdlpack-dev), which every
// consumer still accepts. Streams: the engine's CUDA stream is a blocking stream, so it is ordered
// after the legacy default stream; an import asks the producer for stream 1 (the legacy default
// stream: the producer makes it wait for its own work), and an export waits for the device to
// finish before it hands the memory out (vae::synchronize), which is safe for any consumer stream.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "argument_error.hpp"
#include "vae/tensor.hpp"

namespace vae::python {

// True for an object that offers DLPack but is not a numpy array (numpy arrays keep the numpy path,
// which accepts uint8 and copies strided arrays).
bool is_dlpack_tensor(const pybind11::handle& obj);

// The tensor behind a DLPack producer, borrowed: float32, C-contiguous, on the CPU or on this
// process's CUDA device (a CUDA tensor needs a CUDA model). Anything else is refused with
// ArgumentError naming what was expected; `what` names the call in messages.
Tensor borrow_dlpack(const pybind11::object& obj, Device model_device, const char* what);

// An engine tensor with a shape of the same element count, as a vae.Tensor for DLPack consumers.
pybind11::object export_tensor(const Tensor& tensor, Shape shape);

// export_tensor, converted to the kind of tensor `like` is: torch.from_dlpack for a torch tensor,
// cupy.from_dlpack for a CuPy array (any module with a from_dlpack); the vae.Tensor itself otherwise.
pybind11::object export_like(const pybind11::object& like, const Tensor& tensor, Shape shape);

// Registers vae.Tensor in module m.
void bind_tensor(pybind11::module_& m);

}  // namespace vae::python
