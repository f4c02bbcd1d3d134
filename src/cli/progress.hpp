// Training progress on a terminal: one self-overwriting line (epoch, step, loss, samples/s, ETA),
// redrawn at most ten times a second.
#pragma once

#include <chrono>
#include <string>

#include "vae/train.hpp"

namespace vae::cli {

class ProgressBar {
 public:
  explicit ProgressBar(int epochs) : epochs_(epochs) {}
  void update(const StepProgress& p);
  void finish_line();  // ends the current line before other output

 private:
  int epochs_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

std::string format_duration(double seconds);

}  // namespace vae::cli
