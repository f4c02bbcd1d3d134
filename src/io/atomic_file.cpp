#include "io/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "vae/error.hpp"

namespace vae {

std::vector<uint8_t> read_file_bytes(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw Error(what + " '" + path + "' does not exist or is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + what + " '" + path + "': " + std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error("error reading " + what + " '" + path + "'");
  return bytes;
}

namespace {

// Temporary files: ".<name>.vae-tmp-<pid>-<n>" beside the target. The leading dot keeps them out
// of globs like *.safetensors, the marker lets remove_stale_temporaries find what a crash left.
constexpr const char* kTmpMarker = ".vae-tmp-";

void (*rename_hook)(const std::string&) = nullptr;

void fsync_folder(const std::filesystem::path& dir, const std::string& path) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) throw Error("cannot open folder '" + dir.string() + "' to make '" + path + "' durable: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  // Some file systems cannot fsync a folder (EINVAL): the rename is then as durable as they allow.
  if (rc != 0 && saved != EINVAL)
    throw Error("cannot make '" + path + "' durable (fsync of its folder failed: " + std::strerror(saved) + ")");
}

}  // namespace

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  static std::atomic<uint64_t> counter{0};
  const std::filesystem::path target(path);
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw Error("cannot write '" + path + "': folder '" + dir.string() + "' does not exist");
  const std::string tmp = (dir / ("." + target.filename().string() + kTmpMarker + std::to_string(::getpid()) + "-" +
                                  std::to_string(counter++))).string();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot create '" + tmp + "': " + std::strerror(errno));
  auto fail = [&](const std::string& why) {
    ::close(fd);  // on every failure path: the descriptor never leaks
    ::unlink(tmp.c_str());
    throw Error("cannot write '" + path + "': " + why);
  };
  const auto* p = static_cast<const char*>(data);
  size_t left = size;
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(std::string(std::strerror(errno)) + (errno == ENOSPC ? " (the disk is full)" : ""));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) fail(std::string("fsync failed: ") + std::strerror(errno));
  if (::close(fd) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw Error("cannot write '" + path + "': " + why);
  }
  if (rename_hook) rename_hook(path);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw Error("cannot rename '" + tmp + "' to '" + path + "': " + why);
  }
  fsync_folder(dir, path);
}

int remove_stale_temporaries(const std::string& dir) {
  int removed = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!name.empty() && name[0] == '.' && name.find(kTmpMarker) != std::string::npos && e.is_regular_file(ec)) {
      std::filesystem::remove(e.path(), ec);
      removed += !ec;
    }
  }
  return removed;
}

void set_rename_hook(void (*hook)(const std::string& target)) { rename_hook = hook; }

}  // namespace vae
