// numpy's .npy format: the magic "\x93NUMPY", a version byte pair (1.0: 2-byte header length;
// 2.0 and 3.0: 4-byte), a little-endian header length, then an ASCII Python dict literal
//   {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), }
// padded to a multiple of 64 bytes, then the array in C (or Fortran) order. We read C-order arrays
// of the dtypes below; everything the header announces is checked before the payload is touched.
#include <cmath>
#include <cstring>
#include <limits>

#include "io/atomic_file.hpp"
#include "vae/data.hpp"
#include "vae/error.hpp"
#include "vae/generate.hpp"

namespace vae {
namespace {

struct NpyArray {
  std::string descr;           // e.g. "<f4", "|u1"
  std::vector<uint64_t> shape;
  const uint8_t* data = nullptr;
  uint64_t data_bytes = 0;
};

// A cursor over the header dict, which numpy writes as a Python literal; we accept exactly that
// grammar (string keys, string/bool/tuple-of-int values), nothing more.
class HeaderParser {
 public:
  HeaderParser(std::string text, std::string where) : s_(std::move(text)), where_(std::move(where)) {}

  NpyArray parse() {
    NpyArray a;
    bool have_descr = false, have_order = false, have_shape = false, fortran = false;
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = string_literal();
      expect(':');
      if (key == "descr") {
        a.descr = string_literal();
        have_descr = true;
      } else if (key == "fortran_order") {
        fortran = boolean();
        have_order = true;
      } else if (key == "shape") {
        a.shape = int_tuple();
        have_shape = true;
      } else {
        fail("has an unknown header key '" + key + "'");
      }
      skip_space();
      if (peek() == ',') ++i_;
    }
    if (!have_descr || !have_order || !have_shape) fail("lacks one of descr, fortran_order, shape in its header");
    if (fortran)
      fail("is stored in Fortran order; save it in C order (numpy.ascontiguousarray(a) before numpy.save)");
    return a;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const { throw Error(where_ + " " + why); }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t')) ++i_;
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) fail(std::string("has a malformed header: expected '") + c + "' at byte " + std::to_string(i_));
    ++i_;
  }
  std::string string_literal() {
    skip_space();
    const char q = peek();
    if (q != '\'' && q != '"') fail("has a malformed header: expected a quoted string at byte " + std::to_string(i_));
    const size_t end = s_.find(q, i_ + 1);
    if (end == std::string::npos || end - i_ > 64) fail("has a malformed header: unterminated string");
    std::string out = s_.substr(i_ + 1, end - i_ - 1);
    i_ = end + 1;
    return out;
  }
  bool boolean() {
    skip_space();
    for (const auto& [word, value] : {std::pair<const char*, bool>{"True", true}, {"False", false}})
      if (s_.compare(i_, std::strlen(word), word) == 0) {
        i_ += std::strlen(word);
        return value;
      }
    fail("has a malformed header: fortran_order is not True or False");
  }
  std::vector<uint64_t> int_tuple() {
    expect('(');
    std::vector<uint64_t> dims;
    while (true) {
      skip_space();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') fail("has a malformed shape in its header");
      uint64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (v > (std::numeric_limits<uint64_t>::max() - 9) / 10) fail("has a dimension too large for any array");
        v = v * 10 + static_cast<uint64_t>(peek() - '0');
        ++i_;
      }
      if (peek() == 'L') ++i_;  // Python 2 longs
      dims.push_back(v);
      if (dims.size() > 8) fail("has more than 8 dimensions");
      skip_space();
      if (peek() == ',') ++i_;
      else if (peek() != ')') fail("has a malformed shape in its header");
    }
    ++i_;
    return dims;
  }

  std::string s_, where_;
  size_t i_ = 0;
};

NpyArray parse_npy(const uint8_t* data, size_t size, const std::string& where) {
  static const uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10 || std::memcmp(data, kMagic, 6) != 0)
    throw Error(where + " is not a .npy file (no \\x93NUMPY magic); save arrays with numpy.save");
  const int major = data[6];
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = size_t(data[8]) | (size_t(data[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) throw Error(where + " is truncated inside its header");
    header_len = size_t(data[8]) | (size_t(data[9]) << 8) | (size_t(data[10]) << 16) | (size_t(data[11]) << 24);
    header_start = 12;
  } else {
    throw Error(where + " has .npy format version " + std::to_string(major) + "; versions 1 to 3 are supported");
  }
  if (header_len > size - header_start || header_len > (1u << 20))
    throw Error(where + " is truncated: its header length " + std::to_string(header_len) + " runs past the file's " +
                std::to_string(size) + " bytes");
  NpyArray a = HeaderParser(std::string(reinterpret_cast<const char*>(data + header_start), header_len), where).parse();
  a.data = data + header_start + header_len;
  a.data_bytes = size - header_start - header_len;
  return a;
}

// Element count of shape, or an error when it is above `limit` (checked before every multiply).
uint64_t checked_count(const std::vector<uint64_t>& shape, uint64_t limit, const std::string& where) {
  uint64_t n = 1;
  for (uint64_t d : shape) {
    if (d != 0 && n > limit / d) throw Error(where + " announces more than " + std::to_string(limit) + " elements");
    n *= d;
  }
  return n;
}

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

void check_payload(const NpyArray& a, uint64_t count, uint64_t item, const std::string& where) {
  if (a.data_bytes != count * item)
    throw Error(where + " holds " + std::to_string(a.data_bytes) + " bytes of data but its shape " + shape_text(a.shape) +
                " and dtype " + a.descr + " need " + std::to_string(count * item) + (a.data_bytes < count * item ? " (truncated)" : ""));
}

}  // namespace

ImageSet parse_npy_images(const uint8_t* data, size_t size, const std::string& what) {
  const std::string where = ".npy file '" + what + "'";
  const NpyArray a = parse_npy(data, size, where);
  const bool u8 = a.descr == "|u1" || a.descr == "<u1" || a.descr == "u1";
  const bool f32 = a.descr == "<f4";
  if (!u8 && !f32)
    throw Error(where + " has dtype '" + a.descr + "'; images must be uint8 (0-255) or float32 in [0, 1] "
                "(a.astype(numpy.float32) / 255 or a.astype(numpy.uint8))");
  const auto& s = a.shape;
  ImageSet set;
  bool channels_last = false;
  uint64_t n = 0, c = 1, h = 0, w = 0;
  if (s.size() == 3) {
    n = s[0], h = s[1], w = s[2];
  } else if (s.size() == 4 && s[3] >= 1 && s[3] <= 4) {
    n = s[0], h = s[1], w = s[2], c = s[3];
    channels_last = true;
  } else if (s.size() == 4 && s[1] >= 1 && s[1] <= 4) {
    n = s[0], c = s[1], h = s[2], w = s[3];
  } else {
    throw Error(where + " has shape " + shape_text(s) + "; expected [N, H, W], [N, H, W, C] or [N, C, H, W] with C = 1 to 4");
  }
  if (n == 0 || h == 0 || w == 0 || h > 4096 || w > 4096 || n > (1u << 31) - 1)
    throw Error(where + " has shape " + shape_text(s) + ": images must be 1 to 4096 pixels a side, at least one image");
  const uint64_t count = checked_count(s, kMaxDatasetBytes, where);
  check_payload(a, count, f32 ? 4 : 1, where);
  set.count = static_cast<int64_t>(n);
  set.channels = static_cast<int>(c);
  set.height = static_cast<int>(h);
  set.width = static_cast<int>(w);
  set.pixels.resize(count);
  const uint64_t plane = h * w;
  for (uint64_t i = 0; i < count; ++i) {
    // Destination [N, C, H, W] index of source element i.
    uint64_t dst = i;
    if (channels_last && c > 1) {
      const uint64_t ch = i % c, pix = (i / c) % plane, img = i / (c * plane);
      dst = (img * c + ch) * plane + pix;
    }
    uint8_t v;
    if (f32) {
      float f;
      std::memcpy(&f, a.data + 4 * i, 4);
      if (!(f >= 0.0f && f <= 1.0f))
        throw Error(where + " holds " + std::to_string(f) + " at flat index " + std::to_string(i) +
                    "; float32 images must lie in [0, 1]");
      v = static_cast<uint8_t>(std::lround(f * 255.0f));
    } else {
      v = a.data[i];
    }
    set.pixels[dst] = v;
  }
  return set;
}

std::vector<int32_t> parse_npy_labels(const uint8_t* data, size_t size, const std::string& what) {
  const std::string where = ".npy file '" + what + "'";
  const NpyArray a = parse_npy(data, size, where);
  if (a.shape.size() != 1 && !(a.shape.size() == 2 && a.shape[1] == 1))
    throw Error(where + " has shape " + shape_text(a.shape) + "; labels must be one integer per image, shape [N]");
  const std::string& d = a.descr;
  const bool is_signed = d.size() == 3 && d[1] == 'i', is_unsigned = d.size() == 3 && d[1] == 'u';
  const int item = d.size() == 3 ? d[2] - '0' : 0;
  if (!(is_signed || is_unsigned) || !(item == 1 || item == 2 || item == 4 || item == 8) ||
      (item > 1 && d[0] != '<') || (item == 1 && d[0] != '|' && d[0] != '<'))
    throw Error(where + " has dtype '" + d + "'; labels must be little-endian integers (numpy int64, int32, uint8...)");
  const uint64_t count = checked_count(a.shape, (uint64_t{1} << 31) - 1, where);
  check_payload(a, count, static_cast<uint64_t>(item), where);
  std::vector<int32_t> labels(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t raw = 0;
    std::memcpy(&raw, a.data + i * item, static_cast<size_t>(item));
    int64_t v;
    if (is_signed) {
      const int shift = 64 - 8 * item;
      v = static_cast<int64_t>(raw << shift) >> shift;  // sign-extend
    } else {
      v = raw > uint64_t(INT64_MAX) ? -1 : static_cast<int64_t>(raw);
    }
    if (v < 0 || v > INT32_MAX)
      throw Error(where + " holds label " + std::to_string(v) + " at index " + std::to_string(i) + "; labels must be in [0, 2^31)");
    labels[i] = static_cast<int32_t>(v);
  }
  return labels;
}

std::vector<float> read_npy_floats(const std::string& path, std::vector<int64_t>& shape) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, ".npy file");
  return parse_npy_floats(bytes.data(), bytes.size(), path, shape);
}

std::vector<float> parse_npy_floats(const uint8_t* data, size_t size, const std::string& what, std::vector<int64_t>& shape) {
  const std::string where = ".npy file '" + what + "'";
  const NpyArray a = parse_npy(data, size, where);
  if (a.descr != "<f4")
    throw Error(where + " has dtype '" + a.descr + "'; expected float32 (numpy: a.astype(numpy.float32))");
  const uint64_t count = checked_count(a.shape, uint64_t{1} << 32, where);
  check_payload(a, count, 4, where);
  for (uint64_t d : a.shape)
    if (d > uint64_t{1} << 32) throw Error(where + " has a dimension above 2^32");
  shape.assign(a.shape.begin(), a.shape.end());
  std::vector<float> values(count);
  if (count > 0) std::memcpy(values.data(), a.data, count * 4);
  return values;
}

namespace {

// numpy's format 1.0: the dict padded with spaces and a newline to a multiple of 64 bytes.
template <class T>
void write_npy_array(const std::string& path, const std::vector<T>& values, const std::vector<int64_t>& shape,
                     const char* descr) {
  int64_t count = 1;
  std::string dims;
  for (int64_t d : shape) {
    if (d < 0) throw Error("write_npy: negative dimension for '" + path + "'");
    count *= d;
    dims += std::to_string(d) + ",";
  }
  if (shape.size() > 1) dims.pop_back();
  if (count != static_cast<int64_t>(values.size()))
    throw Error("write_npy: " + std::to_string(values.size()) + " values for the shape of '" + path + "'");
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<uint8_t>(header.size() & 0xff),
                              static_cast<uint8_t>(header.size() >> 8)};
  out.insert(out.end(), header.begin(), header.end());
  const auto* raw = reinterpret_cast<const uint8_t*>(values.data());
  out.insert(out.end(), raw, raw + values.size() * sizeof(T));
  write_file_atomic(path, out.data(), out.size());
}

}  // namespace

void write_npy(const std::string& path, const std::vector<float>& values, const std::vector<int64_t>& shape) {
  write_npy_array(path, values, shape, "<f4");
}
void write_npy(const std::string& path, const std::vector<int32_t>& values, const std::vector<int64_t>& shape) {
  write_npy_array(path, values, shape, "<i4");
}

ImageSet read_npy_images(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, ".npy file");
  return parse_npy_images(bytes.data(), bytes.size(), path);
}

std::vector<int32_t> read_npy_labels(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, ".npy file");
  return parse_npy_labels(bytes.data(), bytes.size(), path);
}

}  // namespace vae
