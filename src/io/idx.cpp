// IDX reader (the MNIST family's format): magic 0x00 0x00 <type> <ndim>, ndim big-endian uint32
// dimensions, then the payload. Gzipped files are inflated in memory with zlib.
#include <zlib.h>

#include <cstring>

#include "io/atomic_file.hpp"
#include "vae/data.hpp"
#include "vae/error.hpp"

namespace vae {
namespace {

std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const std::string& path) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) throw Error("zlib could not start inflating '" + path + "'");
  std::vector<uint8_t> out;
  std::vector<uint8_t> chunk(1 << 20);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  int status = Z_OK;
  while (status != Z_STREAM_END) {
    zs.next_out = chunk.data();
    zs.avail_out = static_cast<uInt>(chunk.size());
    status = inflate(&zs, Z_NO_FLUSH);
    if (status != Z_OK && status != Z_STREAM_END) {
      inflateEnd(&zs);
      throw Error("'" + path + "' is not a valid gzip file (" + (zs.msg ? zs.msg : "truncated") +
                  "); download or reinstall it");
    }
    out.insert(out.end(), chunk.data(), chunk.data() + (chunk.size() - zs.avail_out));
    if (status == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      throw Error("'" + path + "' is a truncated gzip file; reinstall the data set");
    }
  }
  inflateEnd(&zs);
  return out;
}

uint32_t big_endian_u32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

}  // namespace

ImageSet read_idx_images(const std::string& path) {
  std::vector<uint8_t> bytes = read_file_bytes(path, "IDX file");
  if (bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) bytes = gunzip(bytes, path);
  const std::string where = "IDX file '" + path + "'";
  if (bytes.size() < 4) throw Error(where + " is too short to hold an IDX header (" + std::to_string(bytes.size()) + " bytes)");
  if (bytes[0] != 0 || bytes[1] != 0) throw Error(where + " does not start with the IDX magic 0x0000");
  if (bytes[2] != 0x08) throw Error(where + " holds element type 0x" + std::to_string(bytes[2]) + "; expected 0x08 (unsigned byte)");
  if (bytes[3] != 3) throw Error(where + " has " + std::to_string(bytes[3]) + " dimensions; expected 3 (images x rows x columns)");
  if (bytes.size() < 16) throw Error(where + " is truncated inside its header");
  const uint32_t count = big_endian_u32(&bytes[4]);
  const uint32_t rows = big_endian_u32(&bytes[8]);
  const uint32_t cols = big_endian_u32(&bytes[12]);
  if (count == 0 || rows == 0 || cols == 0 || rows > 4096 || cols > 4096 || count > (1u << 28))
    throw Error(where + " has implausible dimensions " + std::to_string(count) + "x" + std::to_string(rows) + "x" + std::to_string(cols));
  const uint64_t expected = uint64_t(count) * rows * cols;
  const uint64_t found = bytes.size() - 16;
  if (found != expected)
    throw Error(where + (found < expected ? " is truncated" : " has trailing bytes") + ": its header announces " +
                std::to_string(expected) + " bytes of pixels, the file holds " + std::to_string(found));
  ImageSet set;
  set.count = count;
  set.height = static_cast<int>(rows);
  set.width = static_cast<int>(cols);
  set.pixels.assign(bytes.begin() + 16, bytes.end());
  return set;
}

}  // namespace vae
