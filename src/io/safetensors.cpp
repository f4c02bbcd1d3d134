#include "vae/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include <nlohmann/json.hpp>

#include "io/atomic_file.hpp"
#include "vae/error.hpp"

namespace vae {

static_assert(std::endian::native == std::endian::little, "safetensors is little-endian; add byte swapping");

const SafeTensor* SafeTensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<uint8_t> serialize_safetensors(const SafeTensorsFile& file) {
  std::vector<const SafeTensor*> order;
  for (const auto& t : file.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->name < b->name; });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  uint64_t offset = 0;
  for (const SafeTensor* t : order) {
    int64_t n = 1;
    for (int64_t d : t->shape) n *= d;
    if (n != static_cast<int64_t>(t->values.size()))
      throw Error("safetensors: tensor '" + t->name + "' has " + std::to_string(t->values.size()) +
                  " values for its shape");
    const uint64_t bytes = static_cast<uint64_t>(n) * 4;
    header[t->name] = {{"dtype", "F32"}, {"shape", t->shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data buffer starts 8-byte aligned

  std::vector<uint8_t> out(8 + text.size() + offset);
  const uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, text.data(), text.size());
  uint8_t* data = out.data() + 8 + text.size();
  for (const SafeTensor* t : order) {
    if (!t->values.empty()) std::memcpy(data, t->values.data(), t->values.size() * 4);
    data += t->values.size() * 4;
  }
  return out;
}

void write_safetensors(const std::string& path, const SafeTensorsFile& file) {
  const std::vector<uint8_t> bytes = serialize_safetensors(file);
  write_file_atomic(path, bytes.data(), bytes.size());
}

SafeTensorsFile parse_safetensors(const std::vector<uint8_t>& bytes, const std::string& what) {
  const std::string where = "safetensors file '" + what + "'";
  if (bytes.size() < 8) throw Error(where + " is truncated: " + std::to_string(bytes.size()) + " bytes, no header length");
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  if (header_len > bytes.size() - 8 || header_len > (100u << 20))
    throw Error(where + " is truncated or corrupt: header length " + std::to_string(header_len) + " but the file has " +
                std::to_string(bytes.size()) + " bytes");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(header_len));
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + " has a header that is not valid JSON: " + e.what());
  }
  if (!header.is_object()) throw Error(where + " has a header that is not a JSON object");
  const uint8_t* data = bytes.data() + 8 + header_len;
  const uint64_t data_len = bytes.size() - 8 - header_len;

  SafeTensorsFile file;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw Error(where + ": __metadata__ must be an object of strings");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) throw Error(where + ": metadata value for '" + k + "' is not a string");
        file.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string t = where + ": tensor '" + name + "'";
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
      throw Error(t + " lacks dtype, shape or data_offsets");
    if (!entry["dtype"].is_string() || entry["dtype"] != "F32")
      throw Error(t + " has dtype " + entry["dtype"].dump() + "; only F32 is supported");
    const auto& shape = entry["shape"];
    const auto& offs = entry["data_offsets"];
    if (!shape.is_array() || !offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() ||
        !offs[1].is_number_unsigned())
      throw Error(t + " has a malformed shape or data_offsets");
    SafeTensor st;
    st.name = name;
    // Every dimension is checked before it is multiplied in: the count can neither wrap around
    // (to 0, say) nor exceed what the data buffer could hold.
    constexpr uint64_t kMaxElements = uint64_t(1) << 40;
    uint64_t numel = 1;
    if (shape.size() > 16) throw Error(t + " has " + std::to_string(shape.size()) + " dimensions; at most 16");
    for (const auto& d : shape) {
      if (!d.is_number_unsigned()) throw Error(t + " has a negative or non-integer dimension");
      const auto dim = d.get<uint64_t>();
      if (dim > kMaxElements || (dim != 0 && numel > kMaxElements / dim)) throw Error(t + " is implausibly large (more than 2^40 elements)");
      st.shape.push_back(static_cast<int64_t>(dim));
      numel *= dim;
    }
    const uint64_t begin = offs[0].get<uint64_t>(), end = offs[1].get<uint64_t>();
    if (begin > end || end > data_len)
      throw Error(t + " has data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                  "] outside the " + std::to_string(data_len) + "-byte data buffer (truncated file?)");
    if (end - begin != numel * 4)
      throw Error(t + " occupies " + std::to_string(end - begin) + " bytes but its shape needs " + std::to_string(numel * 4));
    st.values.resize(numel);
    if (numel) std::memcpy(st.values.data(), data + begin, numel * 4);
    ranges.emplace_back(begin, end);
    file.tensors.push_back(std::move(st));
  }
  // The format requires the buffer to be covered exactly: no overlaps, no holes.
  std::sort(ranges.begin(), ranges.end());
  uint64_t cursor = 0;
  for (const auto& [b, e] : ranges) {
    if (b != cursor) throw Error(where + " has overlapping tensors or a hole in its data buffer at byte " + std::to_string(cursor));
    cursor = e;
  }
  if (cursor != data_len)
    throw Error(where + " has " + std::to_string(data_len - cursor) + " bytes after its last tensor");
  std::sort(file.tensors.begin(), file.tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return file;
}

SafeTensorsFile read_safetensors(const std::string& path) {
  return parse_safetensors(read_file_bytes(path, "safetensors file"), path);
}

}  // namespace vae
