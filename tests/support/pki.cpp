// pki.cpp: the shared test certificates (pki.hpp).
#include "tests/support/pki.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fstream>

#include <catch2/catch.hpp>
#include <stdexcept>

namespace test {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

void must(const CommandResult& r, const std::string& what) {
  if (r.exit_code != 0) throw std::runtime_error(what + " failed:\n" + r.output);
}

CommandResult certs(std::vector<std::string> args) {
  args.insert(args.begin(), source_path("deploy/certs"));
  return run(args, 120s);
}

fs::path build_cache() {
  fs::path dir = fs::path(POSTERN_BINARY_DIR) / "tests/pki";
  fs::path stamp = dir / "ready";
  fs::path script = source_path("deploy/certs");
  fs::create_directories(dir.parent_path());
  // ctest runs several test processes at once: one builds, the others wait.
  struct Lock {
    int fd;
    ~Lock() {
      if (fd >= 0) ::close(fd);  // also releases the flock when building fails
    }
  } lock{::open((dir.string() + ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600)};
  if (lock.fd < 0 || ::flock(lock.fd, LOCK_EX) != 0) throw std::runtime_error("cannot lock " + dir.string());
  std::error_code ec;
  // Bump the recipe when the list below changes.
  constexpr std::string_view kRecipe = "pki recipe 8\n";
  const bool fresh = fs::exists(stamp, ec) && read_file(stamp) == kRecipe &&
                     fs::last_write_time(stamp, ec) > fs::last_write_time(script, ec) &&
                     fs::last_write_time(stamp, ec) > fs::file_time_type::clock::now() - std::chrono::days(7);
  if (fresh) return dir;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  auto d = [&](const char* name) { return (dir / name).string(); };
  must(certs({"ca", "--dir", d("ca")}), "deploy/certs ca");
  must(certs({"ca", "--dir", d("other-ca"), "--name", "Other Org CA"}), "deploy/certs ca other");
  must(certs({"ca", "--dir", d("impostor-ca")}), "deploy/certs ca impostor");
  for (auto [ca, host] : {std::pair{"ca", "store1"}, {"ca", "auth1"}, {"ca", "mmp1"}, {"ca", "mta1"}, {"ca", "mta2"}, {"other-ca", "intruder"},
                          {"impostor-ca", "impostor"}}) {
    must(certs({"host", "--ca", d(ca), "--dir", d(host), "--host", host, "--ip", "127.0.0.1"}),
         std::string("deploy/certs host ") + host);
  }
  for (auto [ca, client] : {std::pair{"ca", "mta1"}, {"ca", "mta3"}, {"other-ca", "stranger"}}) {
    must(certs({"client", "--ca", d(ca), "--name", client}), std::string("deploy/certs client ") + client);
  }
  // A user's certificate (E=alice@example.com), for SASL EXTERNAL through certmap's e=mail.
  must(certs({"client", "--ca", d("ca"), "--name", "alice", "--email", "alice@example.com"}),
       "deploy/certs client alice");
  // A store administrator's (admin proxy logins), and a user's that is revoked below (it would map
  // to carol@example.com if it were not).
  must(certs({"client", "--ca", d("ca"), "--name", "admin", "--email", "admin@example.com"}),
       "deploy/certs client admin");
  must(certs({"client", "--ca", d("ca"), "--name", "carol", "--email", "carol@example.com"}),
       "deploy/certs client carol");
  // A virtual domain's own certificate on the mmp's host, served to clients that ask for it by SNI.
  must(certs({"host", "--ca", d("ca"), "--dir", d("mmp1"), "--host", "mail.example.org", "--nickname", "Example-Org"}),
       "deploy/certs host mmp1 Example-Org");
  // Revocation as an operator does it: revoke, rewrite the CRL, import it on the host.
  must(certs({"revoke", "--ca", d("ca"), "--name", "mta2"}), "deploy/certs revoke");
  must(certs({"revoke", "--ca", d("ca"), "--name", "carol"}), "deploy/certs revoke carol");
  must(certs({"crl", "--ca", d("ca")}), "deploy/certs crl");
  for (const char* host : {"store1", "mmp1"}) {
    must(certs({"import-crl", "--dir", d(host), "--crl", (dir / "ca" / "crl.der").string()}),
         std::string("deploy/certs import-crl ") + host);
  }
  {
    std::ofstream out(dir / "ready.tmp");
    out << kRecipe;
  }
  fs::rename(dir / "ready.tmp", stamp);
  return dir;
}

}  // namespace

const fs::path& Pki::cache() {
  static const fs::path dir = build_cache();
  return dir;
}

fs::path Pki::host(const std::string& name) {
  fs::path dir = tmp_ / name;
  fs::copy(cache() / name, dir, fs::copy_options::recursive);
  return dir;
}

fs::path Pki::file(const std::string& relative) { return cache() / relative; }

void export_host_pem(const fs::path& nss_db, const fs::path& dir, const std::string& name) {
  fs::create_directories(dir);
  const std::string work = (dir / ("." + name + ".export")).string();
  const std::string script =
      "set -e; umask 077; mkdir -p '" + work + "'; cd '" + work + "'; cut -d: -f2- '" + (nss_db / "password").string() +
      "' | tr -d '\\n' > pw; printf p12secret > p12; "
      "pk12util -o a.p12 -n Server-Cert -d 'sql:" + nss_db.string() + "' -k pw -w p12 >/dev/null; "
      "openssl pkcs12 -in a.p12 -passin file:p12 -clcerts -nokeys | sed -n '/BEGIN CERT/,/END CERT/p' > '" +
      (dir / (name + ".crt")).string() + "'; "
      "openssl pkcs12 -in a.p12 -passin file:p12 -nocerts -nodes | sed -n '/BEGIN PRIVATE KEY/,/END PRIVATE KEY/p' > '" +
      (dir / (name + ".key")).string() + "'; cd /; rm -rf '" + work + "'";
  auto r = run({"sh", "-c", script}, 60s);
  if (r.exit_code != 0 || fs::file_size(dir / (name + ".key")) == 0) {
    FAIL("exporting " << name << "'s certificate to PEM: " << r.output);
  }
}

}  // namespace test
