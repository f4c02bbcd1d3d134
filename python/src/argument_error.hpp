// A bad argument from Python: raised as vae.ArgumentError (a ValueError and a vae.Error).
#pragma once

#include "vae/error.hpp"

namespace vae::python {

struct ArgumentError : vae::Error {
  using vae::Error::Error;
};

}  // namespace vae::python
