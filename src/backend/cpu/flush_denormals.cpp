#include "backend/cpu/flush_denormals.hpp"

#include <omp.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace vae {
namespace {

#if defined(__x86_64__) || defined(__i386__)
constexpr unsigned long kFlushBits = 0x8040;  // MXCSR FTZ (bit 15) | DAZ (bit 6)
unsigned long read_mode() { return _mm_getcsr(); }
void write_mode(unsigned long mode) { _mm_setcsr(static_cast<unsigned>(mode)); }
#elif defined(__aarch64__)
constexpr unsigned long kFlushBits = 1ul << 24;  // FPCR.FZ flushes inputs and outputs
unsigned long read_mode() {
  unsigned long v;
  __asm__ volatile("mrs %0, fpcr" : "=r"(v));
  return v;
}
void write_mode(unsigned long mode) { __asm__ volatile("msr fpcr, %0" : : "r"(mode)); }
#else
constexpr unsigned long kFlushBits = 0;  // no known control: the scope changes nothing
unsigned long read_mode() { return 0; }
void write_mode(unsigned long) {}
#endif

}  // namespace

FlushDenormalsScope::FlushDenormalsScope() {
  caller_mode_ = read_mode();
  write_mode(caller_mode_ | kFlushBits);
  worker_modes_.assign(static_cast<size_t>(omp_get_max_threads()), 0);
  // One parallel region of the size later regions use: libgomp keeps these same threads for them.
#pragma omp parallel num_threads(static_cast<int>(worker_modes_.size()))
  {
    const auto t = static_cast<size_t>(omp_get_thread_num());
    const unsigned long mode = read_mode();
    if (t < worker_modes_.size()) worker_modes_[t] = mode;
    write_mode(mode | kFlushBits);
  }
}

FlushDenormalsScope::~FlushDenormalsScope() {
#pragma omp parallel num_threads(static_cast<int>(worker_modes_.size()))
  {
    const auto t = static_cast<size_t>(omp_get_thread_num());
    if (t != 0 && t < worker_modes_.size()) write_mode(worker_modes_[t]);
  }
  write_mode(caller_mode_);
}

bool FlushDenormalsScope::active_on_this_thread() { return kFlushBits != 0 && (read_mode() & kFlushBits) == kFlushBits; }

}  // namespace vae
