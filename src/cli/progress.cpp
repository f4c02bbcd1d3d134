#include "cli/progress.hpp"

#include <cstdio>

namespace vae::cli {

std::string format_duration(double seconds) {
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

void ProgressBar::update(const StepProgress& p) {
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && p.step != p.steps_per_epoch && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  constexpr int kWidth = 24;
  const int filled = static_cast<int>(kWidth * p.step / std::max<int64_t>(1, p.steps_per_epoch));
  std::string bar(static_cast<size_t>(filled), '=');
  if (filled < kWidth) bar += '>';
  bar.resize(kWidth, ' ');
  std::fprintf(stderr, "\r\033[Kepoch %d/%d [%s] %lld/%lld loss %.2f  %.0f samples/s  ETA %s", p.epoch, epochs_,
               bar.c_str(), static_cast<long long>(p.step), static_cast<long long>(p.steps_per_epoch), p.loss,
               p.samples_per_s, format_duration(p.eta_s).c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::finish_line() {
  if (drawn_) std::fprintf(stderr, "\r\033[K");
  drawn_ = false;
}

}  // namespace vae::cli
