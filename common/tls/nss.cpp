// nss.cpp: opening and closing NSS for the process (the start-up sequence of docs/nss-notes.md §1): the password
// callback, NSS_InitContext with the 389-ds token name, the server session cache, a log-in check.
#include "common/tls/nss.hpp"

#include <sys/stat.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <nss.h>
#include <nssutil.h>
#include <pk11pub.h>
#include <prerror.h>
#include <secerr.h>
#include <ssl.h>

#include "common/log/log.hpp"
#include "common/tls/crl.hpp"
#include "common/tls/handles.hpp"

namespace common::tls {
namespace {

// The token name of the internal key slot once dbTokenDescription is set ("NSS Certificate DB" otherwise), so
// 389-ds/mod_nss password files ("Internal (Software) Token:secret") work unchanged.
constexpr const char* kInternalToken = "Internal (Software) Token";

// The password callback is process-wide in NSS, so the passwords it hands out are too.
struct Passwords {
  std::mutex mutex;
  std::map<std::string, std::string, std::less<>> by_token;

  void clear() {
    std::lock_guard lock(mutex);
    for (auto& [token, password] : by_token) explicit_bzero(password.data(), password.size());
    by_token.clear();
  }
};

Passwords& passwords() {
  static Passwords p;
  return p;
}

std::atomic<bool> g_alive{false};

// Called by NSS whenever a token needs a log-in. A retry means the password we gave was wrong:
// answering NULL stops NSS from asking forever.
char* password_callback(PK11SlotInfo* slot, PRBool retry, void*) {
  if (retry || slot == nullptr) return nullptr;
  std::string_view token = PK11_GetTokenName(slot);
  auto& p = passwords();
  std::lock_guard lock(p.mutex);
  auto it = p.by_token.find(token);
  if (it == p.by_token.end() && PK11_IsInternalKeySlot(slot)) {
    for (const char* alias : {kInternalToken, "NSS Certificate DB", "internal"}) {
      it = p.by_token.find(std::string_view(alias));
      if (it != p.by_token.end()) break;
    }
  }
  if (it == p.by_token.end()) return nullptr;
  return PORT_Strdup(it->second.c_str());
}

// Lines "token:password" (the first colon splits; a trailing newline or CR is allowed).
Result<std::map<std::string, std::string, std::less<>>> read_password_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return fail(ErrorKind::Config, "NSS password file " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return fail(ErrorKind::Config, "NSS password file " + path + " is not a regular file");
  if ((st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return fail(ErrorKind::Config, "NSS password file " + path + " is readable or writable by group/other (mode " +
                                       mode + "); make it 0600 and owned by the service user");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(ErrorKind::Config, "NSS password file " + path + ": cannot open: " + std::strerror(errno));
  std::map<std::string, std::string, std::less<>> out;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    auto colon = line.find(':');
    if (colon == std::string::npos || colon == 0) {
      explicit_bzero(line.data(), line.size());
      return fail(ErrorKind::Config, "NSS password file " + path + " line " + std::to_string(number) +
                                         ": expected \"token:password\" (e.g. \"Internal (Software) Token:secret\")");
    }
    out[line.substr(0, colon)] = line.substr(colon + 1);
    explicit_bzero(line.data(), line.size());
  }
  if (out.empty()) return fail(ErrorKind::Config, "NSS password file " + path + " holds no \"token:password\" line");
  return out;
}

}  // namespace

struct Nss::Context {
  NSSInitContext* context = nullptr;
  mutable std::mutex crl_mutex;
  CachedCrls crls;  // released before NSS shuts down
};

Nss::Nss(NssOptions options) : options_(std::move(options)), context_(std::make_unique<Context>()) {}

Result<std::unique_ptr<Nss>> Nss::init(const NssOptions& options) {
  bool expected = false;
  if (!g_alive.compare_exchange_strong(expected, true)) {
    return fail(ErrorKind::Internal, "NSS is already open in this process (one common::tls::Nss per process)");
  }
  // From here on, failures must give the slot back.
  struct Release {
    bool armed = true;
    ~Release() {
      if (armed) {
        PK11_SetPasswordFunc(nullptr);
        passwords().clear();
        g_alive = false;
      }
    }
  } release;

  namespace fs = std::filesystem;
  std::error_code ec;
  if (options.db_dir.empty()) return fail(ErrorKind::Config, "no NSS database directory configured");
  if (!fs::exists(fs::path(options.db_dir) / "cert9.db", ec)) {
    return fail(ErrorKind::Config, "no NSS database in " + options.db_dir +
                                       " (cert9.db is missing; create it with deploy/certs or certutil -N -d sql:" +
                                       options.db_dir + ")");
  }
  if (!options.password_file.empty()) {
    auto read = read_password_file(options.password_file);
    if (!read) return tl::unexpected(read.error());
    std::lock_guard lock(passwords().mutex);
    passwords().by_token = std::move(*read);
  }
  PK11_SetPasswordFunc(password_callback);

  NSSInitParameters params;
  std::memset(&params, 0, sizeof params);
  params.length = sizeof params;
  std::string token_description = kInternalToken;
  params.dbTokenDescription = token_description.data();
  PRUint32 flags = 0;
  if (options.read_only) flags |= NSS_INIT_READONLY;
  if (!options.load_public_roots) flags |= NSS_INIT_NOROOTINIT;
  std::string config_dir = "sql:" + options.db_dir;
  NSSInitContext* context = NSS_InitContext(config_dir.c_str(), "", "", "", &params, flags);
  if (context == nullptr) {
    return fail(ErrorKind::Config, "cannot open the NSS database " + config_dir + ": " + last_error_text());
  }
  std::unique_ptr<Nss> nss(new Nss(options));
  nss->context_->context = context;
  release.armed = false;  // the destructor owns the cleanup from here

  if (NSS_SetDomesticPolicy() != SECSuccess) {
    return fail(ErrorKind::Internal, "NSS_SetDomesticPolicy failed: " + last_error_text());
  }
  // Without the server session cache the first TLS 1.2 client crashes libssl3 with SIGFPE.
  if (SSL_ConfigServerSessionIDCache(options.session_cache_entries, 0, 0, nullptr) != SECSuccess) {
    return fail(ErrorKind::Internal, "SSL_ConfigServerSessionIDCache failed: " + last_error_text());
  }
  NssSlot slot(PK11_GetInternalKeySlot());
  if (!slot) return fail(ErrorKind::Internal, "no internal key slot in NSS: " + last_error_text());
  if (PK11_NeedLogin(slot.get()) && !PK11_IsLoggedIn(slot.get(), nullptr)) {
    std::string token = PK11_GetTokenName(slot.get());
    if (options.password_file.empty()) {
      return fail(ErrorKind::Config, "the NSS database " + options.db_dir + " needs the password of token \"" + token +
                                         "\" but no password file is configured");
    }
    if (PK11_Authenticate(slot.get(), PR_TRUE, nullptr) != SECSuccess) {
      int code = PR_GetError();
      if (code == SEC_ERROR_BAD_PASSWORD || code == 0) {
        return fail(ErrorKind::Config, "wrong or missing password for token \"" + token + "\" in " +
                                           options.password_file + " (" + error_text(SEC_ERROR_BAD_PASSWORD) + ")");
      }
      return fail(ErrorKind::Config, "cannot log in to token \"" + token + "\": " + error_text(code));
    }
  }
  if (!options.crl_files.empty()) {
    auto crls = CachedCrls::load(options.crl_files);
    if (!crls) return tl::unexpected(crls.error());
    nss->context_->crls = std::move(*crls);
  }
  log::info("tls").event("nss_ready").kv("version", version()).kv("db", config_dir)
      .kv("read_only", options.read_only ? "yes" : "no").kv("crls", static_cast<uint64_t>(nss->crl_count()));
  return nss;
}

Result<void> Nss::reload_crls(const std::vector<std::string>& files) {
  auto fresh = CachedCrls::load(files);
  if (!fresh) {
    log::error("tls").phase("reload").event("crl_reload_failed").kv("reason", fresh.error().detail)
        .kv("effect", "the CRLs loaded before stay in force");
    return tl::unexpected(fresh.error());
  }
  std::lock_guard lock(context_->crl_mutex);
  context_->crls = std::move(*fresh);  // the new ones are cached before the old ones go
  options_.crl_files = files;
  return {};
}

size_t Nss::crl_count() const {
  std::lock_guard lock(context_->crl_mutex);
  return context_->crls.size();
}

Result<CertificateValidity> certificate_validity(std::string_view nickname) {
  if (!NSS_IsInitialized()) return fail(ErrorKind::Internal, "NSS is not initialised");
  std::string nick(nickname);
  NssCert cert(PK11_FindCertFromNickname(nick.c_str(), nullptr));
  if (!cert) return fail(ErrorKind::Config, "certificate \"" + nick + "\" not found: " + last_error_text());
  PRTime not_before = 0, not_after = 0;
  if (CERT_GetCertTimes(cert.get(), &not_before, &not_after) != SECSuccess)
    return fail(ErrorKind::Internal, "certificate \"" + nick + "\" has unreadable validity: " + last_error_text());
  CertificateValidity v;
  if (char* name = CERT_NameToAscii(&cert->subject)) {
    v.subject = name;
    PORT_Free(name);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned i = 0; i < cert->serialNumber.len; ++i) {
    v.serial += kHex[cert->serialNumber.data[i] >> 4];
    v.serial += kHex[cert->serialNumber.data[i] & 15];
  }
  v.not_after = std::chrono::system_clock::time_point(std::chrono::microseconds(not_after));  // PRTime: µs since 1970
  return v;
}

Result<void> Nss::shutdown() {
  if (!context_ || context_->context == nullptr) return {};
  {
    std::lock_guard lock(context_->crl_mutex);
    context_->crls = CachedCrls();  // uncached while NSS still runs
  }
  SSL_ShutdownServerSessionIDCache();
  SSL_ClearSessionCache();
  SECStatus rv = NSS_ShutdownContext(context_->context);
  context_->context = nullptr;
  PK11_SetPasswordFunc(nullptr);
  passwords().clear();
  g_alive = false;
  if (rv != SECSuccess) {
    // SEC_ERROR_BUSY: some CERTCertificate, key or socket outlived NSS.
    std::string reason = last_error_text();
    log::error("tls").event("nss_shutdown_failed").kv("reason", reason);
    return fail(ErrorKind::Internal, "NSS_Shutdown failed (a reference leaked?): " + reason);
  }
  return {};
}

Nss::~Nss() { (void)shutdown(); }

std::string Nss::version() { return NSS_GetVersion(); }

std::string error_text(int code) {
  // The SEC_* and SSL_* tables register on first use of NSS; make sure they are there even when
  // asked before (a failed NSS_InitContext).
  NSS_InitializePRErrorTable();
  const char* name = PR_ErrorToName(code);
  const char* text = PR_ErrorToString(code, PR_LANGUAGE_I_DEFAULT);
  std::string out = name ? name : "NSS_ERROR";
  out += " (" + std::to_string(code) + ")";
  if (text && *text) {
    out += ": ";
    out += text;
  }
  return out;
}

std::string last_error_text() { return error_text(PR_GetError()); }

}  // namespace common::tls
