// vae::Error: the one exception type the library throws. Its message says what was expected,
// what was found and what to do about it; the CLI prints it on one line and exits non-zero.
#pragma once

#include <stdexcept>
#include <string>

namespace vae {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace vae
