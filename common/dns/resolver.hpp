// resolver.hpp: asynchronous DNS (A/AAAA, PTR, MX, TXT, forward-confirmed reverse DNS) with c-ares
// on a libuv loop, for access filters, RBL checks and outbound delivery. Never blocks the loop.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <uv.h>

#include "common/net/address.hpp"
#include "common/result.hpp"

namespace common::dns {

struct ResolverOptions {
  std::vector<net::Endpoint> servers;  // empty: the nameservers of /etc/resolv.conf; port 0 means 53
  std::chrono::milliseconds timeout{2000};  // per try and server (c-ares doubles it on each round)
  int tries = 2;
};

// NotFound is an answer (NXDOMAIN, or the name exists without records of that type): callers may
// act on it for good. TempFail is the absence of an answer (timeout, SERVFAIL, REFUSED, a malformed
// reply, the resolver shutting down): callers must retry later or treat the fact as unknown.
enum class Status { Ok, NotFound, TempFail };
std::string_view status_name(Status status);

struct MxRecord {
  uint16_t preference = 0;
  std::string host;  // lowercased, no trailing dot; "" is RFC 7505 null MX ("0 .": no mail)
  friend bool operator==(const MxRecord&, const MxRecord&) = default;
};

// Forward-confirmed reverse DNS (FCrDNS) of a client address, for KNOWN/UNKNOWN/DNSSPOOFER.
struct ReverseResult {
  enum class Kind {
    Verified,  // a PTR name's A (IPv4) or AAAA (IPv6) records contain the address; name = that name
    Mismatch,  // PTR names exist and every one resolved, but none back to the address; name = first
    NoName,    // no PTR record (NXDOMAIN or no data); name empty
    TempFail,  // timeout/SERVFAIL on the PTR or on a forward lookup that could have confirmed it
  };
  Kind kind = Kind::TempFail;
  std::string name;  // lowercased, no trailing dot
};
std::string_view kind_name(ReverseResult::Kind kind);

// Bounds on what an answer (possibly from an attacker's zone) can make us hold or do.
inline constexpr size_t kMaxNameLength = 253;       // RFC 1035 2.3.4, without the trailing dot
inline constexpr size_t kMaxRecords = 64;           // records kept per answer; the rest are dropped
inline constexpr size_t kMaxVerifiedPtrNames = 4;   // PTR names checked by verify_reverse

// One resolver per loop thread (a c-ares 1.18 channel is not thread-safe). All methods, and the
// destructor, must be called on the loop's thread.
//
// Every lookup calls its callback exactly once, on the loop thread, and never from inside the call
// that started it (results, even immediate failures, are delivered from the loop). Callbacks may
// start new lookups and may destroy the Resolver. Destroying the Resolver cancels what is in flight:
// those callbacks run inside the destructor, with TempFail (ReverseResult::Kind::TempFail) or with
// the answer if it had already arrived, and lookups started from them fail at once with TempFail.
// Callers whose owner may die first capture a weak_ptr (or equivalent) and check it in the callback.
class Resolver {
 public:
  using AddressCallback = std::function<void(Status, std::vector<net::IpAddress>)>;
  using NamesCallback = std::function<void(Status, std::vector<std::string>)>;
  using MxCallback = std::function<void(Status, std::vector<MxRecord>)>;
  using TxtCallback = std::function<void(Status, std::vector<std::string>)>;
  using ReverseCallback = std::function<void(ReverseResult)>;

  // Config errors for bad options; Internal when c-ares cannot start. loop must outlive the Resolver.
  static Result<std::unique_ptr<Resolver>> create(uv_loop_t* loop, ResolverOptions options);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Names are absolute (no search list). A name that cannot exist (empty, longer than 253, an
  // empty or over-long label, bytes outside printable ASCII, a backslash) gives NotFound.
  void a(std::string_view name, AddressCallback cb);          // A records
  void aaaa(std::string_view name, AddressCallback cb);       // AAAA records
  void addresses(std::string_view name, AddressCallback cb);  // A and AAAA, follows CNAMEs
  // PTR names of an address: lowercased, without trailing dot, duplicates removed.
  void ptr(const net::IpAddress& address, NamesCallback cb);
  // MX records sorted by preference; equal preferences keep the server's order.
  void mx(std::string_view domain, MxCallback cb);
  // One string per TXT record, its character-strings joined (SPF and DKIM records > 255 bytes).
  void txt(std::string_view name, TxtCallback cb);
  // PTR, then the A (IPv4) or AAAA (IPv6) records of up to kMaxVerifiedPtrNames PTR names.
  void verify_reverse(const net::IpAddress& address, ReverseCallback cb);

  // Lookups started and not yet delivered (verify_reverse counts as one).
  size_t pending() const;

 private:
  class Impl;
  explicit Resolver(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Exposed for tests: the name checks applied before a query is sent.
bool valid_query_name(std::string_view name);

}  // namespace common::dns
