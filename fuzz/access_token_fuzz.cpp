// access_token_fuzz.cpp: Verifier::verify on hostile tokens, and the payload codec behind the
// signature. Invariants: never crash; a payload that decodes re-encodes to the same bytes (one
// spelling per claims) and, signed, verifies back to the same claims; claims bound to no front
// end are never signed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "common/authtoken/authtoken.hpp"

using namespace common::authtoken;

namespace {
constexpr int64_t kNow = 1'700'000'000;  // the corpus tokens are valid at this time

const Signer& signer() {
  static const Signer s = [] {
    std::array<std::byte, 32> seed{};
    seed.fill(std::byte{0x11});
    auto r = Signer::from_seed(seed);
    if (!r) std::abort();
    return std::move(*r);
  }();
  return s;
}
const Verifier& verifier() {
  static const Verifier v = [] {
    std::array<std::byte, 32> seed{};
    seed.fill(std::byte{0x22});
    std::vector<std::string> keys{signer().public_key_text(), Signer::from_seed(seed)->public_key_text()};
    auto r = Verifier::from_public_keys(keys);
    if (!r) std::abort();
    return std::move(*r);
  }();
  return v;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto claims = verifier().verify(text, kNow, "mmp1.example.net");
  if (claims && size > kMaxToken) std::abort();

  // The same bytes as a payload that authserv signed: the parser behind the signature.
  auto decoded = detail::decode_payload({data, size});
  if (!decoded) return 0;
  std::array<uint8_t, kKeyIdBytes> id{};
  std::copy_n(data, kKeyIdBytes, id.begin());
  auto again = detail::encode_payload(*decoded, id);
  if (!again || std::string_view(*again) != text) std::abort();
  auto token = signer().sign(*decoded);
  if (decoded->front_end.empty()) {
    if (token) std::abort();  // never minted for no front end
    return 0;
  }
  if (!token || token->size() > kMaxToken) std::abort();
  auto back = verifier().verify(*token, decoded->issued_at, decoded->front_end);
  if (!back || !(*back == *decoded)) std::abort();
  return 0;
}
