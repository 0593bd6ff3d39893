// record13_internal.hpp: what the TLS 1.3 record layer (record13.cpp) shows its own tests and fuzz
// target, never the server: the AEAD of one record through the very NSS calls the layer makes, and a
// seam that makes the Nth hash, key import, encrypt or decrypt call fail as a refusing softoken would.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace common::tls::record13 {

enum class AeadKind : uint8_t { AesGcm, ChaCha20Poly1305 };

// A tag that does not verify is the peer's doing (bad_record_mac); a local failure is NSS unable to
// run the operation at all (a key import refused, an encrypt that fails: internal_error).
enum class AeadResult : uint8_t { Ok, BadTag, LocalFailure };

// One record's AEAD (RFC 8446 §5.2) with a 12-byte nonce and a 16-byte tag: `sealed` is the
// ciphertext followed by the tag. AES-GCM keys are 16 or 32 bytes, ChaCha20-Poly1305 keys 32.
AeadResult aead_seal(AeadKind kind, std::string_view key, std::string_view nonce, std::string_view aad,
                     std::string_view plain, std::string& sealed);
AeadResult aead_open(AeadKind kind, std::string_view key, std::string_view nonce, std::string_view aad,
                     std::string_view sealed, std::string& plain);

// The buffers the layer decrypts into and seals from, as they are between calls: a test checks
// that no plaintext (a login line) stays behind in them.
std::string_view open_scratch();
std::string_view seal_scratch();

// --- Fault injection, for tests only. Off (and one relaxed load per NSS call) unless a test arms it.
enum class NssCall : uint8_t { Hash, KeyImport, Encrypt, Decrypt };
inline constexpr size_t kNssCalls = 4;

// Starts counting every kind of call from zero; the `nth` call of `call` from now on (1 = the next)
// fails. nth = 0 only counts, so a test can learn how many calls a scenario makes.
void fail_nth_call(NssCall call, unsigned nth);
// Calls of `call` counted since the last fail_nth_call.
unsigned calls_counted(NssCall call);
// While paused (a test's own peer at work) calls are neither counted nor failed.
void pause_faults(bool paused);
void disarm_faults();

// In record13.cpp before each NSS call: whether this one must fail.
bool injected_failure(NssCall call);

}  // namespace common::tls::record13
