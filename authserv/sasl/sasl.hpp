// sasl.hpp: server-side SASL mechanisms (RFC 4422) as pure state machines: decoded bytes in,
// Steps out. No I/O, clock or logging; credential checks are data the caller feeds back.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace authserv::sasl {

inline constexpr std::size_t kMaxMessage = 8192;  // one client message, after base64 decoding
inline constexpr int kMaxSteps = 4;               // client messages per exchange

// What the session must do next. `data` is the challenge (Challenge), the SCRAM server-final
// message (Success; send it as additional data), or a reason for logs (Failure: never send it).
struct Step {
  enum class Kind { Challenge, NeedPasswordCheck, NeedScramVerifier, NeedTokenCheck, Success, Failure };
  Kind kind = Kind::Failure;
  std::string data;
  std::string authcid;   // NeedPasswordCheck, NeedScramVerifier, Success
  std::string authzid;   // NeedPasswordCheck, Success (empty: none requested)
  std::string password;  // NeedPasswordCheck: password; NeedTokenCheck: bearer token. Zeroed on destruction

  Step() = default;
  Step(Kind k, std::string d) : kind(k), data(std::move(d)) {}
  Step(const Step&) = delete;
  Step& operator=(const Step&) = delete;
  Step(Step&&) noexcept;
  Step& operator=(Step&&) noexcept;
  ~Step();
};

// The stored SCRAM verifier (RFC 5802 §3). The password itself is never needed.
struct ScramVerifier {
  std::uint32_t iterations = 0;
  std::string salt;  // raw bytes
  std::array<std::uint8_t, 32> stored_key{};
  std::array<std::uint8_t, 32> server_key{};
};
inline constexpr std::uint32_t kScramMinIterations = 4096;      // RFC 7677 §4
inline constexpr std::uint32_t kScramMaxIterations = 10000000;  // bounds a hostile directory entry

// SaltedPassword = PBKDF2-HMAC-SHA256(password, salt, i); keys as RFC 5802 §3.
// The password is SASLprep'd first (password::PreparedPassword), as RFC 5802 §2.2 asks.
ScramVerifier scram_keys(std::string_view password, std::string_view salt, std::uint32_t iterations);

// Returns a printable nonce without ','. Injected so tests are deterministic.
using NonceSource = std::function<std::string()>;
std::string random_nonce();  // 18 bytes from randombytes_buf, base64: 24 chars

struct MechanismContext {
  // tls-exporter bytes (RFC 9266) when the connection is TLS 1.3; enables -PLUS.
  std::optional<std::string> channel_binding;
  // The identity the TLS layer verified from a client certificate; enables EXTERNAL.
  std::optional<std::string> tls_identity;
  // Keys the fake salt for unknown users so it is stable per name yet unguessable. Set it from
  // secret configuration (authserv: a sub-key of the token signing seed) so it survives restarts
  // and is the same on every instance; left all zero, a per-process random key is used.
  std::array<std::uint8_t, 32> fake_salt_key{};
  // Iteration count shown for unknown users: set it to the site's default for new verifiers,
  // or a different i= would tell an attacker that the user does not exist.
  std::uint32_t fake_iterations = kScramMinIterations;
  NonceSource nonce = random_nonce;
};

class Mechanism {
 public:
  virtual ~Mechanism() = default;
  virtual std::string_view name() const = 0;
  // The first step: `initial` is the initial response if the client sent one (may be empty).
  virtual Step start(std::optional<std::string_view> initial);
  // Every later client response.
  virtual Step step(std::string_view response) = 0;
  // Answer to NeedPasswordCheck.
  virtual Step password_checked(bool ok);
  // Answer to NeedScramVerifier; nullopt means the user is unknown. `account` is the name as the
  // directory looked it up (lowercased uid@domain); an unknown user's fake salt derives from it,
  // or from the authcid as sent when it is empty.
  virtual Step scram_verifier(std::optional<ScramVerifier> verifier, std::string_view account = {});
  // Answer to NeedTokenCheck (OAUTHBEARER, XOAUTH2): did the token validate for authcid?
  virtual Step token_checked(bool ok);
};

struct MechanismInfo {
  std::string_view name;
  bool plaintext;              // sends the password or a bearer token: refuse without TLS
  bool needs_channel_binding;  // -PLUS: only with MechanismContext::channel_binding
  bool needs_tls_identity;     // EXTERNAL
};
std::span<const MechanismInfo> mechanisms();
// Case-insensitive; nullptr if unknown or if the context cannot support it.
std::unique_ptr<Mechanism> make_mechanism(std::string_view name, MechanismContext ctx);

// Strict UTF-8 (RFC 3629): no overlongs, surrogates, or code points above U+10FFFF.
bool valid_utf8(std::string_view s);

}  // namespace authserv::sasl
