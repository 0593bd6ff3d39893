// slapd.hpp: a throwaway OpenLDAP slapd for tests: mdb database in a temp dir, Postern's mail schema,
// optional TLS (a CA made here), loopback ports, and stop/pause/resume to play outages.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tests/support/process.hpp"

namespace test {

struct SlapdOptions {
  std::string suffix = "o=postern";
  bool tls = false;  // also listen on ldaps://, and offer StartTLS on ldap://
  // Extra slapd.conf lines placed before the ACLs of the database (indexes, limits).
  std::string extra_config;
  // The default ACL: rootdn writes all; "cn=authserv,<suffix>" reads all and writes userPassword
  // (rehash); "cn=reader,<suffix>" only reads; users write their own userPassword; anonymous may
  // bind. Replace with full "access to ..." lines when a test needs other rules.
  std::string acl;
};

class Slapd {
 public:
  explicit Slapd(SlapdOptions options = {});  // starts it; throws (REQUIRE) when it cannot
  ~Slapd();
  Slapd(const Slapd&) = delete;
  Slapd& operator=(const Slapd&) = delete;

  std::string url() const;        // ldap://127.0.0.1:<port>
  std::string ldaps_url() const;  // ldaps://127.0.0.1:<port>; "" without tls
  std::string ca_file() const;    // the CA that signed the server certificate; "" without tls
  std::string other_ca_file() const;  // an unrelated CA, to see verification fail
  const std::string& suffix() const { return options_.suffix; }
  std::string root_dn() const { return "cn=admin," + options_.suffix; }
  static constexpr const char* kRootPassword = "rootsecret";
  const TempDir& dir() const { return dir_; }

  // ldapadd / ldapmodify as the rootdn; the output on failure goes to the test log.
  CommandResult add(const std::string& ldif) const;
  CommandResult modify(const std::string& ldif) const;

  void stop();    // SIGTERM and wait: connections refused afterwards
  void start();   // again, same ports and database
  void pause();   // SIGSTOP: the kernel still accepts connections, nothing answers
  void resume();  // SIGCONT
  bool running() const { return process_ != nullptr; }

 private:
  void write_config();
  void make_certificates();
  CommandResult ldap_tool(const std::string& tool, const std::string& ldif) const;

  SlapdOptions options_;
  TempDir dir_;
  int port_ = 0;
  int tls_port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace test
