// export.cpp: Maildir and mbox export (export.hpp).
#include "store/tools/export.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "common/ascii.hpp"
#include "common/net/address.hpp"
#include "store/tools/maildir.hpp"
#include "store/tools/mbox.hpp"

namespace store::tools {
namespace {

namespace fs = std::filesystem;
using ops::OpCode;

tl::unexpected<OpError> op_fail(OpCode code, std::string detail) { return tl::unexpected(OpError{code, std::move(detail)}); }
tl::unexpected<OpError> io_fail(const std::string& what, const fs::path& path) {
  return op_fail(OpCode::Internal, what + " " + path.string() + ": " + std::strerror(errno));
}

// Owns a descriptor; closing is checked where it matters by close_checked().
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool close_checked() { return ::close(std::exchange(fd_, -1)) == 0; }

 private:
  int fd_;
};

OpResult<void> write_all(int fd, std::string_view bytes, const fs::path& path) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_fail("writing", path);
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

// A new file with `bytes`, mtime set when `mtime` is given; on disk before this returns when `sync`.
OpResult<void> write_new_file(const fs::path& path, std::string_view bytes, std::optional<int64_t> mtime,
                              bool sync = true) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (fd.get() < 0) return io_fail("cannot create", path);
  if (auto w = write_all(fd.get(), bytes, path); !w) return w;
  if (sync && ::fsync(fd.get()) != 0) return io_fail("fsync", path);
  if (mtime) {
    const struct timespec times[2] = {{static_cast<time_t>(*mtime), 0}, {static_cast<time_t>(*mtime), 0}};
    if (::futimens(fd.get(), times) != 0) return io_fail("setting the time of", path);
  }
  if (!fd.close_checked()) return io_fail("closing", path);
  return {};
}

OpResult<void> sync_dir(const fs::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || ::fsync(fd.get()) != 0) return io_fail("fsync", dir);
  return {};
}

OpResult<void> make_dir(const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return io_fail("cannot create", dir);
  return {};
}

// The host part of a Maildir name, with what would break the name escaped as the Maildir
// description says ("/" and ":" as octal), and "," too since Dovecot reads ",S=" fields after it.
std::string maildir_host() {
  const std::string name = common::net::local_host_name();
  std::string out;
  for (const char* p = name.c_str(); *p; ++p) {
    if (*p == '/') out += "\\057";
    else if (*p == ':') out += "\\072";
    else if (*p == ',') out += "\\054";
    else if (static_cast<unsigned char>(*p) > 0x20 && *p != 0x7f) out.push_back(*p);
  }
  return out.empty() ? std::string("localhost") : out;
}

OpResult<void> empty_or_absent_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return {};
  if (!fs::is_directory(dir, ec)) return op_fail(OpCode::AlreadyExists, dir.string() + " exists and is not a directory");
  if (!fs::is_empty(dir, ec)) return op_fail(OpCode::AlreadyExists, dir.string() + " is not empty: export into a new directory");
  return {};
}

}  // namespace

OpResult<ExportSummary> export_maildir(Target& target, std::string_view user, std::string_view mailbox,
                                       const fs::path& dir) {
  if (auto r = empty_or_absent_dir(dir); !r) return tl::unexpected(r.error());
  ExportSummary summary;
  const std::string host = maildir_host();
  std::vector<std::string> letters;  // keyword by letter index
  std::vector<maildir::UidListLine> lines;
  uint32_t uidnext = 1;
  auto begin = [&](const ExportedMailbox& m) -> OpResult<void> {
    summary.mailbox = m.name;
    summary.uidvalidity = m.uidvalidity;
    uidnext = m.uidnext;
    if (auto r = make_dir(dir); !r) return r;
    for (const char* sub : {"cur", "new", "tmp"}) {
      if (auto r = make_dir(dir / sub); !r) return r;
    }
    return {};
  };
  auto message = [&](const ExportedMessage& m) -> OpResult<void> {
    bool passed = false;
    std::string kw;
    for (const auto& k : m.keywords) {
      size_t i = 0;
      while (i < letters.size() && !common::ascii::iequals(letters[i], k)) ++i;
      if (i == letters.size()) {
        if (letters.size() == maildir::kMaxKeywordLetters) {
          summary.problems.push_back("UID " + std::to_string(m.uid) + ": keyword '" + k +
                                     "' left off (a Maildir names at most 26 keywords)");
          continue;
        }
        letters.push_back(k);
      }
      kw.push_back(static_cast<char>('a' + i));
    }
    const uint64_t vsize = maildir::crlf_size(m.bytes);
    const std::string base = std::to_string(std::max<int64_t>(m.internal_date, 0)) + ".M" + std::to_string(m.uid) +
                             "P" + std::to_string(summary.uidvalidity) + "." + host + ",S=" +
                             std::to_string(m.bytes.size()) + ",W=" + std::to_string(vsize);
    const fs::path tmp = dir / "tmp" / base;
    // No fsync per file (that is most of the time of a large export): one syncfs below, before the
    // uidlist that makes the Maildir complete.
    if (auto w = write_new_file(tmp, m.bytes, m.internal_date, false); !w) return w;
    const fs::path final_path = dir / "cur" / maildir::make_file_name(base, m.flags, passed, kw);
    if (::rename(tmp.c_str(), final_path.c_str()) != 0) return io_fail("renaming into", final_path);
    lines.push_back(maildir::UidListLine{m.uid, vsize, base});
    summary.messages += 1;
    summary.bytes += m.bytes.size();
    return {};
  };
  if (auto r = target.export_mailbox(user, mailbox, begin, message); !r) return tl::unexpected(r.error());
  {
    Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() < 0 || ::syncfs(fd.get()) != 0) return io_fail("syncfs", dir);
  }
  if (auto r = sync_dir(dir / "cur"); !r) return tl::unexpected(r.error());
  if (!letters.empty()) {
    if (auto r = write_new_file(dir / "dovecot-keywords", maildir::format_keywords(letters), std::nullopt); !r) {
      return tl::unexpected(r.error());
    }
  }
  if (auto r = write_new_file(dir / "dovecot-uidlist", maildir::format_uidlist(summary.uidvalidity, uidnext, lines),
                              std::nullopt);
      !r) {
    return tl::unexpected(r.error());
  }
  if (auto r = sync_dir(dir); !r) return tl::unexpected(r.error());
  return summary;
}

OpResult<ExportSummary> export_mbox(Target& target, std::string_view user, std::string_view mailbox,
                                    const fs::path& file, bool keep_crlf) {
  ExportSummary summary;
  std::optional<Fd> fd;
  auto begin = [&](const ExportedMailbox& m) -> OpResult<void> {
    summary.mailbox = m.name;
    summary.uidvalidity = m.uidvalidity;
    fd.emplace(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (fd->get() < 0) {
      const int e = errno;
      fd.reset();
      errno = e;
      return e == EEXIST ? op_fail(OpCode::AlreadyExists, file.string() + " exists: export into a new file")
                         : io_fail("cannot create", file);
    }
    return {};
  };
  auto message = [&](const ExportedMessage& m) -> OpResult<void> {
    const std::string text =
        mbox::format_message(m.bytes, mbox::envelope_sender(m.bytes), m.internal_date, keep_crlf);
    if (auto w = write_all(fd->get(), text, file); !w) return w;
    summary.messages += 1;
    summary.bytes += m.bytes.size();
    return {};
  };
  auto r = target.export_mailbox(user, mailbox, begin, message);
  if (r && fd && ::fsync(fd->get()) != 0) r = io_fail("fsync", file);
  if (r && fd && !fd->close_checked()) r = io_fail("closing", file);
  if (!r) {
    // A cut-short mbox looks complete to a reader: none is better.
    if (fd) {
      fd.reset();
      std::error_code ec;
      fs::remove(file, ec);
    }
    return tl::unexpected(r.error());
  }
  return summary;
}

}  // namespace store::tools
