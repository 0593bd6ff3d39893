// nss_host.hpp: for tests that run TLS clients in the test process itself (smtpclient, delivery):
// NSS for the process on mta1's database (this host's certificate, the deployment CA), and mta1's
// certificate and key as PEM for python peers, which then show a certificate of our CA. Made once
// per test process; header-only, so only the tests that link common_tls use it.
#pragma once

#include <filesystem>
#include <memory>

#include <catch2/catch.hpp>

#include "common/tls/nss.hpp"
#include "tests/support/pki.hpp"

namespace test {

struct NssHost {
  Pki pki;
  std::filesystem::path db, cert_pem, key_pem;
  std::unique_ptr<common::tls::Nss> nss;
  NssHost() {
    db = pki.host("mta1");
    const auto work = pki.tmp() / "pem";
    export_host_pem(db, work, "mta1");
    cert_pem = work / "mta1.crt";
    key_pem = work / "mta1.key";
    common::tls::NssOptions o;
    o.db_dir = db.string();
    o.password_file = (db / "password").string();
    auto opened = common::tls::Nss::init(o);
    if (!opened) FAIL(opened.error().detail);
    nss = std::move(*opened);
  }
};

inline NssHost& nss_host() {
  static NssHost host;
  return host;
}

}  // namespace test
