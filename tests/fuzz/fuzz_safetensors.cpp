// libFuzzer harness: the safetensors parser. A file that parses must re-serialise and parse back
// to the same tensors.
#include <cstdint>
#include <vector>

#include "vae/error.hpp"
#include "vae/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::vector<uint8_t> bytes(data, data + size);
    const vae::SafeTensorsFile f = vae::parse_safetensors(bytes, "fuzz");
    const vae::SafeTensorsFile g = vae::parse_safetensors(vae::serialize_safetensors(f), "round trip");
    if (f.tensors.size() != g.tensors.size() || f.metadata != g.metadata) __builtin_trap();
    for (size_t i = 0; i < f.tensors.size(); ++i)
      if (f.tensors[i].shape != g.tensors[i].shape || f.tensors[i].values.size() != g.tensors[i].values.size())
        __builtin_trap();
  } catch (const vae::Error&) {
  }
  return 0;
}
