// Whole-file reads and crash-safe writes: a uniquely named temporary file in the same folder,
// written and fsynced, renamed over the target, then the folder fsynced so the rename survives a
// power cut. A crash leaves the old file intact and at worst a hidden temporary, which
// remove_stale_temporaries (run when a training run starts in a folder) deletes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vae {

std::vector<uint8_t> read_file_bytes(const std::string& path, const std::string& what);
void write_file_atomic(const std::string& path, const void* data, size_t size);
inline void write_file_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text.data(), text.size());
}
// Deletes the temporaries an interrupted write_file_atomic left in dir; returns how many.
int remove_stale_temporaries(const std::string& dir);
// A fault-injection seam for one test program (tests/crash_run.cpp): called with the target just
// before each rename, with the temporary written and synced, so the test can end the process at
// every point a crash could. No other program sets it.
void set_rename_hook(void (*hook)(const std::string& target));

}  // namespace vae
