// process.hpp: what a daemon does to its own process after binding: the pid file (with a lock, so a
// second instance fails clearly), optional chroot, and an irrevocable drop to an unprivileged user.
#pragma once

#include <string>

#include "common/result.hpp"
#include "common/runtime/listener.hpp"

namespace common::runtime {

class PidFile {
 public:
  // Creates and locks the file and writes our pid; fails naming the running pid when it is locked.
  static Result<PidFile> create(const std::string& path);
  PidFile() = default;
  PidFile(PidFile&&) = default;
  PidFile& operator=(PidFile&&) = default;
  ~PidFile();  // removes the file

 private:
  std::string path_;
  Fd fd_;
};

struct PrivilegeOptions {
  std::string user;        // empty: stay as we are (refused when that is root, unless allow_root)
  std::string group;       // empty: the user's primary group
  std::string chroot_dir;  // empty: no chroot
  bool allow_root = false;
};

// Looks the user up (before any chroot), chroots, then setgroups/setgid/setuid and checks that root
// cannot be regained. Must run after binding and before the first connection is accepted.
Result<void> drop_privileges(const PrivilegeOptions& options);

}  // namespace common::runtime
