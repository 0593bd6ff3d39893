// storectl.cpp: postern-storectl's command parser and runner (storectl.hpp).
#include "store/tools/storectl.hpp"

#include <charconv>
#include <cstdio>
#include <memory>
#include <vector>

#include "common/ascii.hpp"
#include "common/config/config.hpp"
#include "common/tls/nss.hpp"
#include "store/tools/export.hpp"
#include "store/tools/online.hpp"

namespace store::tools {
namespace {

using common::ErrorKind;
using common::fail;
using common::Result;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr size_t kMaxUserName = 320;  // an address: 64 for the local part, 255 for the domain, '@'

constexpr std::string_view kUsage =
    "commands:\n"
    "  user create USER              a user with INBOX, Drafts, Sent, Trash, Junk and Archive\n"
    "  user rename FROM TO           the same mailboxes under a new name\n"
    "  user delete USER              every mailbox and message of USER, then the user\n"
    "  usage [USER]                  bytes, messages and quotas per user, and per mailbox\n"
    "  verify [--repair]             check (and fix) body references and counters\n"
    "  export USER MAILBOX (--maildir DIR | --mbox FILE [--crlf])\n"
    "                                a Maildir with flags, keywords, dates and UIDs as Dovecot keeps\n"
    "                                them, or an mboxrd file (no flags)\n"
    "  import USER --maildir DIR [--mailbox NAME] [--no-folders] [--raw] [--batch N]\n"
    "                                a Maildir++ tree (INBOX and its .Folder.Sub folders): flags from\n"
    "                                the file names, dates from their mtimes, UIDs and UIDVALIDITY from\n"
    "                                dovecot-uidlist; --mailbox puts the root there and its folders\n"
    "                                under it; --raw keeps LF-only files as they are (else CRLF)\n"
    "USER is the canonical name authserv gives (uid@domain).\n";

Result<std::string> user_name(std::string_view s) {
  auto bad = [&](const std::string& why) {
    return fail(ErrorKind::Config, "bad user name '" + std::string(s.substr(0, 80)) + "': " + why);
  };
  if (s.empty() || s.size() > kMaxUserName) return bad("empty or too long");
  for (char c : s) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return bad("blanks or control characters");
  }
  const size_t at = s.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == s.size()) return bad("not uid@domain");
  return common::ascii::lowered(s);
}

Result<size_t> count_arg(std::string_view s, std::string_view what) {
  size_t n = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc{} || end != s.data() + s.size() || n == 0) {
    return fail(ErrorKind::Config, std::string(what) + " needs a positive number");
  }
  return n;
}

std::string percent(uint64_t used, uint64_t limit) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * static_cast<double>(used) / static_cast<double>(limit));
  return buf;
}

std::string quota_text(uint64_t used, uint64_t limit, std::string_view unit) {
  if (limit == 0) return "no " + std::string(unit) + " quota";
  return std::string(unit) + " quota " + std::to_string(limit) + " (" + percent(used, limit) + " used)";
}

void usage_lines(const UserUsage& u, const std::function<void(const std::string&)>& out) {
  out(u.user + ": " + std::to_string(u.record.messages) + " messages, " + std::to_string(u.record.bytes_used) +
      " bytes; " + quota_text(u.record.bytes_used, u.record.quota_bytes, "bytes") + ", " +
      quota_text(u.record.messages, u.record.quota_messages, "messages"));
  for (const auto& m : u.mailboxes) {
    const auto& r = m.record;
    out("  " + m.name + ": " + std::to_string(r.messages) + " messages, " + std::to_string(r.unseen) + " unseen, " +
        std::to_string(r.bytes) + " bytes, UIDVALIDITY " + std::to_string(r.uidvalidity) + ", UIDNEXT " +
        std::to_string(r.uidnext) + ", HIGHESTMODSEQ " + std::to_string(r.highestmodseq) +
        (m.subscribed ? ", subscribed" : ""));
  }
}

OpResult<int> run(Target& t, const cmd::UserCreate& c, const std::function<void(const std::string&)>& out) {
  auto made = t.create_user(c.user);
  if (!made) return tl::unexpected(made.error());
  out("created user " + c.user + " (INBOX, Drafts, Sent, Trash, Junk, Archive)");
  return 0;
}

OpResult<int> run(Target& t, const cmd::UserRename& c, const std::function<void(const std::string&)>& out) {
  if (auto r = t.rename_user(c.from, c.to); !r) return tl::unexpected(r.error());
  out("renamed user " + c.from + " to " + c.to);
  return 0;
}

OpResult<int> run(Target& t, const cmd::UserDelete& c, const std::function<void(const std::string&)>& out) {
  auto gone = t.delete_user(c.user);
  if (!gone) return tl::unexpected(gone.error());
  uint64_t messages = 0;
  for (const auto& m : gone->mailboxes) messages += m.expunged;
  out("deleted user " + c.user + ": " + std::to_string(gone->mailboxes.size()) + " mailboxes, " +
      std::to_string(messages) + " messages, " + std::to_string(gone->subscriptions) + " subscriptions");
  return 0;
}

OpResult<int> run(Target& t, const cmd::Usage& c, const std::function<void(const std::string&)>& out) {
  auto users = t.usage(c.user ? std::optional<std::string_view>(*c.user) : std::nullopt);
  if (!users) return tl::unexpected(users.error());
  for (const auto& u : *users) usage_lines(u, out);
  if (!c.user) out(std::to_string(users->size()) + " users");
  return 0;
}

OpResult<int> run(Target& t, const cmd::Verify& c, const std::function<void(const std::string&)>& out) {
  auto report = t.verify(c.repair);
  if (!report) return tl::unexpected(report.error());
  const auto& r = *report;
  out("checked " + std::to_string(r.users) + " users, " + std::to_string(r.mailboxes) + " mailboxes, " +
      std::to_string(r.messages) + " messages, " + std::to_string(r.bodies) + " bodies, " + std::to_string(r.chunks) +
      " chunks");
  for (const auto& d : r.details) out("  " + d);
  if (r.details.size() < r.problems) out("  ... and " + std::to_string(r.problems - r.details.size()) + " more");
  std::string line = std::to_string(r.problems) + " problems";
  if (c.repair) line += ", " + std::to_string(r.repaired) + " repaired, " + std::to_string(r.unrepairable) +
                        " left for the operator";
  out(line);
  const uint64_t left = c.repair ? r.problems - std::min(r.problems, r.repaired) : r.problems;
  return left == 0 ? 0 : kExitFailure;
}

OpResult<int> run(Target& t, const cmd::Export& c, const std::function<void(const std::string&)>& out) {
  const bool maildir = !c.maildir_dir.empty();
  auto done = maildir ? export_maildir(t, c.user, c.mailbox, c.maildir_dir)
                      : export_mbox(t, c.user, c.mailbox, c.mbox_file, c.keep_crlf);
  if (!done) return tl::unexpected(done.error());
  for (const auto& p : done->problems) out("problem: " + p);
  out("exported " + done->mailbox + " (UIDVALIDITY " + std::to_string(done->uidvalidity) + "): " +
      std::to_string(done->messages) + " messages, " + std::to_string(done->bytes) + " bytes to " +
      (maildir ? "Maildir " + c.maildir_dir : "mbox " + c.mbox_file));
  return done->problems.empty() ? 0 : kExitFailure;
}

OpResult<int> run(Target& t, const cmd::Import& c, const std::function<void(const std::string&)>& out) {
  auto done = import_maildir(t, c.user, c.maildir_dir, c.options, out);
  if (!done) return tl::unexpected(done.error());
  for (const auto& p : done->problems) out("problem: " + p);
  out("imported " + std::to_string(done->imported) + " messages" +
      (done->skipped ? " (" + std::to_string(done->skipped) + " were already there)" : std::string()) + " for " +
      c.user);
  return done->problems.empty() ? 0 : kExitFailure;
}

}  // namespace

std::string_view usage_text() { return kUsage; }

bool writes(const Command& command) {
  if (std::holds_alternative<cmd::Usage>(command) || std::holds_alternative<cmd::Export>(command)) return false;
  if (const auto* v = std::get_if<cmd::Verify>(&command)) return v->repair;
  return true;
}

Result<Command> parse_command(std::span<const std::string_view> args) {
  auto usage = [](std::string why) { return fail(ErrorKind::Config, std::move(why)); };
  auto word = [&](size_t i) { return i < args.size() ? args[i] : std::string_view{}; };
  const std::string_view noun = word(0), verb = word(1);
  auto exactly = [&](size_t n, std::string_view what) -> Result<void> {
    if (args.size() != n) return usage("wrong number of arguments for '" + std::string(what) + "'");
    return {};
  };
  if (noun == "user") {
    if (verb == "create" || verb == "delete") {
      if (auto ok = exactly(3, "user " + std::string(verb)); !ok) return tl::unexpected(ok.error());
      auto u = user_name(word(2));
      if (!u) return tl::unexpected(u.error());
      if (verb == "create") return cmd::UserCreate{*u};
      return cmd::UserDelete{*u};
    }
    if (verb == "rename") {
      if (auto ok = exactly(4, "user rename"); !ok) return tl::unexpected(ok.error());
      auto from = user_name(word(2));
      if (!from) return tl::unexpected(from.error());
      auto to = user_name(word(3));
      if (!to) return tl::unexpected(to.error());
      return cmd::UserRename{*from, *to};
    }
    return usage("'user' takes create, rename or delete");
  }
  if (noun == "usage") {
    if (args.size() > 2) return usage("'usage' takes at most one user");
    if (args.size() == 1) return cmd::Usage{};
    auto u = user_name(word(1));
    if (!u) return tl::unexpected(u.error());
    return cmd::Usage{*u};
  }
  if (noun == "verify") {
    if (args.size() == 1) return cmd::Verify{false};
    if (args.size() == 2 && verb == "--repair") return cmd::Verify{true};
    return usage("'verify' takes only --repair");
  }
  if (noun == "export") {
    if (args.size() < 3) return usage("'export' needs USER MAILBOX and --maildir DIR or --mbox FILE");
    auto u = user_name(word(1));
    if (!u) return tl::unexpected(u.error());
    cmd::Export c{*u, std::string(word(2)), {}, {}, false};
    for (size_t i = 3; i < args.size(); ++i) {
      const std::string_view a = args[i];
      if (a == "--crlf") {
        c.keep_crlf = true;
      } else if ((a == "--maildir" || a == "--mbox") && i + 1 < args.size() && !args[i + 1].empty()) {
        (a == "--maildir" ? c.maildir_dir : c.mbox_file) = std::string(args[++i]);
      } else {
        return usage("export: unexpected '" + std::string(a.substr(0, 64)) + "'");
      }
    }
    if (c.maildir_dir.empty() == c.mbox_file.empty()) return usage("export needs one of --maildir DIR or --mbox FILE");
    if (c.keep_crlf && c.mbox_file.empty()) return usage("--crlf is for --mbox");
    return c;
  }
  if (noun == "import") {
    if (args.size() < 2) return usage("'import' needs USER --maildir DIR");
    auto u = user_name(word(1));
    if (!u) return tl::unexpected(u.error());
    cmd::Import c{*u, {}, {}};
    for (size_t i = 2; i < args.size(); ++i) {
      const std::string_view a = args[i];
      const bool has_value = i + 1 < args.size() && !args[i + 1].empty();
      if (a == "--maildir" && has_value) {
        c.maildir_dir = std::string(args[++i]);
      } else if (a == "--mailbox" && has_value) {
        c.options.mailbox = std::string(args[++i]);
      } else if (a == "--batch" && has_value) {
        auto n = count_arg(args[++i], "--batch");
        if (!n) return tl::unexpected(n.error());
        c.options.batch_messages = *n;
      } else if (a == "--raw") {
        c.options.raw = true;
      } else if (a == "--no-folders") {
        c.options.folders = false;
      } else {
        return usage("import: unexpected '" + std::string(a.substr(0, 64)) + "'");
      }
    }
    if (c.maildir_dir.empty()) return usage("import needs --maildir DIR");
    return c;
  }
  if (noun.empty()) return usage("no command");
  return usage("unknown command '" + std::string(noun.substr(0, 64)) + "'");
}

OpResult<int> run_command(Target& target, const Command& command,
                          const std::function<void(const std::string&)>& out) {
  return std::visit([&](const auto& c) { return run(target, c, out); }, command);
}

int storectl_main(int argc, char** argv) {
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  auto usage_error = [](const std::string& why) {
    std::fprintf(stderr, "postern-storectl: %s\nrun 'postern-storectl --help' for the commands\n", why.c_str());
    return kExitUsage;
  };
  OfflineOptions options;
  std::string online, nss_dir;
  bool plaintext = false;
  size_t i = 0;
  for (; i < args.size() && args[i].starts_with("-"); ++i) {
    const std::string_view a = args[i];
    if (a == "-h" || a == "--help") {
      std::printf("usage: postern-storectl --dir STORE_DIR [--map-size SIZE] COMMAND ...\n"
                  "  offline, on a stopped store's environment ([store] dir); reads (usage, verify,\n"
                  "  export) may run beside a running store, writes are refused while it runs.\n"
                  "  --map-size: at least the store's [store] map_size (default 64G)\n"
                  "       postern-storectl --online HOST:PORT (--nss DIR | --plaintext yes) COMMAND ...\n"
                  "  online, through a running store's admin service on its gRPC port ([grpc] listen):\n"
                  "  --nss is this host's NSS database (password file DIR/password), whose certificate's\n"
                  "  CN the store lists in [mailstore] admin_clients; writes run on the store's writer\n"
                  "  and reach its IMAP sessions; an import keeping UIDs holds the mailbox's new mail\n"
                  "  back (deliveries get a temporary failure) until it is done.\n%.*s",
                  static_cast<int>(kUsage.size()), kUsage.data());
      return 0;
    }
    if (i + 1 >= args.size()) return usage_error(std::string(a) + " needs a value");
    const std::string_view v = args[++i];
    if (a == "--dir") {
      options.dir = std::string(v);
    } else if (a == "--online") {
      online = std::string(v);
    } else if (a == "--nss") {
      nss_dir = std::string(v);
    } else if (a == "--plaintext" && v == "yes") {
      plaintext = true;
    } else if (a == "--map-size") {
      auto size = common::config::parse_size(v);
      if (!size || *size < (uint64_t{1} << 20)) return usage_error("bad --map-size " + std::string(v.substr(0, 64)));
      options.map_size = *size;
    } else {
      return usage_error("unknown option " + std::string(a.substr(0, 64)));
    }
  }
  if (options.dir.empty() == online.empty()) {
    return usage_error("give --dir STORE_DIR (the store's [store] dir) or --online HOST:PORT");
  }
  if (!online.empty() && nss_dir.empty() && !plaintext) return usage_error("--online needs --nss DIR");
  auto command = parse_command(std::span<const std::string_view>(args.data() + i, args.size() - i));
  if (!command) return usage_error(command.error().detail);
  std::unique_ptr<common::tls::Nss> nss;  // before the target, which holds certificates from it
  std::unique_ptr<Target> target;
  if (online.empty()) {
    options.read_only = !writes(*command);
    auto opened = OfflineTarget::open(options);
    if (!opened) {
      std::fprintf(stderr, "postern-storectl: %s\n", opened.error().detail.c_str());
      return kExitFailure;
    }
    target = std::move(*opened);
  } else {
    if (!plaintext) {
      auto opened = common::tls::Nss::init({.db_dir = nss_dir, .password_file = nss_dir + "/password"});
      if (!opened) {
        std::fprintf(stderr, "postern-storectl: %s\n", opened.error().detail.c_str());
        return kExitFailure;
      }
      nss = std::move(*opened);
    }
    OnlineOptions o;
    o.target = online;
    o.mtls.plaintext = plaintext;
    auto opened = OnlineTarget::open(o);
    if (!opened) {
      std::fprintf(stderr, "postern-storectl: %s\n", opened.error().detail.c_str());
      return kExitFailure;
    }
    target = std::move(*opened);
  }
  auto status = run_command(*target, *command, [](const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  });
  if (!status) {
    std::fprintf(stderr, "postern-storectl: error (%s): %s\n", ops::op_code_name(status.error().code),
                 status.error().detail.c_str());
    return kExitFailure;
  }
  return std::fflush(stdout) == 0 ? *status : kExitFailure;
}

}  // namespace store::tools
