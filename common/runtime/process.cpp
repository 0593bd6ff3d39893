// process.cpp: pid file, chroot and privilege drop (OPS-04..06).
#include "common/runtime/process.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cerrno>
#include <cstring>
#include <vector>

namespace common::runtime {
namespace {
std::string errno_text() { return std::strerror(errno); }
}  // namespace

Result<PidFile> PidFile::create(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return fail(ErrorKind::Config, "pid file " + path + ": " + errno_text());
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    ssize_t n = ::pread(fd.get(), buf, sizeof buf - 1, 0);
    std::string running = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
    while (!running.empty() && (running.back() == '\n' || running.back() == ' ')) running.pop_back();
    return fail(ErrorKind::Config, "pid file " + path + " is locked: already running as pid " + running);
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    return fail(ErrorKind::Config, "pid file " + path + ": " + errno_text());
  }
  PidFile p;
  p.path_ = path;
  p.fd_ = std::move(fd);
  return p;
}

PidFile::~PidFile() {
  if (fd_ && !path_.empty()) ::unlink(path_.c_str());
}

Result<void> drop_privileges(const PrivilegeOptions& options) {
  if (options.user.empty()) {
    if (::geteuid() == 0 && !options.allow_root) {
      return fail(ErrorKind::Config,
                  "refusing to run as root: set [daemon] user to an unprivileged account (e.g. \"postern\")");
    }
    if (!options.chroot_dir.empty()) return fail(ErrorKind::Config, "chroot needs [daemon] user");
    return {};
  }
  errno = 0;
  passwd* pw = ::getpwnam(options.user.c_str());
  if (pw == nullptr) return fail(ErrorKind::Config, "user " + options.user + " does not exist");
  uid_t uid = pw->pw_uid;
  gid_t gid = pw->pw_gid;
  if (!options.group.empty()) {
    group* gr = ::getgrnam(options.group.c_str());
    if (gr == nullptr) return fail(ErrorKind::Config, "group " + options.group + " does not exist");
    gid = gr->gr_gid;
  }
  if (uid == 0) return fail(ErrorKind::Config, "user " + options.user + " is root; choose an unprivileged one");
  if (::geteuid() != 0) {
    if (::geteuid() == uid) return {};  // already that user (started by systemd with User=)
    return fail(ErrorKind::Config, "cannot switch to user " + options.user + ": not started as root");
  }
  // Linux clears the parent-death signal when credentials change; whoever set it (a test harness)
  // wants this process gone with its parent, so it is set again after the drop.
  int parent_death_signal = 0;
  ::prctl(PR_GET_PDEATHSIG, &parent_death_signal, 0, 0, 0);
  if (!options.chroot_dir.empty()) {
    if (::chroot(options.chroot_dir.c_str()) != 0 || ::chdir("/") != 0) {
      return fail(ErrorKind::Config, "chroot " + options.chroot_dir + ": " + errno_text());
    }
  }
  if (::setgroups(1, &gid) != 0) return fail(ErrorKind::Config, "setgroups: " + errno_text());
  if (::setresgid(gid, gid, gid) != 0) return fail(ErrorKind::Config, "setresgid: " + errno_text());
  if (::setresuid(uid, uid, uid) != 0) return fail(ErrorKind::Config, "setresuid: " + errno_text());
  if (::setuid(0) == 0 || ::seteuid(0) == 0) return fail(ErrorKind::Internal, "root could be regained after the drop");
  if (parent_death_signal != 0) {
    ::prctl(PR_SET_PDEATHSIG, parent_death_signal, 0, 0, 0);
    if (::getppid() == 1) ::raise(parent_death_signal);  // the parent went away during the drop
  }
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);  // no core files holding keys
  return {};
}

}  // namespace common::runtime
