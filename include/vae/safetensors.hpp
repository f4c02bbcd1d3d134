// The safetensors format (F32 tensors only): an 8-byte little-endian header length N, N bytes of
// JSON {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}},
// padded with spaces to a multiple of 8, then the tensor bytes. Files are written atomically.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace vae {

struct SafeTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

struct SafeTensorsFile {
  std::map<std::string, std::string> metadata;
  std::vector<SafeTensor> tensors;  // ordered by name
  const SafeTensor* find(const std::string& name) const;
};

void write_safetensors(const std::string& path, const SafeTensorsFile& file);
// Throws vae::Error naming the file and the defect for anything that is not a valid F32 file.
SafeTensorsFile read_safetensors(const std::string& path);
// The same, from bytes already in memory (what_for names the source in messages).
SafeTensorsFile parse_safetensors(const std::vector<uint8_t>& bytes, const std::string& what_for);
std::vector<uint8_t> serialize_safetensors(const SafeTensorsFile& file);

}  // namespace vae
