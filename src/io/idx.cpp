// IDX reader (the MNIST family's format): magic 0x00 0x00 <type> <ndim>, ndim big-endian uint32
// dimensions, then the payload. Gzipped files are inflated in memory with zlib, and only as far as
// the header says: the header is inflated and checked first, then exactly the payload it announces,
// so a small file that would inflate to gigabytes costs nothing beyond its announced (and bounded) size.
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "io/atomic_file.hpp"
#include "vae/data.hpp"
#include "vae/error.hpp"

namespace vae {
namespace {

// Sequential reads from a plain or gzipped byte buffer.
class ByteStream {
 public:
  ByteStream(const uint8_t* data, size_t size, std::string what) : data_(data), size_(size), what_(std::move(what)) {
    gzip_ = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    if (gzip_) {
      zs_ = std::make_unique<z_stream>();
      if (inflateInit2(zs_.get(), 15 + 32) != Z_OK) throw Error("zlib could not start inflating " + what_);
      zs_->next_in = const_cast<Bytef*>(data);
      zs_->avail_in = static_cast<uInt>(std::min<size_t>(size, UINT32_MAX));
      consumed_ = zs_->avail_in;
    }
  }
  ~ByteStream() {
    if (zs_) inflateEnd(zs_.get());
  }
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  // Reads up to n bytes into dst; fewer only at the end of the data.
  size_t read(uint8_t* dst, size_t n) {
    if (!gzip_) {
      const size_t k = std::min(n, size_ - pos_);
      if (k) std::memcpy(dst, data_ + pos_, k);
      pos_ += k;
      return k;
    }
    size_t got = 0;
    while (got < n && !ended_) {
      if (zs_->avail_in == 0 && consumed_ < size_) {  // inputs above 4 GiB arrive in pieces
        const size_t k = std::min<size_t>(size_ - consumed_, UINT32_MAX);
        zs_->next_in = const_cast<Bytef*>(data_ + consumed_);
        zs_->avail_in = static_cast<uInt>(k);
        consumed_ += k;
      }
      const size_t want = std::min<size_t>(n - got, UINT32_MAX);
      zs_->next_out = dst + got;
      zs_->avail_out = static_cast<uInt>(want);
      const int status = inflate(zs_.get(), Z_NO_FLUSH);
      got += want - zs_->avail_out;
      if (status == Z_STREAM_END) {
        ended_ = true;
      } else if (status == Z_BUF_ERROR && zs_->avail_in == 0 && consumed_ == size_) {
        throw Error(what_ + " is a truncated gzip file; download or reinstall it");
      } else if (status != Z_OK && status != Z_BUF_ERROR) {
        throw Error(what_ + " is not a valid gzip file (" + (zs_->msg ? zs_->msg : "corrupt data") +
                    "); download or reinstall it");
      }
    }
    return got;
  }

  // The most bytes the rest of the data could yield: what is left of a plain buffer, or for gzip
  // 1032 bytes per compressed byte left (deflate's largest ratio). Checked before a payload is
  // allocated, so a header announcing gigabytes in a small file allocates nothing.
  uint64_t max_remaining() const {
    if (!gzip_) return size_ - pos_;
    return (uint64_t(zs_->avail_in) + (size_ - consumed_)) * 1032 + 1032;
  }

  // Whether anything follows what was read: a byte of payload, or more gzip data.
  bool has_more() {
    uint8_t b;
    return read(&b, 1) == 1;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  std::string what_;
  bool gzip_ = false, ended_ = false;
  size_t pos_ = 0, consumed_ = 0;
  std::unique_ptr<z_stream> zs_;
};

uint32_t big_endian_u32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// Reads and checks the header of an IDX file of unsigned bytes with `ndim` dimensions; returns them.
std::vector<uint32_t> read_header(ByteStream& in, int ndim, const std::string& where, const char* expected) {
  uint8_t head[4 + 4 * 3];
  const size_t want = 4 + 4 * static_cast<size_t>(ndim);
  const size_t got = in.read(head, 4);
  if (got < 4) throw Error(where + " is too short to hold an IDX header (" + std::to_string(got) + " bytes)");
  if (head[0] != 0 || head[1] != 0) throw Error(where + " does not start with the IDX magic 0x0000");
  if (head[2] != 0x08)
    throw Error(where + " holds element type " + std::to_string(head[2]) + "; expected 8 (unsigned byte)");
  if (head[3] != ndim)
    throw Error(where + " has " + std::to_string(head[3]) + " dimensions; expected " + std::to_string(ndim) + " (" +
                expected + ")");
  if (in.read(head + 4, want - 4) != want - 4) throw Error(where + " is truncated inside its header");
  std::vector<uint32_t> dims;
  for (int i = 0; i < ndim; ++i) dims.push_back(big_endian_u32(head + 4 + 4 * i));
  return dims;
}

void check_room(const ByteStream& in, uint64_t expected, const std::string& where) {
  if (expected > in.max_remaining())
    throw Error(where + " is truncated: its header announces " + std::to_string(expected) +
                " bytes of data, more than the rest of the file can hold");
}

void read_payload(ByteStream& in, uint8_t* dst, uint64_t expected, const std::string& where) {
  const size_t found = in.read(dst, expected);
  if (found != expected)
    throw Error(where + " is truncated: its header announces " + std::to_string(expected) + " bytes of data, the file holds " +
                std::to_string(found));
  if (in.has_more()) throw Error(where + " has trailing bytes after the " + std::to_string(expected) + " its header announces");
}

}  // namespace

ImageSet parse_idx_images(const uint8_t* data, size_t size, const std::string& what) {
  const std::string where = "IDX file '" + what + "'";
  ByteStream in(data, size, where);
  const std::vector<uint32_t> dims = read_header(in, 3, where, "images x rows x columns");
  const uint32_t count = dims[0], rows = dims[1], cols = dims[2];
  const uint64_t expected = uint64_t(count) * rows * cols;
  if (count == 0 || rows == 0 || cols == 0 || rows > 4096 || cols > 4096 || count > (1u << 31) - 1 ||
      expected > kMaxDatasetBytes)
    throw Error(where + " has implausible dimensions " + std::to_string(count) + "x" + std::to_string(rows) + "x" +
                std::to_string(cols) + " (at most 4096 pixels a side and 16 GiB in all)");
  ImageSet set;
  set.count = count;
  set.channels = 1;
  set.height = static_cast<int>(rows);
  set.width = static_cast<int>(cols);
  check_room(in, expected, where);
  set.pixels.resize(expected);
  read_payload(in, set.pixels.data(), expected, where);
  return set;
}

std::vector<int32_t> parse_idx_labels(const uint8_t* data, size_t size, const std::string& what) {
  const std::string where = "IDX file '" + what + "'";
  ByteStream in(data, size, where);
  const uint32_t count = read_header(in, 1, where, "one label per image")[0];
  if (count == 0 || count > (1u << 31) - 1) throw Error(where + " announces " + std::to_string(count) + " labels");
  check_room(in, count, where);
  std::vector<uint8_t> bytes(count);
  read_payload(in, bytes.data(), count, where);
  return {bytes.begin(), bytes.end()};
}

ImageSet read_idx_images(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, "IDX file");
  return parse_idx_images(bytes.data(), bytes.size(), path);
}

std::vector<int32_t> read_idx_labels(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, "IDX file");
  return parse_idx_labels(bytes.data(), bytes.size(), path);
}

}  // namespace vae
