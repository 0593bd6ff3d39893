// received_test.cpp: the Received: header: verified facts in the TCP-info comment, RFC 3848
// keywords, folding, and client words that cannot forge a trace.
#include <catch2/catch.hpp>

#include "mta/trace/received.hpp"

using mta::trace::ReceivedFacts;
using mta::trace::received_header;

namespace {
ReceivedFacts facts() {
  ReceivedFacts f;
  f.helo = "client.example.org";
  f.client_name = "mail.example.org";
  f.client_ip = "192.0.2.7";
  f.by = "mx1.example.net";
  f.queue_id = "Q1a2b3c";
  f.when = 1796605200;  // Mon, 07 Dec 2026 01:00:00 +0000
  return f;
}
}  // namespace

TEST_CASE("Received carries the verified name and address, the protocol keyword, id and date", "[mta]") {
  auto f = facts();
  f.recipient = "alice@example.net";
  const std::string h = received_header(f);
  CHECK(h ==
        "Received: from client.example.org (mail.example.org [192.0.2.7]) by\r\n"
        "\tmx1.example.net (Postern) with ESMTP id Q1a2b3c for\r\n"
        "\t<alice@example.net>; Mon, 07 Dec 2026 01:00:00 +0000\r\n");
  f.tls_version = "TLSv1.3";
  f.tls_cipher = "TLS_AES_128_GCM_SHA256";
  f.authenticated = true;
  const std::string tls = received_header(f);
  INFO(tls);
  CHECK(tls.find("with ESMTPSA (TLSv1.3") != std::string::npos);
  CHECK(tls.find("TLS_AES_128_GCM_SHA256)") != std::string::npos);
  f.authenticated = false;
  f.esmtp = false;
  f.tls_version.clear();
  CHECK(received_header(f).find("with SMTP id") != std::string::npos);
  f.lmtp = true;
  CHECK(received_header(f).find("with LMTP id") != std::string::npos);
}

TEST_CASE("client words cannot end the comment or the field, and lines stay within 78 columns", "[mta]") {
  auto f = facts();
  f.client_name.clear();
  f.helo = "evil) by trusted.example (\r\nX-Injected: yes";
  const std::string h = received_header(f);
  INFO(h);
  CHECK(h.find("X-Injected: yes\r\n") == std::string::npos);
  CHECK(h.find("([192.0.2.7])") != std::string::npos);
  CHECK(h.find("evil?") != std::string::npos);
  size_t start = 0;
  for (size_t end = h.find("\r\n"); end != std::string::npos; start = end + 2, end = h.find("\r\n", start)) {
    CHECK(end - start <= 78);
  }
  CHECK(h.substr(h.size() - 2) == "\r\n");
}

TEST_CASE("Received without a queue id has no id clause", "[mta]") {
  auto f = facts();
  f.queue_id.clear();
  CHECK(received_header(f) ==
        "Received: from client.example.org (mail.example.org [192.0.2.7]) by\r\n"
        "\tmx1.example.net (Postern) with ESMTP; Mon, 07 Dec 2026 01:00:00 +0000\r\n");
}
