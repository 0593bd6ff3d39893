// sasl.cpp: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login), EXTERNAL (RFC 4422 App. A),
// OAUTHBEARER (RFC 7628), XOAUTH2 (Google's format), the mechanism table and factory.
#include "authserv/sasl/sasl.hpp"

#include <sodium.h>

#include "authserv/sasl/scram.hpp"
#include "common/ascii.hpp"

namespace authserv::sasl {

namespace {

using common::ascii::iequals;

void wipe(std::string& s) {
  if (!s.empty()) sodium_memzero(s.data(), s.size());
  s.clear();
}

Step fail(std::string reason) { return Step(Step::Kind::Failure, std::move(reason)); }
Step challenge(std::string data) { return Step(Step::Kind::Challenge, std::move(data)); }

// PLAIN: message = [authzid] NUL authcid NUL passwd, all UTF-8 (RFC 4616 §2).
class Plain final : public Mechanism {
 public:
  std::string_view name() const override { return "PLAIN"; }
  Step step(std::string_view in) override {
    if (state_ != State::WaitMessage) return fail("plain: unexpected message");
    state_ = State::Done;
    if (in.size() > kMaxMessage) return fail("plain: message too long");
    auto nul1 = in.find('\0');
    if (nul1 == std::string_view::npos) return fail("plain: missing separator");
    auto nul2 = in.find('\0', nul1 + 1);
    if (nul2 == std::string_view::npos) return fail("plain: missing second separator");
    if (in.find('\0', nul2 + 1) != std::string_view::npos) return fail("plain: extra NUL");
    auto authzid = in.substr(0, nul1);
    auto authcid = in.substr(nul1 + 1, nul2 - nul1 - 1);
    auto passwd = in.substr(nul2 + 1);
    if (authcid.empty()) return fail("plain: empty authcid");
    if (passwd.empty()) return fail("plain: empty password");
    if (!valid_utf8(authzid) || !valid_utf8(authcid) || !valid_utf8(passwd))
      return fail("plain: invalid UTF-8");
    Step s(Step::Kind::NeedPasswordCheck, {});
    s.authcid = authcid;
    s.authzid = authzid;
    s.password = passwd;
    authcid_ = authcid;
    authzid_ = authzid;
    state_ = State::WaitCheck;
    return s;
  }
  Step password_checked(bool ok) override {
    if (state_ != State::WaitCheck) return fail("plain: unexpected password check");
    state_ = State::Done;
    if (!ok) return fail("plain: wrong password");
    Step s(Step::Kind::Success, {});
    s.authcid = authcid_;
    s.authzid = authzid_;
    return s;
  }

 private:
  enum class State { WaitMessage, WaitCheck, Done } state_ = State::WaitMessage;
  std::string authcid_, authzid_;
};

// LOGIN: challenges "Username:" then "Password:"; an initial response is the user name.
class Login final : public Mechanism {
 public:
  ~Login() override { wipe(user_); }
  std::string_view name() const override { return "LOGIN"; }
  Step start(std::optional<std::string_view> initial) override {
    if (!initial) return challenge("Username:");
    return step(*initial);
  }
  Step step(std::string_view in) override {
    if (++steps_ > kMaxSteps) return finish(fail("login: too many steps"));
    if (in.size() > kMaxMessage) return finish(fail("login: message too long"));
    if (in.find('\0') != std::string_view::npos) return finish(fail("login: NUL in input"));
    if (!valid_utf8(in)) return finish(fail("login: invalid UTF-8"));
    switch (state_) {
      case State::WaitUser:
        if (in.empty()) return finish(fail("login: empty user name"));
        user_ = in;
        state_ = State::WaitPassword;
        return challenge("Password:");
      case State::WaitPassword: {
        if (in.empty()) return finish(fail("login: empty password"));
        Step s(Step::Kind::NeedPasswordCheck, {});
        s.authcid = user_;
        s.password = in;
        state_ = State::WaitCheck;
        return s;
      }
      default:
        return finish(fail("login: unexpected message"));
    }
  }
  Step password_checked(bool ok) override {
    if (state_ != State::WaitCheck) return finish(fail("login: unexpected password check"));
    if (!ok) return finish(fail("login: wrong password"));
    Step s(Step::Kind::Success, {});
    s.authcid = user_;
    return finish(std::move(s));
  }

 private:
  Step finish(Step s) {
    state_ = State::Done;
    return s;
  }
  enum class State { WaitUser, WaitPassword, WaitCheck, Done } state_ = State::WaitUser;
  std::string user_;
  int steps_ = 0;
};

// EXTERNAL: identity from the TLS layer; the message is an optional authzid (RFC 4422 App. A).
class External final : public Mechanism {
 public:
  explicit External(std::optional<std::string> identity) : identity_(std::move(identity)) {}
  std::string_view name() const override { return "EXTERNAL"; }
  Step step(std::string_view in) override {
    if (done_) return fail("external: unexpected message");
    done_ = true;
    if (!identity_ || identity_->empty()) return fail("external: no verified TLS identity");
    if (in.size() > kMaxMessage) return fail("external: message too long");
    if (in.find('\0') != std::string_view::npos) return fail("external: NUL in authzid");
    if (!valid_utf8(in)) return fail("external: invalid UTF-8");
    Step s(Step::Kind::Success, {});
    s.authcid = *identity_;
    s.authzid = in;
    return s;
  }

 private:
  std::optional<std::string> identity_;
  bool done_ = false;
};

// b64token (RFC 6750 §2.1): 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
bool valid_b64token(std::string_view t) {
  std::size_t i = 0;
  while (i < t.size() && (common::ascii::is_alnum(t[i]) ||
                          std::string_view("-._~+/").find(t[i]) != std::string_view::npos))
    ++i;
  if (i == 0) return false;
  while (i < t.size() && t[i] == '=') ++i;
  return i == t.size();
}

// OAUTHBEARER (RFC 7628 §3.1): gs2-header kvsep *(key "=" value kvsep) kvsep, kvsep = %x01.
// XOAUTH2: "user=" user %x01 "auth=Bearer " token %x01 %x01.
class Bearer final : public Mechanism {
 public:
  explicit Bearer(bool xoauth2) : xoauth2_(xoauth2) {}
  std::string_view name() const override { return xoauth2_ ? "XOAUTH2" : "OAUTHBEARER"; }
  Step step(std::string_view in) override {
    if (++steps_ > kMaxSteps) return finish(fail("bearer: too many steps"));
    if (in.size() > kMaxMessage) return finish(fail("bearer: message too long"));
    if (state_ == State::WaitErrorAck) {
      // RFC 7628 §3.2.3: after the error challenge the client sends a single %x01.
      return finish(fail(in == "\x01" ? "bearer: token rejected" : "bearer: bad error acknowledgement"));
    }
    if (state_ != State::WaitMessage) return finish(fail("bearer: unexpected message"));
    if (in.find('\0') != std::string_view::npos || !valid_utf8(in)) return finish(fail("bearer: bad bytes"));
    std::string_view rest = in;
    std::string user;
    if (!xoauth2_) {
      // gs2-header: no channel binding ("n" or "y"), optional a=saslname, then ','.
      if (!(rest.starts_with("n,") || rest.starts_with("y,"))) return finish(fail("bearer: bad gs2 header"));
      rest.remove_prefix(2);
      auto comma = rest.find(',');
      if (comma == std::string_view::npos) return finish(fail("bearer: bad gs2 header"));
      auto a = rest.substr(0, comma);
      if (!a.empty()) {
        if (!a.starts_with("a=") || a.size() == 2) return finish(fail("bearer: bad authzid"));
        for (std::size_t i = 2; i < a.size(); ++i) {
          if (a[i] == '=') {
            auto esc = a.substr(i + 1, 2);
            if (esc == "2C") user.push_back(',');
            else if (esc == "3D") user.push_back('=');
            else return finish(fail("bearer: bad authzid escape"));
            i += 2;
          } else {
            user.push_back(a[i]);
          }
        }
      }
      rest.remove_prefix(comma + 1);
      if (!rest.starts_with("\x01")) return finish(fail("bearer: missing separator"));
      rest.remove_prefix(1);
    }
    std::string token;
    bool end = false;
    while (!rest.empty()) {
      auto p = rest.find('\x01');
      if (p == std::string_view::npos) return finish(fail("bearer: unterminated pair"));
      auto kv = rest.substr(0, p);
      rest.remove_prefix(p + 1);
      if (kv.empty()) {
        end = true;
        break;
      }
      auto eq = kv.find('=');
      if (eq == std::string_view::npos || eq == 0) return finish(fail("bearer: bad pair"));
      auto key = kv.substr(0, eq), value = kv.substr(eq + 1);
      for (char c : key) {
        if (!common::ascii::is_alpha(c)) return finish(fail("bearer: bad key"));
      }
      if (key == "auth") {
        if (!token.empty()) return finish(fail("bearer: duplicate auth"));
        if (value.size() < 7 || !iequals(value.substr(0, 7), "Bearer ") || !valid_b64token(value.substr(7)))
          return finish(fail("bearer: bad auth value"));
        token = value.substr(7);
      } else if (xoauth2_ && key == "user") {
        user = value;
      }
    }
    if (!end || !rest.empty()) return finish(fail("bearer: missing terminator"));
    if (token.empty()) return finish(fail("bearer: no token"));
    if (user.empty() || !valid_utf8(user)) return finish(fail("bearer: no user"));
    user_ = user;
    state_ = State::WaitCheck;
    Step s(Step::Kind::NeedTokenCheck, {});
    s.authcid = user_;
    s.password = std::move(token);
    return s;
  }
  Step token_checked(bool ok) override {
    if (state_ != State::WaitCheck) return finish(fail("bearer: unexpected token check"));
    if (ok) {
      Step s(Step::Kind::Success, {});
      s.authcid = user_;
      return finish(std::move(s));
    }
    state_ = State::WaitErrorAck;
    return challenge(R"({"status":"invalid_token"})");
  }

 private:
  Step finish(Step s) {
    state_ = State::Done;
    return s;
  }
  enum class State { WaitMessage, WaitCheck, WaitErrorAck, Done } state_ = State::WaitMessage;
  bool xoauth2_;
  int steps_ = 0;
  std::string user_;
};

constexpr MechanismInfo kMechanisms[] = {
    {"SCRAM-SHA-256-PLUS", false, true, false},
    {"SCRAM-SHA-256", false, false, false},
    {"EXTERNAL", false, false, true},
    {"PLAIN", true, false, false},
    {"LOGIN", true, false, false},
    {"OAUTHBEARER", true, false, false},
    {"XOAUTH2", true, false, false},
};

}  // namespace

Step::Step(Step&& o) noexcept
    : kind(o.kind), data(std::move(o.data)), authcid(std::move(o.authcid)),
      authzid(std::move(o.authzid)), password(std::move(o.password)) {
  wipe(o.password);
}
Step& Step::operator=(Step&& o) noexcept {
  if (this != &o) {
    wipe(password);
    kind = o.kind;
    data = std::move(o.data);
    authcid = std::move(o.authcid);
    authzid = std::move(o.authzid);
    password = std::move(o.password);
    wipe(o.password);
  }
  return *this;
}
Step::~Step() { wipe(password); }

Step Mechanism::start(std::optional<std::string_view> initial) {
  if (!initial) return challenge("");  // RFC 4422 §5: empty challenge asks for the response
  return step(*initial);
}
Step Mechanism::password_checked(bool) { return fail("unexpected password check"); }
Step Mechanism::scram_verifier(std::optional<ScramVerifier>, std::string_view) { return fail("unexpected verifier"); }
Step Mechanism::token_checked(bool) { return fail("unexpected token check"); }

std::span<const MechanismInfo> mechanisms() { return kMechanisms; }

std::unique_ptr<Mechanism> make_mechanism(std::string_view name, MechanismContext ctx) {
  if (iequals(name, "PLAIN")) return std::make_unique<Plain>();
  if (iequals(name, "LOGIN")) return std::make_unique<Login>();
  if (iequals(name, "OAUTHBEARER")) return std::make_unique<Bearer>(false);
  if (iequals(name, "XOAUTH2")) return std::make_unique<Bearer>(true);
  if (iequals(name, "EXTERNAL")) {
    if (!ctx.tls_identity) return nullptr;
    return std::make_unique<External>(std::move(ctx.tls_identity));
  }
  if (iequals(name, "SCRAM-SHA-256")) return make_scram_sha256(false, std::move(ctx));
  if (iequals(name, "SCRAM-SHA-256-PLUS")) {
    if (!ctx.channel_binding) return nullptr;
    return make_scram_sha256(true, std::move(ctx));
  }
  return nullptr;
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

}  // namespace authserv::sasl
