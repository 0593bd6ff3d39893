// kept_memory.cpp: argon2id verification in a thread's kept memory area, through libargon2.
#include "authserv/password/kept_memory.hpp"

#include <argon2.h>
#include <sys/mman.h>

#include <charconv>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "authserv/password/internal.hpp"

namespace authserv::password {
namespace {

thread_local KeptHashMemory* t_current = nullptr;

// "$argon2id$v=19$m=65536,t=1,p=1$<salt>$<hash>" exactly as libsodium (and libargon2) write it;
// anything else goes to libsodium, which decides what it is.
struct Phc {
  uint32_t m = 0, t = 0, p = 0;
  std::string_view salt, hash;  // base64 without padding
};

bool read_u32(std::string_view& s, std::string_view key, char end, uint32_t& out) {
  if (s.substr(0, key.size()) != key) return false;
  s.remove_prefix(key.size());
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec != std::errc{} || ptr == s.data()) return false;
  s.remove_prefix(static_cast<size_t>(ptr - s.data()));
  if (s.empty() || s.front() != end) return false;
  s.remove_prefix(1);
  return true;
}

std::optional<Phc> parse_argon2id(std::string_view s) {
  constexpr std::string_view kHead = "$argon2id$v=19$";
  if (s.substr(0, kHead.size()) != kHead) return std::nullopt;
  s.remove_prefix(kHead.size());
  Phc phc;
  if (!read_u32(s, "m=", ',', phc.m) || !read_u32(s, "t=", ',', phc.t) || !read_u32(s, "p=", '$', phc.p))
    return std::nullopt;
  const size_t dollar = s.find('$');
  if (dollar == std::string_view::npos) return std::nullopt;
  phc.salt = s.substr(0, dollar);
  phc.hash = s.substr(dollar + 1);
  return phc;
}

bool decode(std::string_view b64, std::vector<unsigned char>& out, size_t min, size_t max) {
  out.resize(max);
  size_t n = 0;
  if (sodium_base642bin(out.data(), out.size(), b64.data(), b64.size(), nullptr, &n, nullptr,
                        sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0)
    return false;
  out.resize(n);
  return n >= min && n <= max;
}

}  // namespace

int kept_allocate(uint8_t** memory, size_t bytes) {
  KeptHashMemory* kept = t_current;
  if (kept == nullptr || kept->lent_ || bytes > kept->bytes_) return ARGON2_MEMORY_ALLOCATION_ERROR;
  kept->lent_ = true;
  *memory = kept->base_;
  return ARGON2_OK;
}

// libargon2 has wiped the area already (it clears its memory before handing it back).
void kept_release(uint8_t* memory, size_t) {
  KeptHashMemory* kept = t_current;
  if (kept != nullptr && memory == kept->base_) {
    kept->lent_ = false;
    ++kept->hashes_;
  }
}

KeptHashMemory::KeptHashMemory(size_t bytes) : bytes_(bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;
  // Huge pages where the kernel allows them (transparent_hugepage "madvise" or "always"): fewer
  // TLB misses in argon2's random reads. Advice only; 4 KiB pages work the same.
  (void)::madvise(p, bytes, MADV_HUGEPAGE);
  // Out of core dumps: between a hash and its wipe it holds password-derived blocks.
  (void)::madvise(p, bytes, MADV_DONTDUMP);
  std::memset(p, 0, bytes);
  base_ = static_cast<unsigned char*>(p);
  previous_ = t_current;
  t_current = this;
}

KeptHashMemory::~KeptHashMemory() {
  if (base_ == nullptr) return;
  t_current = previous_;
  ::munmap(base_, bytes_);  // wiped after the last hash already
}

KeptHashMemory* KeptHashMemory::current() { return t_current; }

namespace detail {

std::optional<bool> verify_argon2id_kept(std::string_view password, std::string_view value) {
  KeptHashMemory* kept = t_current;
  if (kept == nullptr) return std::nullopt;
  const auto phc = parse_argon2id(value);
  // Only the cost the area was made for, one lane: libargon2 would otherwise start threads.
  if (!phc || uint64_t{phc->m} * 1024 != kept->bytes() || phc->p != 1 || phc->t < 1 || phc->t > 32)
    return std::nullopt;
  std::vector<unsigned char> salt, expect;
  if (!decode(phc->salt, salt, ARGON2_MIN_SALT_LENGTH, 64) || !decode(phc->hash, expect, 16, 64)) return std::nullopt;
  // libargon2 takes non-const pointers (it may clear them, with flags we do not set): a copy.
  std::string pw(password);
  std::vector<unsigned char> out(expect.size());
  argon2_context ctx{};
  ctx.out = out.data();
  ctx.outlen = static_cast<uint32_t>(out.size());
  ctx.pwd = reinterpret_cast<uint8_t*>(pw.data());
  ctx.pwdlen = static_cast<uint32_t>(pw.size());
  ctx.salt = salt.data();
  ctx.saltlen = static_cast<uint32_t>(salt.size());
  ctx.t_cost = phc->t;
  ctx.m_cost = phc->m;
  ctx.lanes = 1;
  ctx.threads = 1;
  ctx.version = ARGON2_VERSION_13;
  ctx.allocate_cbk = kept_allocate;
  ctx.free_cbk = kept_release;
  ctx.flags = ARGON2_DEFAULT_FLAGS;
  const int rc = argon2_ctx(&ctx, Argon2_id);
  std::optional<bool> verdict;
  if (rc == ARGON2_OK) verdict = sodium_memcmp(out.data(), expect.data(), out.size()) == 0;
  sodium_memzero(out.data(), out.size());
  sodium_memzero(pw.data(), pw.size());
  return verdict;  // nullopt (libargon2 refused the inputs): libsodium decides
}

}  // namespace detail
}  // namespace authserv::password
