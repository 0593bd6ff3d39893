// queue_main.cpp: postern-queue, the operator's tool over the mta queue's LMDB directory: list,
// show, hold, release, delete, flush. Safe beside a running mta (README "postern-queue").
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/lmdb/lmdb.hpp"
#include "mta/queue/dsn.hpp"
#include "mta/queue/ops.hpp"
#include "mta/queue/schema.hpp"

namespace {

using namespace mta::queue;
using common::Result;
using common::lmdb::Txn;

constexpr const char* kUsage =
    "usage: postern-queue --dir DIR COMMAND\n"
    "  list [--state queued|deferred|delivered|failed|held] [--destination D]\n"
    "  show ID            envelope, recipients with their state and last reply, headers\n"
    "  hold ID|--all      stop delivery attempts\n"
    "  release ID|--all   make held recipients due now\n"
    "  delete ID          remove the message, no DSN\n"
    "  flush [ID]         make queued and deferred recipients due now (all messages without ID)\n";

int usage(const char* why = nullptr) {
  if (why) std::fprintf(stderr, "postern-queue: %s\n", why);
  std::fputs(kUsage, stderr);
  return 2;
}

int fail(const common::Error& e) {
  std::fprintf(stderr, "postern-queue: %s\n", e.detail.c_str());
  return 2;
}

UnixMs now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string when(UnixMs t) { return t == 0 ? "-" : rfc5322_date(t); }

std::string summary(const std::vector<Recipient>& rs) {
  std::map<RcptState, int> by;
  for (const auto& r : rs) by[r.state] += 1;
  std::string out;
  for (const auto& [state, n] : by) {
    if (!out.empty()) out += ", ";
    out += std::to_string(n) + " " + std::string(state_name(state));
  }
  return out;
}

void print_list(const std::vector<MessageInfo>& messages) {
  for (const auto& m : messages) {
    std::printf("%s  %s  %8llu  <%s>  %zu rcpt: %s\n", m.queue_id.c_str(), when(m.envelope.arrival).c_str(),
                static_cast<unsigned long long>(m.envelope.size),
                header_safe(m.envelope.reverse_path, true, 200).c_str(), m.recipients.size(),
                summary(m.recipients).c_str());
  }
  std::printf("%zu message%s\n", messages.size(), messages.size() == 1 ? "" : "s");
}

void print_show(const MessageInfo& m, std::string_view headers, UnixMs now) {
  const Envelope& e = m.envelope;
  std::printf("queue id:  %s\n", m.queue_id.c_str());
  std::printf("arrival:   %s\n", when(e.arrival).c_str());
  std::printf("size:      %llu bytes in %u chunks\n", static_cast<unsigned long long>(e.size), e.chunks);
  std::printf("from:      <%s>\n", header_safe(e.reverse_path, true, 500).c_str());
  static const char* kBody[] = {"-", "7BIT", "8BITMIME", "BINARYMIME"};
  static const char* kRet[] = {"-", "FULL", "HDRS"};
  std::printf("params:    SIZE=%s BODY=%s SMTPUTF8=%s RET=%s ENVID=%s\n",
              e.size_param ? std::to_string(*e.size_param).c_str() : "-", kBody[static_cast<int>(e.body)],
              e.smtputf8 ? "yes" : "no", kRet[static_cast<int>(e.ret)],
              e.envid.empty() ? "-" : header_safe(e.envid, false, 100).c_str());
  std::printf("client:    %s name=%s helo=%s tls=%s auth=%s\n", e.client.address.c_str(),
              e.client.name.empty() ? "-" : header_safe(e.client.name, false, 255).c_str(),
              e.client.helo.empty() ? "-" : header_safe(e.client.helo, false, 255).c_str(),
              e.client.tls.empty() ? "-" : e.client.tls.c_str(),
              e.client.auth_user.empty() ? "-" : header_safe(e.client.auth_user, true, 255).c_str());
  std::printf("recipients:\n");
  for (size_t i = 0; i < m.recipients.size(); ++i) {
    const Recipient& r = m.recipients[i];
    std::printf("  %zu <%s> %s%s destination=%s attempts=%u next=%s\n", i, header_safe(r.address, true, 500).c_str(),
                std::string(state_name(r.state)).c_str(), r.lease_until > now ? " (in delivery)" : "",
                header_safe(r.destination, true, 255).c_str(), r.attempts,
                r.state == RcptState::Queued || r.state == RcptState::Deferred ? when(r.next_attempt).c_str() : "-");
    if (!r.orcpt.empty()) std::printf("      orcpt=%s;%s\n", r.orcpt_type.c_str(), header_safe(r.orcpt, true, 500).c_str());
    if (r.last_code != 0) {
      std::printf("      last reply: %u %s %s%s%s (at %s)\n", r.last_code, r.last_status.c_str(), r.last_reply.c_str(),
                  r.last_remote.empty() ? "" : " from ", r.last_remote.c_str(), when(r.last_attempt).c_str());
    }
  }
  std::printf("headers:\n");
  // The header block only: the body may be large and is the sender's business.
  const auto end = headers.find("\r\n\r\n");
  std::string block(headers.substr(0, end == std::string_view::npos ? headers.size() : end + 2));
  for (char& c : block) {
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\r' && c != '\n' && c != '\t') || c == 0x7f) c = '?';
  }
  std::fwrite(block.data(), 1, block.size(), stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string dir;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--dir" && i + 1 < args.size()) {
      dir = args[++i];
    } else if (args[i].starts_with("--dir=")) {
      dir = args[i].substr(6);
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      rest.push_back(args[i]);
    }
  }
  if (dir.empty()) return usage("--dir is required");
  if (rest.empty()) return usage("no command");
  const std::string command = rest[0];
  rest.erase(rest.begin());

  // Never create a queue by mistake (a typo in --dir): it must exist already.
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::path(dir) / "data.mdb", ec)) {
    std::fprintf(stderr, "postern-queue: no mta queue in %s (no data.mdb)\n", dir.c_str());
    return 2;
  }
  common::lmdb::OpenOptions env_options;
  env_options.map_size = size_t{16} << 30;  // a larger map set by the mta is used as it is
  env_options.max_dbs = Dbs::kCount + 4;
  auto env = common::lmdb::open_env(dir, env_options);
  if (!env) return fail(env.error());
  const bool writes = command == "hold" || command == "release" || command == "delete" || command == "flush";
  // A plain transaction, no writer thread: LMDB serializes it with the mta's writer through the lock
  // file, and the mta reads the schedule afresh at each scan, so nothing needs telling.
  auto txn = Txn::begin(env->get(), writes);
  if (!txn) return fail(txn.error());
  auto dbs = Dbs::open(*txn, false);
  if (!dbs) return fail(dbs.error());
  const UnixMs now = now_ms();

  auto id_or_all = [&](bool all_allowed, std::string& id) -> bool {
    if (rest.size() != 1) return false;
    if (rest[0] == "--all") {
      id.clear();
      return all_allowed;
    }
    id = rest[0];
    return true;
  };
  auto exists = [&](const std::string& id) -> Result<bool> {
    auto info = show(*txn, *dbs, id);
    if (!info) return tl::unexpected(info.error());
    return info->has_value();
  };

  if (command == "list") {
    ListFilter filter;
    for (size_t i = 0; i < rest.size(); ++i) {
      if (rest[i] == "--state" && i + 1 < rest.size()) {
        filter.state = parse_state(rest[++i]);
        if (!filter.state) return usage("unknown state");
      } else if (rest[i] == "--destination" && i + 1 < rest.size()) {
        filter.destination = rest[++i];
      } else {
        return usage("unknown list option");
      }
    }
    auto messages = list(*txn, *dbs, filter);
    if (!messages) return fail(messages.error());
    print_list(*messages);
    return 0;
  }
  if (command == "show") {
    if (rest.size() != 1) return usage("show takes one queue id");
    auto info = show(*txn, *dbs, rest[0]);
    if (!info) return fail(info.error());
    if (!*info) {
      std::fprintf(stderr, "postern-queue: no message %s\n", rest[0].c_str());
      return 1;
    }
    auto bytes = message_bytes(*txn, *dbs, rest[0], 4 * kChunk);
    if (!bytes) return fail(bytes.error());
    print_show(**info, *bytes, now);
    return 0;
  }

  std::string id;
  Result<size_t> changed = size_t{0};
  std::string done;
  if (command == "hold") {
    if (!id_or_all(true, id)) return usage("hold takes a queue id or --all");
    changed = hold(*txn, *dbs, id);
    done = "held";
  } else if (command == "release") {
    if (!id_or_all(true, id)) return usage("release takes a queue id or --all");
    changed = release(*txn, *dbs, id, now);
    done = "released";
  } else if (command == "flush") {
    if (rest.size() > 1) return usage("flush takes at most one queue id");
    if (rest.size() == 1) id = rest[0];
    changed = flush(*txn, *dbs, id, now);
    done = "flushed";
  } else if (command == "delete") {
    if (rest.size() != 1 || rest[0] == "--all") return usage("delete takes one queue id");
    id = rest[0];
    auto removed = remove(*txn, *dbs, id);
    if (!removed) return fail(removed.error());
    if (!*removed) {
      std::fprintf(stderr, "postern-queue: no message %s\n", id.c_str());
      return 1;
    }
    if (auto c = txn->commit(); !c) return fail(c.error());
    std::printf("deleted %s\n", id.c_str());
    return 0;
  } else {
    return usage(("unknown command " + command).c_str());
  }
  if (!id.empty()) {
    auto found = exists(id);
    if (!found) return fail(found.error());
    if (!*found) {
      std::fprintf(stderr, "postern-queue: no message %s\n", id.c_str());
      return 1;
    }
  }
  if (!changed) return fail(changed.error());
  if (auto c = txn->commit(); !c) return fail(c.error());
  std::printf("%s %zu recipient%s%s%s\n", done.c_str(), *changed, *changed == 1 ? "" : "s",
              id.empty() ? "" : " of ", id.c_str());
  return 0;
}
