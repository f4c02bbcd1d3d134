// Whole-file reads and crash-safe writes (temporary file in the same folder, fsync, rename).
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

}  // namespace vae
