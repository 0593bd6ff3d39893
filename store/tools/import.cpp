// import.cpp: a Maildir++ tree into a store (import.hpp).
#include "store/tools/import.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "common/ascii.hpp"
#include "store/tools/maildir.hpp"

namespace store::tools {
namespace {

namespace fs = std::filesystem;
using ops::OpCode;

tl::unexpected<OpError> op_fail(OpCode code, std::string detail) { return tl::unexpected(OpError{code, std::move(detail)}); }

// Control files are small; a larger one is not what Dovecot writes.
constexpr size_t kMaxControlFile = size_t{64} << 20;

struct FileData {
  std::string bytes;
  int64_t mtime = 0;
};

// The whole file and its mtime from one descriptor, so both describe the same file.
OpResult<FileData> read_file(const fs::path& path, uint64_t max) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return op_fail(OpCode::InvalidArgument, "cannot open " + path.string() + ": " + std::strerror(errno));
  struct stat st {};
  FileData out;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return op_fail(OpCode::InvalidArgument, path.string() + " is not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > max) {
    ::close(fd);
    return op_fail(OpCode::ResourceExhausted,
                   path.string() + " is larger than " + std::to_string(max) + " bytes (" + std::to_string(st.st_size) + ")");
  }
  out.mtime = static_cast<int64_t>(st.st_mtim.tv_sec);
  out.bytes.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < out.bytes.size()) {
    const ssize_t n = ::read(fd, out.bytes.data() + got, out.bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      return op_fail(OpCode::InvalidArgument, "reading " + path.string() + ": " + std::strerror(e));
    }
    if (n == 0) break;  // it shrank while we read: what is there
    got += static_cast<size_t>(n);
  }
  out.bytes.resize(got);
  ::close(fd);
  return out;
}

OpResult<std::optional<std::string>> read_control(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::optional<std::string>{};
  auto data = read_file(path, kMaxControlFile);
  if (!data) return tl::unexpected(data.error());
  return std::optional<std::string>{std::move(data->bytes)};
}

struct PlannedFile {
  fs::path path;
  maildir::FileName name;
  uint32_t uid = 0;  // the source's (from dovecot-uidlist), or assigned after its next UID
  bool listed = false;
};

struct Folder {
  fs::path path;
  std::string label;    // "." for the root, else the directory name
  std::string mailbox;  // canonical
  uint32_t uidvalidity = 0;
  uint32_t next_uid = 1;
  std::vector<std::string> keywords;  // by letter
  std::vector<PlannedFile> files;     // in UID order
  std::vector<std::string> notes;
};

OpResult<Folder> plan_folder(const fs::path& path, std::string label, std::string mailbox) {
  Folder f;
  f.path = path;
  f.label = std::move(label);
  f.mailbox = std::move(mailbox);
  auto uidlist_text = read_control(path / "dovecot-uidlist");
  if (!uidlist_text) return tl::unexpected(uidlist_text.error());
  std::optional<maildir::UidList> uidlist;
  if (*uidlist_text) {
    auto parsed = maildir::parse_uidlist(**uidlist_text);
    if (!parsed) return op_fail(OpCode::InvalidArgument, (path / "dovecot-uidlist").string() + ": " + parsed.error().detail);
    uidlist = std::move(*parsed);
  }
  auto keywords_text = read_control(path / "dovecot-keywords");
  if (!keywords_text) return tl::unexpected(keywords_text.error());
  f.keywords = maildir::parse_keywords(*keywords_text ? **keywords_text : std::string());

  // cur/ first: a file that is in both (a rename caught half-way) is the one with flags.
  std::map<std::string, PlannedFile> by_base;
  for (const char* sub : {"cur", "new"}) {
    std::error_code ec;
    const fs::path d = path / sub;
    if (!fs::is_directory(d, ec)) continue;
    for (auto it = fs::directory_iterator(d, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.empty() || name[0] == '.') continue;
      std::error_code tec;
      if (!it->is_regular_file(tec)) continue;
      PlannedFile pf;
      pf.path = it->path();
      pf.name = maildir::parse_file_name(name);
      if (by_base.count(pf.name.base)) {
        f.notes.push_back(pf.path.string() + ": the same message as a file in cur/; left out");
        continue;
      }
      by_base.emplace(pf.name.base, std::move(pf));
    }
    if (ec) return op_fail(OpCode::InvalidArgument, "listing " + d.string() + ": " + ec.message());
  }

  uint32_t last = 0;
  if (uidlist) {
    f.uidvalidity = uidlist->uidvalidity;
    for (const auto& e : uidlist->entries) {
      auto it = by_base.find(e.base);
      if (it == by_base.end()) continue;  // expunged since the uidlist was written
      it->second.uid = e.uid;
      it->second.listed = true;
      f.files.push_back(std::move(it->second));
      by_base.erase(it);
      last = e.uid;
    }
  }
  // Files Dovecot has not numbered yet get the next UIDs, in the order it would give them.
  std::vector<PlannedFile> rest;
  for (auto& [base, pf] : by_base) rest.push_back(std::move(pf));
  std::sort(rest.begin(), rest.end(),
            [](const PlannedFile& a, const PlannedFile& b) { return maildir::sorts_before(a.name.base, b.name.base); });
  uint32_t next = std::max<uint32_t>(uidlist ? uidlist->next_uid : 1, last + 1);
  for (auto& pf : rest) {
    if (next == UINT32_MAX) return op_fail(OpCode::InvalidArgument, path.string() + ": more files than UIDs");
    pf.uid = next++;
    f.files.push_back(std::move(pf));
  }
  f.next_uid = next;
  return f;
}

// Keyword names for a file's letters, then $Forwarded for P; each checked as an IMAP atom.
std::vector<std::string> file_keywords(const Folder& f, const maildir::FileName& name, std::set<std::string>& noted,
                                       std::vector<std::string>& problems) {
  std::vector<std::string> names;
  for (char c : name.keyword_letters) {
    const size_t index = static_cast<size_t>(c - 'a');
    // Dovecot names a letter dovecot-keywords lost "unknown-<n>", and shows that to clients.
    names.push_back(f.keywords[index].empty() ? "unknown-" + std::to_string(index) : f.keywords[index]);
  }
  if (name.passed) names.emplace_back(maildir::kForwardedKeyword);
  std::vector<std::string> valid;
  for (auto& n : names) {
    const std::string one[] = {n};
    if (ops::parse_flags(one)) {
      valid.push_back(std::move(n));
    } else if (noted.insert(n).second) {
      problems.push_back(f.path.string() + ": keyword '" + n.substr(0, 80) + "' is not an IMAP keyword; left off");
    }
  }
  auto set = ops::parse_flags(valid);  // distinct, compared without case
  return set ? set->keywords : std::vector<std::string>{};
}

OpResult<void> import_folder(Target& target, std::string_view user, Folder& f, const MaildirImportOptions& options,
                             ImportSummary& summary, const std::function<void(const std::string&)>& report) {
  auto start = target.begin_import(user, f.mailbox, f.uidvalidity);
  if (!start) return tl::unexpected(start.error());
  std::set<std::string> noted;
  std::string unknown_flags;
  uint64_t imported = 0, skipped = 0, left_out = 0;
  std::vector<ImportMessage> batch;
  size_t batch_bytes = 0;
  auto flush = [&]() -> OpResult<void> {
    if (batch.empty()) return {};
    auto done = target.import_batch(user, *start, std::move(batch));
    batch.clear();
    batch_bytes = 0;
    if (!done) return tl::unexpected(done.error());
    imported += done->imported;
    skipped += done->skipped;
    return {};
  };
  for (auto& pf : f.files) {
    // A re-run keeping UIDs: what is below the mailbox's UIDNEXT is there already, unread.
    if (start->keep_uids && pf.uid < start->uidnext) {
      ++skipped;
      continue;
    }
    auto data = read_file(pf.path, options.max_message_size);
    if (!data) {
      summary.problems.push_back(data.error().detail + "; left out");
      ++left_out;
      continue;
    }
    ImportMessage m;
    m.uid = start->keep_uids ? pf.uid : 0;
    m.flags = pf.name.flags;
    m.keywords = file_keywords(f, pf.name, noted, summary.problems);
    m.internal_date = data->mtime;
    m.bytes = options.raw ? std::move(data->bytes) : maildir::imap_line_ends(std::move(data->bytes));
    m.source = pf.path.string();
    for (char c : pf.name.unknown_flags) {
      if (unknown_flags.find(c) == std::string::npos) unknown_flags.push_back(c);
    }
    batch_bytes += m.bytes.size();
    batch.push_back(std::move(m));
    if (batch.size() >= options.batch_messages || batch_bytes >= options.batch_bytes) {
      if (auto r = flush(); !r) return r;
    }
  }
  if (auto r = flush(); !r) return r;
  if (auto r = target.finish_import(user, *start, f.next_uid); !r) return r;
  if (!unknown_flags.empty()) {
    summary.problems.push_back(f.path.string() + ": file-name flags '" + unknown_flags +
                               "' have no IMAP meaning; left off");
  }
  for (auto& n : f.notes) summary.problems.push_back(std::move(n));
  summary.imported += imported;
  summary.skipped += skipped;
  std::string line = f.mailbox + " <- " + f.label + ": " + std::to_string(imported) + " imported";
  if (skipped) line += ", " + std::to_string(skipped) + " already there";
  if (left_out) line += ", " + std::to_string(left_out) + " left out";
  line += start->keep_uids ? ", UIDs kept (UIDVALIDITY " + std::to_string(start->uidvalidity) + ")"
                           : ", new UIDs (UIDVALIDITY " + std::to_string(start->uidvalidity) + ")";
  if (start->created) line += ", mailbox created";
  report(line);
  return {};
}

}  // namespace

OpResult<ImportSummary> import_maildir(Target& target, std::string_view user, const fs::path& dir,
                                       const MaildirImportOptions& options,
                                       const std::function<void(const std::string&)>& report) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return op_fail(OpCode::NotFound, "no directory " + dir.string());
  const std::string root_name = options.mailbox.empty() ? std::string("INBOX") : options.mailbox;
  auto root = ops::validate_mailbox_name(root_name);
  if (!root) return tl::unexpected(root.error());
  const std::string prefix = options.mailbox.empty() ? std::string() : *root;

  // Plan everything before the first write.
  std::vector<Folder> folders;
  std::map<std::string, std::string> seen;  // canonical mailbox -> label
  auto add = [&](const fs::path& path, std::string label, const std::string& name) -> OpResult<void> {
    auto canonical = ops::validate_mailbox_name(name);
    if (!canonical) {
      return op_fail(OpCode::InvalidArgument, "folder " + label + ": " + canonical.error().detail);
    }
    if (auto it = seen.find(*canonical); it != seen.end()) {
      return op_fail(OpCode::InvalidArgument,
                     "folders " + it->second + " and " + label + " are both mailbox " + *canonical);
    }
    seen.emplace(*canonical, label);
    auto f = plan_folder(path, std::move(label), *canonical);
    if (!f) return tl::unexpected(f.error());
    folders.push_back(std::move(*f));
    return {};
  };
  if (fs::is_directory(dir / "cur", ec) || fs::is_directory(dir / "new", ec)) {
    if (auto r = add(dir, ".", *root); !r) return tl::unexpected(r.error());
  }
  if (options.folders) {
    std::vector<fs::path> subdirs;
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
      std::error_code dec;
      if (it->is_directory(dec)) subdirs.push_back(it->path());
    }
    if (ec) return op_fail(OpCode::InvalidArgument, "listing " + dir.string() + ": " + ec.message());
    std::sort(subdirs.begin(), subdirs.end());
    for (const auto& sub : subdirs) {
      const std::string label = sub.filename().string();
      auto name = maildir::folder_mailbox(label, prefix);
      if (!name) return op_fail(OpCode::InvalidArgument, name.error().detail);
      if (!*name) continue;  // cur, new, tmp, or not a Maildir++ folder
      // A superior name with no mail of its own (Dovecot's \Noselect "Work" of "Work/Sub") has no
      // directory; one without cur/ and new/ is not a mailbox either.
      if (!fs::is_directory(sub / "cur", ec) && !fs::is_directory(sub / "new", ec)) continue;
      if (auto r = add(sub, label, **name); !r) return tl::unexpected(r.error());
    }
  }
  if (folders.empty()) return op_fail(OpCode::NotFound, dir.string() + " holds no Maildir (no cur/ or new/)");
  std::vector<std::string> subscriptions;
  auto subs_text = read_control(dir / "subscriptions");
  if (!subs_text) return tl::unexpected(subs_text.error());
  if (*subs_text) {
    auto names = maildir::parse_subscriptions(**subs_text);
    if (!names) return op_fail(OpCode::InvalidArgument, (dir / "subscriptions").string() + ": " + names.error().detail);
    for (const auto& n : *names) {
      const bool inbox = common::ascii::iequals(n, "INBOX");
      const std::string mapped = inbox ? *root : prefix.empty() ? n : prefix + "/" + n;
      auto canonical = ops::validate_mailbox_name(mapped);
      if (!canonical) {
        return op_fail(OpCode::InvalidArgument, "subscription " + n.substr(0, 200) + ": " + canonical.error().detail);
      }
      subscriptions.push_back(*canonical);
    }
  }

  // Superior names before their inferiors, so the report reads in tree order.
  std::sort(folders.begin(), folders.end(), [](const Folder& a, const Folder& b) { return a.mailbox < b.mailbox; });
  ImportSummary summary;
  for (auto& f : folders) {
    if (auto r = import_folder(target, user, f, options, summary, report); !r) {
      OpError e = r.error();
      e.detail = f.mailbox + " <- " + f.label + ": " + e.detail;
      return tl::unexpected(e);
    }
  }
  if (!subscriptions.empty()) {
    if (auto r = target.subscribe(user, subscriptions); !r) return tl::unexpected(r.error());
    report(std::to_string(subscriptions.size()) + " subscriptions");
  }
  return summary;
}

}  // namespace store::tools
