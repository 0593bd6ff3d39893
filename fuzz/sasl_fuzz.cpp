// sasl_fuzz.cpp: every SASL mechanism on arbitrary client messages. Byte 0 picks the mechanism,
// byte 1 the context and directory answers; the rest is split at '\n' into client messages.
// Invariants: never crash, stop within kMaxSteps, and never succeed on a wrong password,
// an unknown SCRAM user or a proof the fuzzer cannot know.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "authserv/sasl/sasl.hpp"

using namespace authserv::sasl;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  static const ScramVerifier verifier = scram_keys("pencil", "saltsaltsaltsalt", kScramMinIterations);
  auto all = mechanisms();
  const auto& info = all[data[0] % all.size()];
  const std::uint8_t flags = data[1];
  const bool password_ok = flags & 1;
  const bool known_user = flags & 2;
  std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);

  MechanismContext ctx;
  if ((flags & 4) || info.needs_channel_binding) ctx.channel_binding = "tls-exporter-bytes";
  ctx.tls_identity = "fuzz-identity";
  ctx.nonce = [] { return std::string("fuzznonce"); };
  auto m = make_mechanism(info.name, ctx);
  if (!m) std::abort();

  auto next = [&]() {
    auto p = rest.find('\n');
    auto msg = rest.substr(0, p);
    rest = p == std::string_view::npos ? std::string_view{} : rest.substr(p + 1);
    return msg;
  };
  Step s = (flags & 8) ? m->start(std::nullopt) : m->start(next());
  int rounds = 0;
  while (true) {
    if (++rounds > 3 * kMaxSteps) std::abort();  // the machine must end
    if (s.kind == Step::Kind::Challenge) {
      s = m->step(next());
    } else if (s.kind == Step::Kind::NeedPasswordCheck) {
      s = m->password_checked(password_ok);
      if (s.kind == Step::Kind::Success && !password_ok) std::abort();
    } else if (s.kind == Step::Kind::NeedScramVerifier) {
      s = known_user ? m->scram_verifier(verifier) : m->scram_verifier(std::nullopt);
      if (s.kind == Step::Kind::Success) std::abort();
    } else if (s.kind == Step::Kind::NeedTokenCheck) {
      s = m->token_checked(password_ok);
      if (s.kind == Step::Kind::Success && !password_ok) std::abort();
    } else {
      break;
    }
  }
  if (s.kind == Step::Kind::Success) {
    if (info.name.starts_with("SCRAM") && !known_user) std::abort();
  }
  // A finished machine stays finished.
  if (m->step("x").kind != Step::Kind::Failure) std::abort();
  return 0;
}
