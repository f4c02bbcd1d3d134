// One owner per run folder: an exclusive flock(2) on DIR/.vae-lock for as long as the lock object
// lives. The holder writes its pid (and host) into the file, so a second run on the folder can say
// who holds it. The kernel drops the lock when the holder exits, however it exits (kill -9
// included), so a crash never leaves a folder locked; a stale file with a dead pid is harmless.
// flock works between processes on one machine; on NFS it is emulated with byte-range locks (Linux
// >= 2.6.12), which the server arbitrates across machines.
#pragma once

#include <string>

namespace vae {

class FolderLock {
 public:
  FolderLock() = default;
  // Takes the lock of an existing folder without waiting. Throws when another process
  // (or another lock object in this one) holds it, naming the holder; `what` names the folder's use
  // in that message ("output folder", "run folder").
  FolderLock(const std::string& dir, const std::string& what);
  FolderLock(FolderLock&& o) noexcept;
  FolderLock& operator=(FolderLock&& o) noexcept;
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;
  ~FolderLock();
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace vae
