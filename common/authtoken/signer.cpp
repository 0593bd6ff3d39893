// signer.cpp: authserv's token signing key: the 0600 seed file in the state directory, its .pub
// twin for the stores, and signing. Secret bytes live only in sodium_malloc'd memory.
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/authtoken/authtoken.hpp"
#include "common/authtoken/internal.hpp"
#include "common/text/base64.hpp"

namespace common::authtoken {

namespace {

constexpr size_t kSeedBytes = crypto_sign_SEEDBYTES;

// Secret bytes in guarded, locked memory that sodium_free wipes.
struct SecureBytes {
  void* p = nullptr;
  explicit SecureBytes(size_t n) : p(sodium_malloc(n)) {}
  ~SecureBytes() { sodium_free(p); }
  SecureBytes(const SecureBytes&) = delete;
  SecureBytes& operator=(const SecureBytes&) = delete;
  unsigned char* data() const { return static_cast<unsigned char*>(p); }
};

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

Error os_error(const std::filesystem::path& path, const char* what) {
  return Error{ErrorKind::Config, std::string(what) + " " + path.string() + ": " + std::strerror(errno)};
}

bool write_all(int fd, const unsigned char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

void fsync_dir(const std::filesystem::path& file) {
  auto dir = file.parent_path().empty() ? std::filesystem::path(".") : file.parent_path();
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);  // best effort: the key is already on disk, only the name may be lost
    ::close(fd);
  }
}

// Reads the seed into `seed`; false when there is no key file yet.
Result<bool> read_seed(const std::filesystem::path& path, SecureBytes& seed) {
  Fd f{::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)};
  if (f.fd < 0 && errno == ENOENT) return false;
  if (f.fd < 0) return tl::unexpected(os_error(path, "cannot open access-token key"));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) return tl::unexpected(os_error(path, "cannot stat access-token key"));
  if (!S_ISREG(st.st_mode)) return fail(ErrorKind::Config, "access-token key " + path.string() + " is not a regular file");
  // A key others can read lets them mint tokens for any user: refuse rather than fix it silently.
  if (st.st_mode & 077)
    return fail(ErrorKind::Config, "access-token key " + path.string() + " is accessible by group or others (chmod 600)");
  if (st.st_size != static_cast<off_t>(kSeedBytes))
    return fail(ErrorKind::Config, "access-token key " + path.string() + " is not " + std::to_string(kSeedBytes) + " bytes");
  size_t got = 0;
  while (got < kSeedBytes) {
    ssize_t r = ::read(f.fd, seed.data() + got, kSeedBytes - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return fail(ErrorKind::Config, "short read of access-token key " + path.string());
    got += static_cast<size_t>(r);
  }
  return true;
}

// Writes a fresh seed under a temporary name and links it into place, so a crash never leaves a
// short key and two processes starting at once end up with the same key (link fails on EEXIST).
Result<void> create_seed(const std::filesystem::path& path, SecureBytes& seed) {
  randombytes_buf(seed.data(), kSeedBytes);
  auto tmp = path;
  tmp += ".tmp";
  ::unlink(tmp.c_str());
  {
    Fd f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)};
    if (f.fd < 0) return tl::unexpected(os_error(tmp, "cannot create access-token key"));
    if (::fchmod(f.fd, 0600) != 0 || !write_all(f.fd, seed.data(), kSeedBytes) || ::fsync(f.fd) != 0) {
      auto e = os_error(tmp, "cannot write access-token key");
      ::unlink(tmp.c_str());
      return tl::unexpected(e);
    }
  }
  if (::link(tmp.c_str(), path.c_str()) != 0) {
    auto e = os_error(path, "cannot install access-token key");
    bool raced = errno == EEXIST;
    ::unlink(tmp.c_str());
    if (!raced) return tl::unexpected(e);
    auto theirs = read_seed(path, seed);  // another process won: use its key
    if (!theirs) return tl::unexpected(theirs.error());
    if (!*theirs) return fail(ErrorKind::Config, "access-token key " + path.string() + " vanished");
    return {};
  }
  ::unlink(tmp.c_str());
  fsync_dir(path);
  return {};
}

// The .pub file is derived data: rewritten (atomically) only when it differs.
Result<void> write_public(const std::filesystem::path& key_path, const std::string& text) {
  auto pub = key_path;
  pub += ".pub";
  {
    std::ifstream in(pub, std::ios::binary);
    std::stringstream have;
    have << in.rdbuf();
    if (in && have.str() == text + "\n") return {};
  }
  auto tmp = pub;
  tmp += ".tmp";
  ::unlink(tmp.c_str());
  Fd f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644)};
  if (f.fd < 0) return tl::unexpected(os_error(tmp, "cannot create"));
  std::string line = text + "\n";
  if (!write_all(f.fd, reinterpret_cast<const unsigned char*>(line.data()), line.size()) || ::fsync(f.fd) != 0 ||
      ::rename(tmp.c_str(), pub.c_str()) != 0) {
    auto e = os_error(pub, "cannot write");
    ::unlink(tmp.c_str());
    return tl::unexpected(e);
  }
  return {};
}

}  // namespace

struct Signer::SecretKey {
  SecureBytes bytes{crypto_sign_SECRETKEYBYTES};
};

Signer::Signer() = default;
Signer::Signer(Signer&&) noexcept = default;
Signer& Signer::operator=(Signer&&) noexcept = default;
Signer::~Signer() = default;

Result<Signer> Signer::from_seed(std::span<const std::byte> seed, BindingPolicy binding) {
  internal::ensure_sodium();
  if (seed.size() != kSeedBytes) return fail(ErrorKind::Config, "access-token seed must be 32 bytes");
  Signer s;
  s.binding_ = binding;
  s.secret_ = std::make_unique<SecretKey>();
  if (!s.secret_->bytes.p) return fail(ErrorKind::Internal, "sodium_malloc failed");
  crypto_sign_seed_keypair(s.public_key_.data(), s.secret_->bytes.data(),
                           reinterpret_cast<const unsigned char*>(seed.data()));
  s.key_id_ = internal::key_id_of(s.public_key_);
  return s;
}

Result<Signer> Signer::load_or_create(const std::filesystem::path& key_file, BindingPolicy binding) {
  internal::ensure_sodium();
  SecureBytes seed(kSeedBytes);
  if (!seed.p) return fail(ErrorKind::Internal, "sodium_malloc failed");
  auto found = read_seed(key_file, seed);
  if (!found) return tl::unexpected(found.error());
  if (!*found) {
    if (auto created = create_seed(key_file, seed); !created) return tl::unexpected(created.error());
  }
  auto signer = from_seed(std::as_bytes(std::span(seed.data(), kSeedBytes)), binding);
  if (!signer) return signer;
  if (auto pub = write_public(key_file, signer->public_key_text()); !pub) return tl::unexpected(pub.error());
  return signer;
}

Result<std::string> Signer::sign(const Claims& claims) const {
  if (!secret_) return fail(ErrorKind::Internal, "no signing key");
  if (claims.front_end.empty() && !binding_.allow_unbound)
    return fail(ErrorKind::Internal, "token would be bound to no front end");
  auto payload = detail::encode_payload(claims, key_id_);
  if (!payload) return tl::unexpected(payload.error());
  std::string token = internal::signing_input(text::base64url_encode(*payload));
  std::array<uint8_t, crypto_sign_BYTES> sig{};
  crypto_sign_detached(sig.data(), nullptr, reinterpret_cast<const uint8_t*>(token.data()), token.size(),
                       secret_->bytes.data());
  token += '.';
  token += text::base64url_encode(internal::as_chars(sig));
  return token;
}

Result<void> Signer::derive_key(std::string_view context, uint64_t id, std::span<uint8_t, 32> out) const {
  static_assert(crypto_kdf_KEYBYTES == kSeedBytes);
  if (context.size() != crypto_kdf_CONTEXTBYTES) return fail(ErrorKind::Internal, "key context must be 8 bytes");
  if (!secret_ || !secret_->bytes.p) return fail(ErrorKind::Internal, "no signing key");
  SecureBytes seed(kSeedBytes);
  if (!seed.p) return fail(ErrorKind::Internal, "sodium_malloc failed");
  crypto_sign_ed25519_sk_to_seed(seed.data(), secret_->bytes.data());
  // crypto_kdf_derive_from_key wants a NUL-terminated context buffer it reads 8 bytes of.
  char ctx[crypto_kdf_CONTEXTBYTES + 1] = {};
  std::copy(context.begin(), context.end(), ctx);
  if (crypto_kdf_derive_from_key(out.data(), out.size(), id, ctx, seed.data()) != 0)
    return fail(ErrorKind::Internal, "key derivation failed");
  return {};
}

std::string Signer::public_key_text() const {
  return "ed25519:" + text::base64url_encode(internal::as_chars(public_key_));
}

std::string Signer::key_id() const {
  std::string hex(key_id_.size() * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), key_id_.data(), key_id_.size());
  hex.pop_back();
  return hex;
}

}  // namespace common::authtoken
