// resolver.cpp: a c-ares channel driven by libuv: one uv_poll per c-ares socket, one timer for
// c-ares timeouts, and one zero timer that delivers results outside c-ares and the callers' stacks.
#include "common/ascii.hpp"
#include "common/dns/resolver.hpp"

#include "common/uv_handle.hpp"

#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <optional>
#include <unordered_map>
#include <utility>

#include "common/log/log.hpp"

namespace common::dns {
namespace {

constexpr auto ascii_lower = common::ascii::lower;

// RFC 1035 3.2.2 and 3.2.4; RFC 3596 for AAAA.
constexpr int kClassIn = 1;
constexpr int kTypeA = 1;
constexpr int kTypePtr = 12;
constexpr int kTypeMx = 15;
constexpr int kTypeTxt = 16;
constexpr int kTypeAaaa = 28;

constexpr int kMaxTries = 10;
constexpr size_t kMaxServers = 16;
constexpr std::chrono::milliseconds kMaxTimeout{60000};

std::string_view type_name(int type) {
  switch (type) {
    case kTypeA: return "A";
    case kTypePtr: return "PTR";
    case kTypeMx: return "MX";
    case kTypeTxt: return "TXT";
    case kTypeAaaa: return "AAAA";
    default: return "?";
  }
}

// NXDOMAIN and NODATA are answers; everything else (timeouts, SERVFAIL, REFUSED, FORMERR, a reply
// that does not parse, cancellation) says nothing about the name.
Status status_from_ares(int status) {
  switch (status) {
    case ARES_SUCCESS: return Status::Ok;
    case ARES_ENODATA:
    case ARES_ENOTFOUND:
    case ARES_EBADNAME:
      return Status::NotFound;
    default:
      return Status::TempFail;
  }
}


// A name from an answer as callers see it: lowercased, no trailing dot. nullopt when it is not a
// name we would query (an attacker's zone can hold anything c-ares lets through).
std::optional<std::string> normalize_answer_name(const char* raw) {
  if (raw == nullptr) return std::nullopt;
  std::string name(raw, strnlen(raw, kMaxNameLength + 2));
  if (!name.empty() && name.back() == '.') name.pop_back();
  if (!valid_query_name(name)) return std::nullopt;
  std::transform(name.begin(), name.end(), name.begin(), ascii_lower);
  return name;
}

template <class T>
using ListCallback = std::function<void(Status, std::vector<T>)>;

// Parses a successful reply; returns Ok with records, NotFound, or TempFail for a bad reply.
template <class T>
using Parser = Status (*)(const unsigned char* abuf, int alen, std::vector<T>& out);

Status parse_a(const unsigned char* abuf, int alen, std::vector<net::IpAddress>& out) {
  std::array<ares_addrttl, kMaxRecords> ttls{};
  int n = static_cast<int>(ttls.size());
  int rc = ares_parse_a_reply(abuf, alen, nullptr, ttls.data(), &n);
  if (rc != ARES_SUCCESS) return status_from_ares(rc);
  for (int i = 0; i < n; ++i) {
    auto ip = net::IpAddress::v4(ntohl(ttls[static_cast<size_t>(i)].ipaddr.s_addr));
    if (std::find(out.begin(), out.end(), ip) == out.end()) out.push_back(ip);
  }
  return out.empty() ? Status::NotFound : Status::Ok;
}

Status parse_aaaa(const unsigned char* abuf, int alen, std::vector<net::IpAddress>& out) {
  std::array<ares_addr6ttl, kMaxRecords> ttls{};
  int n = static_cast<int>(ttls.size());
  int rc = ares_parse_aaaa_reply(abuf, alen, nullptr, ttls.data(), &n);
  if (rc != ARES_SUCCESS) return status_from_ares(rc);
  for (int i = 0; i < n; ++i) {
    std::array<uint8_t, 16> bytes{};
    std::memcpy(bytes.data(), ttls[static_cast<size_t>(i)].ip6addr._S6_un._S6_u8, 16);
    auto ip = net::IpAddress::v6(bytes);
    if (std::find(out.begin(), out.end(), ip) == out.end()) out.push_back(ip);
  }
  return out.empty() ? Status::NotFound : Status::Ok;
}

Status parse_ptr(const unsigned char* abuf, int alen, std::vector<std::string>& out) {
  // The address only fills hostent::h_addr_list, which we do not read.
  static constexpr std::array<uint8_t, 4> kAnyAddr{};
  hostent* host = nullptr;
  int rc = ares_parse_ptr_reply(abuf, alen, kAnyAddr.data(), 4, AF_INET, &host);
  if (rc != ARES_SUCCESS) return status_from_ares(rc);
  std::unique_ptr<hostent, decltype(&ares_free_hostent)> owned(host, &ares_free_hostent);
  auto add = [&](const char* raw) {
    auto name = normalize_answer_name(raw);
    if (name && out.size() < kMaxRecords && std::find(out.begin(), out.end(), *name) == out.end()) {
      out.push_back(std::move(*name));
    }
  };
  add(host->h_name);
  for (char** alias = host->h_aliases; alias != nullptr && *alias != nullptr; ++alias) add(*alias);
  // PTR records that are all unusable are not proof that there are none.
  return out.empty() ? Status::TempFail : Status::Ok;
}

Status parse_mx(const unsigned char* abuf, int alen, std::vector<MxRecord>& out) {
  ares_mx_reply* head = nullptr;
  int rc = ares_parse_mx_reply(abuf, alen, &head);
  if (rc != ARES_SUCCESS) return status_from_ares(rc);
  std::unique_ptr<void, decltype(&ares_free_data)> owned(head, &ares_free_data);
  bool dropped = false;
  for (auto* r = head; r != nullptr && out.size() < kMaxRecords; r = r->next) {
    std::string_view raw = r->host != nullptr ? std::string_view(r->host) : std::string_view();
    if (raw.empty() || raw == ".") {  // RFC 7505 null MX
      out.push_back(MxRecord{r->priority, ""});
      continue;
    }
    auto host = normalize_answer_name(r->host);
    if (!host) {
      dropped = true;
      continue;
    }
    out.push_back(MxRecord{r->priority, std::move(*host)});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const MxRecord& x, const MxRecord& y) { return x.preference < y.preference; });
  if (!out.empty()) return Status::Ok;
  return dropped ? Status::TempFail : Status::NotFound;
}

Status parse_txt(const unsigned char* abuf, int alen, std::vector<std::string>& out) {
  ares_txt_ext* head = nullptr;
  int rc = ares_parse_txt_reply_ext(abuf, alen, &head);
  if (rc != ARES_SUCCESS) return status_from_ares(rc);
  std::unique_ptr<void, decltype(&ares_free_data)> owned(head, &ares_free_data);
  bool first = true;
  for (auto* r = head; r != nullptr; r = r->next) {
    // A record's character-strings (each <= 255 bytes, RFC 1035 3.3.14) are one logical string
    // for SPF (RFC 7208 3.3) and DKIM (RFC 6376 3.6.2.2).
    if (r->record_start || first) {
      if (out.size() >= kMaxRecords) break;
      out.emplace_back();
    }
    first = false;
    if (r->txt != nullptr) out.back().append(reinterpret_cast<const char*>(r->txt), r->length);
  }
  return out.empty() ? Status::NotFound : Status::Ok;
}

}  // namespace

std::string_view status_name(Status status) {
  switch (status) {
    case Status::Ok: return "ok";
    case Status::NotFound: return "not_found";
    case Status::TempFail: return "temp_fail";
  }
  return "?";
}

std::string_view kind_name(ReverseResult::Kind kind) {
  switch (kind) {
    case ReverseResult::Kind::Verified: return "verified";
    case ReverseResult::Kind::Mismatch: return "mismatch";
    case ReverseResult::Kind::NoName: return "no_name";
    case ReverseResult::Kind::TempFail: return "temp_fail";
  }
  return "?";
}

// Names reach us from clients (HELO, MAIL FROM domains) and from answers. c-ares would interpret a
// backslash as an escape (a "\." inside a label), so anything outside plain printable ASCII is
// refused before it becomes a query.
bool valid_query_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > kMaxNameLength) return false;
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (c <= ' ' || c > '~' || c == '\\') return false;
    if (++label > 63) return false;  // RFC 1035 2.3.4
  }
  return label > 0;
}

class Resolver::Impl {
 public:
  explicit Impl(uv_loop_t* loop) : loop_(loop) {}
  ~Impl() { shutdown(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  Result<void> init(const ResolverOptions& options);
  // Cancels everything in flight and runs the callbacks (TempFail); closes every handle.
  void shutdown();

  // Wraps a caller's callback so the lookup counts in pending() until it is delivered.
  template <class... Args>
  std::function<void(Args...)> counted(std::function<void(Args...)> cb) {
    ++pending_;
    return [this, cb = std::move(cb)](Args... args) {
      --pending_;
      cb(std::forward<Args>(args)...);
    };
  }

  void lookup_addresses(std::string_view name, int type, ListCallback<net::IpAddress> cb) {
    query<net::IpAddress>(name, type, type == kTypeA ? &parse_a : &parse_aaaa, std::move(cb));
  }
  void lookup_both(std::string_view name, ListCallback<net::IpAddress> cb);
  void lookup_ptr(const net::IpAddress& address, ListCallback<std::string> cb) {
    query<std::string>(address.reverse_name(), kTypePtr, &parse_ptr, std::move(cb));
  }
  void lookup_mx(std::string_view name, ListCallback<MxRecord> cb) {
    query<MxRecord>(name, kTypeMx, &parse_mx, std::move(cb));
  }
  void lookup_txt(std::string_view name, ListCallback<std::string> cb) {
    query<std::string>(name, kTypeTxt, &parse_txt, std::move(cb));
  }
  void verify_reverse(const net::IpAddress& address, ReverseCallback cb);

  size_t pending() const { return pending_; }

 private:
  struct QueryContext {
    Impl* impl;
    // Called once by c-ares (with ARES_EDESTRUCTION at the latest); returns what to deliver.
    std::function<std::function<void()>(int status, const unsigned char* abuf, int alen)> finish;
  };

  template <class T>
  void query(std::string_view name, int type, Parser<T> parse, ListCallback<T> cb);
  void post(std::function<void()> fn);
  void deliver();
  void rearm_timer();
  void on_sock_state(ares_socket_t fd, bool readable, bool writable);

  static void on_ares_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  static void on_poll(uv_poll_t* handle, int status, int events);

  uv_loop_t* loop_;
  ares_channel channel_ = nullptr;
  UvHandle<uv_timer_t> ares_timer_;  // next c-ares timeout
  UvHandle<uv_timer_t> kick_;        // zero timer: runs deliver() on the next loop iteration
  // Keyed by fd. A closed poll leaves the map at once, so c-ares may reuse the fd number for a new
  // socket while libuv still holds the old handle for its close callback.
  std::unordered_map<ares_socket_t, UvHandle<uv_poll_t>> polls_;
  std::deque<std::function<void()>> ready_;  // results waiting for deliver()
  size_t pending_ = 0;
  bool shutting_down_ = false;
  bool* destroyed_ = nullptr;  // set while deliver() runs callbacks that may destroy us
};

Result<void> Resolver::Impl::init(const ResolverOptions& options) {
  // Once per process; a no-op on Linux but required by the API. Never cleaned up: other resolvers
  // on other threads may live until exit.
  static const int library_rc = ares_library_init(ARES_LIB_INIT_ALL);
  if (library_rc != ARES_SUCCESS) {
    return fail(ErrorKind::Internal, std::string("ares_library_init: ") + ares_strerror(library_rc));
  }

  for (UvHandle<uv_timer_t>* timer : {&ares_timer_, &kick_}) {
    uv_timer_init(loop_, timer->get());
    timer->set_initialized();
    (*timer)->data = this;
  }

  ares_options opts{};
  char lookups[] = "b";  // DNS only: no /etc/hosts, whose answers would bypass the servers
  opts.lookups = lookups;
  opts.timeout = static_cast<int>(options.timeout.count());
  opts.tries = options.tries;
  opts.sock_state_cb = [](void* data, ares_socket_t fd, int readable, int writable) {
    static_cast<Impl*>(data)->on_sock_state(fd, readable != 0, writable != 0);
  };
  opts.sock_state_cb_data = this;
  int mask = ARES_OPT_LOOKUPS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
  int rc = ares_init_options(&channel_, &opts, mask);
  if (rc != ARES_SUCCESS) {
    channel_ = nullptr;
    return fail(ErrorKind::Internal, std::string("ares_init_options: ") + ares_strerror(rc));
  }

  if (!options.servers.empty()) {
    std::vector<ares_addr_port_node> nodes(options.servers.size());
    for (size_t i = 0; i < nodes.size(); ++i) {
      const auto& ep = options.servers[i];
      auto& node = nodes[i];
      node.next = i + 1 < nodes.size() ? &nodes[i + 1] : nullptr;
      node.family = ep.address.is_v4() ? AF_INET : AF_INET6;
      auto bytes = ep.address.bytes();
      std::memcpy(ep.address.is_v4() ? static_cast<void*>(&node.addr.addr4) : static_cast<void*>(&node.addr.addr6),
                  bytes.data(), bytes.size());
      node.udp_port = ep.port;  // 0: c-ares uses 53
      node.tcp_port = ep.port;
    }
    rc = ares_set_servers_ports(channel_, nodes.data());
    if (rc != ARES_SUCCESS) {
      return fail(ErrorKind::Internal, std::string("ares_set_servers_ports: ") + ares_strerror(rc));
    }
  }
  return {};
}

void Resolver::Impl::shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  if (destroyed_ != nullptr) *destroyed_ = true;
  if (channel_ != nullptr) {
    // Every query in flight finishes now with ARES_EDESTRUCTION (posted as TempFail), and c-ares
    // reports each socket closed (on_sock_state closes its poll).
    ares_channel channel = std::exchange(channel_, nullptr);
    ares_destroy(channel);
  }
  // Callbacks may start lookups; those fail at once and are posted here too.
  while (!ready_.empty()) {
    auto fn = std::move(ready_.front());
    ready_.pop_front();
    fn();
  }
  polls_.clear();  // closes any poll c-ares did not report closed
  ares_timer_.close();
  kick_.close();
}

void Resolver::Impl::post(std::function<void()> fn) {
  ready_.push_back(std::move(fn));
  if (!shutting_down_ && !uv_is_active(reinterpret_cast<uv_handle_t*>(kick_.get()))) {
    uv_timer_start(
        kick_.get(),
        [](uv_timer_t* t) {
          if (auto* self = static_cast<Impl*>(t->data)) self->deliver();
        },
        0, 0);
  }
}

// The only place (besides shutdown) that runs callers' callbacks: outside c-ares, outside the call
// that started the lookup. Runs what was ready on entry; results posted meanwhile wait for the
// next iteration, so a callback that always starts another lookup cannot starve the loop.
void Resolver::Impl::deliver() {
  bool destroyed = false;
  destroyed_ = &destroyed;
  for (size_t n = ready_.size(); n > 0 && !ready_.empty(); --n) {
    auto fn = std::move(ready_.front());
    ready_.pop_front();
    fn();
    if (destroyed) return;  // a callback destroyed the Resolver; shutdown() delivered the rest
  }
  destroyed_ = nullptr;
}

template <class T>
void Resolver::Impl::query(std::string_view name, int type, Parser<T> parse, ListCallback<T> cb) {
  if (shutting_down_) {
    post([cb = std::move(cb)] { cb(Status::TempFail, {}); });
    return;
  }
  if (!valid_query_name(name)) {
    log::debug("dns").event("bad_name").kv("type", type_name(type)).client_text("name", name);
    post([cb = std::move(cb)] { cb(Status::NotFound, {}); });
    return;
  }
  auto* ctx = new QueryContext{this, nullptr};
  ctx->finish = [parse, type, name = std::string(name), cb = std::move(cb)](
                    int status, const unsigned char* abuf, int alen) mutable -> std::function<void()> {
    std::vector<T> records;
    Status result = status == ARES_SUCCESS ? parse(abuf, alen, records) : status_from_ares(status);
    if (result != Status::Ok) records.clear();
    if (result == Status::TempFail) {
      log::debug("dns").event("lookup_failed").kv("type", type_name(type)).client_text("name", name)
          .kv("error", status == ARES_SUCCESS ? "bad reply" : ares_strerror(status));
    }
    return [cb = std::move(cb), result, records = std::move(records)]() mutable {
      cb(result, std::move(records));
    };
  };
  std::string zname(name);  // c-ares wants a C string
  // c-ares may call on_ares_answer before returning (a bad name, no servers); post() defers it.
  ares_query(channel_, zname.c_str(), kClassIn, type, &Impl::on_ares_answer, ctx);
  rearm_timer();
}

void Resolver::Impl::on_ares_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  std::unique_ptr<QueryContext> ctx(static_cast<QueryContext*>(arg));
  if (abuf == nullptr) alen = 0;
  ctx->impl->post(ctx->finish(status, abuf, alen));
}

// A and AAAA in parallel: Ok when either has addresses (a v6 outage must not hide v4 addresses),
// else TempFail if either failed, else NotFound.
void Resolver::Impl::lookup_both(std::string_view name, ListCallback<net::IpAddress> cb) {
  struct State {
    ListCallback<net::IpAddress> cb;
    std::vector<net::IpAddress> addresses;
    int remaining = 2;
    bool ok = false;
    bool temp_fail = false;
  };
  auto state = std::make_shared<State>();
  state->cb = std::move(cb);
  auto on_one = [state](Status status, std::vector<net::IpAddress> addresses) {
    if (status == Status::Ok) state->ok = true;
    if (status == Status::TempFail) state->temp_fail = true;
    for (auto& ip : addresses) {
      if (state->addresses.size() < kMaxRecords) state->addresses.push_back(ip);
    }
    if (--state->remaining > 0) return;
    Status result = state->ok ? Status::Ok : state->temp_fail ? Status::TempFail : Status::NotFound;
    auto done = std::move(state->cb);
    done(result, std::move(state->addresses));  // may destroy the Resolver: nothing after this
  };
  lookup_addresses(name, kTypeA, on_one);
  lookup_addresses(name, kTypeAaaa, on_one);
}

void Resolver::Impl::verify_reverse(const net::IpAddress& address, ReverseCallback cb) {
  lookup_ptr(address, [this, address, cb = std::move(cb)](Status status, std::vector<std::string> names) mutable {
    if (status == Status::TempFail) return cb(ReverseResult{ReverseResult::Kind::TempFail, ""});
    if (status == Status::NotFound || names.empty()) return cb(ReverseResult{ReverseResult::Kind::NoName, ""});
    // Each name costs a query; an attacker's reverse zone can list many.
    if (names.size() > kMaxVerifiedPtrNames) names.resize(kMaxVerifiedPtrNames);

    struct State {
      net::IpAddress address;
      std::vector<std::string> names;
      ReverseCallback cb;
      size_t remaining = 0;
      bool temp_fail = false;
      bool finished = false;
    };
    auto state = std::make_shared<State>();
    state->address = address;
    state->names = std::move(names);
    state->cb = std::move(cb);
    state->remaining = state->names.size();
    int type = address.is_v4() ? kTypeA : kTypeAaaa;
    for (size_t i = 0; i < state->names.size(); ++i) {
      lookup_addresses(state->names[i], type, [state, i](Status st, std::vector<net::IpAddress> found) {
        if (state->finished) return;
        bool match = st == Status::Ok && std::find(found.begin(), found.end(), state->address) != found.end();
        if (st == Status::TempFail) state->temp_fail = true;
        if (!match && --state->remaining > 0) return;
        state->finished = true;
        ReverseResult result;
        if (match) {
          result = ReverseResult{ReverseResult::Kind::Verified, state->names[i]};
        } else {
          // A failed forward lookup could have been the confirming one: never claim a spoof then.
          result = ReverseResult{state->temp_fail ? ReverseResult::Kind::TempFail : ReverseResult::Kind::Mismatch,
                                 state->names.front()};
        }
        auto done = std::move(state->cb);
        done(std::move(result));  // may destroy the Resolver: nothing after this
      });
    }
  });
}

void Resolver::Impl::rearm_timer() {
  if (channel_ == nullptr) return;
  timeval tv{};
  timeval* next = ares_timeout(channel_, nullptr, &tv);
  if (next == nullptr) {
    uv_timer_stop(ares_timer_.get());
    return;
  }
  // Round up: firing early would find nothing expired and spin.
  uint64_t ms = static_cast<uint64_t>(next->tv_sec) * 1000 + static_cast<uint64_t>(next->tv_usec + 999) / 1000;
  uv_timer_start(
      ares_timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Impl*>(t->data);
        if (self == nullptr || self->channel_ == nullptr) return;
        ares_process_fd(self->channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // expire timeouts
        self->rearm_timer();
      },
      ms, 0);
}

void Resolver::Impl::on_sock_state(ares_socket_t fd, bool readable, bool writable) {
  auto it = polls_.find(fd);
  if (!readable && !writable) {
    // c-ares is about to close fd: stop polling while the descriptor is still valid.
    if (it != polls_.end()) polls_.erase(it);
    return;
  }
  if (it == polls_.end()) {
    if (shutting_down_) return;
    UvHandle<uv_poll_t> poll;
    int rc = uv_poll_init_socket(loop_, poll.get(), fd);
    if (rc != 0) {
      // Nothing will wake c-ares for this socket; its queries end at their timeout (TempFail).
      log::error("dns").event("poll_init_failed").kv("fd", fd).kv("error", uv_strerror(rc));
      return;
    }
    poll.set_initialized();
    poll->data = this;
    it = polls_.emplace(fd, std::move(poll)).first;
  }
  int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
  int rc = uv_poll_start(it->second.get(), events, &Impl::on_poll);
  if (rc != 0) log::error("dns").event("poll_start_failed").kv("fd", fd).kv("error", uv_strerror(rc));
}

void Resolver::Impl::on_poll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<Impl*>(handle->data);
  if (self == nullptr || self->channel_ == nullptr) return;
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(handle), &fd) != 0) return;
  ares_socket_t read_fd = ARES_SOCKET_BAD;
  ares_socket_t write_fd = ARES_SOCKET_BAD;
  if (status < 0) {
    // Let c-ares read and write so it sees the socket error and closes the connection.
    read_fd = write_fd = fd;
  } else {
    if (events & (UV_READABLE | UV_DISCONNECT)) read_fd = fd;
    if (events & UV_WRITABLE) write_fd = fd;
  }
  // May close this very handle (on_sock_state); only self is used afterwards.
  ares_process_fd(self->channel_, read_fd, write_fd);
  self->rearm_timer();
}

Resolver::Resolver(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Resolver::~Resolver() {
  // Callbacks run by shutdown() may still call into this Resolver (their lookups fail at once).
  impl_->shutdown();
}

Result<std::unique_ptr<Resolver>> Resolver::create(uv_loop_t* loop, ResolverOptions options) {
  if (loop == nullptr) return fail(ErrorKind::Internal, "dns: no loop");
  if (options.timeout.count() <= 0 || options.timeout > kMaxTimeout) {
    return fail(ErrorKind::Config, "dns: timeout must be between 1 ms and 60 s");
  }
  if (options.tries < 1 || options.tries > kMaxTries) {
    return fail(ErrorKind::Config, "dns: tries must be between 1 and 10");
  }
  if (options.servers.size() > kMaxServers) return fail(ErrorKind::Config, "dns: more than 16 servers");
  for (const auto& server : options.servers) {
    if (server.address.is_unspecified()) {
      return fail(ErrorKind::Config, "dns: server address " + server.to_string() + " is unspecified");
    }
  }
  auto impl = std::make_unique<Impl>(loop);
  if (auto ok = impl->init(options); !ok) return tl::unexpected(ok.error());
  log::debug("dns").event("resolver_started").kv("servers", static_cast<uint64_t>(options.servers.size()));
  return std::unique_ptr<Resolver>(new Resolver(std::move(impl)));
}

void Resolver::a(std::string_view name, AddressCallback cb) {
  impl_->lookup_addresses(name, kTypeA, impl_->counted(std::move(cb)));
}

void Resolver::aaaa(std::string_view name, AddressCallback cb) {
  impl_->lookup_addresses(name, kTypeAaaa, impl_->counted(std::move(cb)));
}

void Resolver::addresses(std::string_view name, AddressCallback cb) {
  impl_->lookup_both(name, impl_->counted(std::move(cb)));
}

void Resolver::ptr(const net::IpAddress& address, NamesCallback cb) {
  impl_->lookup_ptr(address, impl_->counted(std::move(cb)));
}

void Resolver::mx(std::string_view domain, MxCallback cb) {
  impl_->lookup_mx(domain, impl_->counted(std::move(cb)));
}

void Resolver::txt(std::string_view name, TxtCallback cb) {
  impl_->lookup_txt(name, impl_->counted(std::move(cb)));
}

void Resolver::verify_reverse(const net::IpAddress& address, ReverseCallback cb) {
  impl_->verify_reverse(address, impl_->counted(std::move(cb)));
}

size_t Resolver::pending() const { return impl_->pending(); }

}  // namespace common::dns
