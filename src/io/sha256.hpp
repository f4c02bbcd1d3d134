// SHA-256 through OpenSSL's EVP interface: the content hashes a run and an evaluation record (a data
// set's, a test set's, a model configuration's), as "sha256:" and 64 hex digits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <openssl/evp.h>

#include "vae/error.hpp"

namespace vae {

class Sha256 {
 public:
  explicit Sha256(std::string what) : what_(std::move(what)), ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1)
      throw Error("cannot hash " + what_ + ": OpenSSL's SHA-256 is unavailable");
  }
  void add(const void* bytes, size_t n) {
    if (n > 0 && EVP_DigestUpdate(ctx_.get(), bytes, n) != 1) throw Error("cannot hash " + what_ + ": SHA-256 failed");
  }
  // A little-endian word of `bytes` bytes, written out byte by byte so that the hash does not depend
  // on the host's order.
  void add_int(uint64_t v, int bytes) {
    uint8_t b[8];
    for (int i = 0; i < bytes; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    add(b, static_cast<size_t>(bytes));
  }
  // "sha256:" and the digest's 64 hex digits; ends the hash.
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), digest, &length) != 1) throw Error("cannot hash " + what_ + ": SHA-256 failed");
    static const char digits[] = "0123456789abcdef";
    std::string out = "sha256:";
    for (unsigned int i = 0; i < length; ++i) out += {digits[digest[i] >> 4], digits[digest[i] & 15]};
    return out;
  }

 private:
  std::string what_;
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

}  // namespace vae
