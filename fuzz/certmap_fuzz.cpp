// certmap_fuzz.cpp: certmap.conf and DN parsers on arbitrary bytes. What parses is written back
// and reparsed (to_conf, Dn::to_string), then fixed certificates are mapped through it; the input
// is also mapped as a hostile certificate subject: every typed query must hold only non-empty
// values, write out as a well-formed filter and base DN, and its base DN must parse back equal.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/tls/certmap.hpp"

namespace {

using namespace common::tls;

bool printable(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) return false;
  }
  return true;
}

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// RFC 4515 as the mapper writes it: "(objectclass=*)", "(a=v)" or "(&(a=v)(b=w)...)", where v has
// no '(', ')' or '*' and every '\' starts \XX. A subject that broke out would fail here.
bool simple_term(std::string_view t) {
  if (t.size() < 4 || t.front() != '(' || t.back() != ')') return false;
  std::string_view body = t.substr(1, t.size() - 2);
  size_t eq = body.find('=');
  if (eq == std::string_view::npos || eq == 0) return false;
  std::string_view value = body.substr(eq + 1);
  if (value == "*") return body.substr(0, eq) == "objectclass";
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '(' || c == ')' || c == '*') return false;
    if (c == '\\') {
      if (i + 2 >= value.size() + 0 || !is_hex(value[i + 1]) || !is_hex(value[i + 2])) return false;
      i += 2;
    }
  }
  return true;
}

bool well_formed_filter(std::string_view f) {
  if (!printable(f)) return false;
  if (f.substr(0, 2) != "(&") return simple_term(f);
  if (f.back() != ')') return false;
  std::string_view rest = f.substr(2, f.size() - 3);
  size_t terms = 0;
  while (!rest.empty()) {
    size_t close = rest.find(')');
    if (close == std::string_view::npos || !simple_term(rest.substr(0, close + 1))) return false;
    rest.remove_prefix(close + 1);
    ++terms;
  }
  return terms >= 2;
}

void check_query(const CertQuery& q) {
  for (const auto& e : q.filter.all_of) {
    if (e.attr.empty() || e.value.empty()) std::abort();
  }
  if (!well_formed_filter(q.filter.to_string())) std::abort();
  const std::string base = q.base_dn();
  if (!printable(base)) std::abort();
  auto back = parse_dn(base);
  if (!back || !(*back == q.base)) std::abort();  // what an LDAP server gets names the same entry
}

// Answers every search at once with one entry holding the presented certificate, or with none.
class OneEntryDirectory : public CertDirectory {
 public:
  explicit OneEntryDirectory(bool empty) : empty_(empty) {}
  void search(const CertQuery& q, std::function<void(common::Result<std::vector<Entry>>)> done) override {
    check_query(q);
    std::vector<Entry> entries;
    if (!empty_) entries.push_back({q.base_dn(), "user", {"DER"}});
    done(std::move(entries));
  }

 private:
  bool empty_;
};

void map_all(const CertMap& map, const CertFacts& facts) {
  auto queries = build_cert_queries(map, facts);
  if (queries) {
    if (queries->empty() || queries->size() > 2) std::abort();
    for (const auto& q : *queries) {
      check_query(q);
    }
  } else if (!printable(queries.error().detail)) {
    std::abort();  // details go to logs
  }
  for (bool empty : {false, true}) {
    OneEntryDirectory dir(empty);
    int calls = 0;
    map_certificate(map, facts, dir, [&](common::Result<std::string> r) {
      ++calls;
      if (!r && !printable(r.error().detail)) std::abort();
    });
    if (calls != 1) std::abort();  // this directory answers at once: exactly one result
  }
}

const CertMap& hostile_subject_map() {
  static const CertMap map = [] {
    auto r = parse_certmap(
        "certmap default default\ndefault:DNComps ou, o, c\ndefault:FilterComps cn=uid, e=mail, uid\n"
        "certmap cmap CN=CA\ncmap:CmapLdapAttr certSubjectDN\ncmap:FilterComps e\ncmap:verifycert on\n");
    if (!r) std::abort();
    return std::move(*r);
  }();
  return map;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  CertMapLimits limits;
  limits.max_line = 512;
  limits.max_sections = 16;

  // As certmap.conf: any split gives the same result, and what parses writes back the same.
  auto whole = parse_certmap(text, "fuzz", limits);
  if (size <= 4096) {
    CertMapParser bytewise("fuzz", limits);
    for (char c : text) bytewise.feed(std::string_view(&c, 1));
    auto split = bytewise.finish();
    if (split.has_value() != whole.has_value()) std::abort();
    if (whole && split->to_conf() != whole->to_conf()) std::abort();
    if (!whole) {
      if (split.error().size() != whole.error().size()) std::abort();
      for (size_t i = 0; i < whole.error().size(); ++i) {
        if (split.error()[i].to_string() != whole.error()[i].to_string()) std::abort();
      }
    }
  }
  if (whole) {
    std::string conf = whole->to_conf();
    auto again = parse_certmap(conf, "again", limits);
    if (!again || again->to_conf() != conf) std::abort();
    map_all(*whole, {"CN=CA", "E=alice@example.com,UID=alice,CN=Alice,OU=People,O=Example,C=US", "DER"});
    map_all(*whole, {"O=Other", "CN=*)(uid=*\\00,E=x@y", "DER"});
  }

  // As a DN: the canonical form is printable and parses back equal.
  auto dn = parse_dn(text);
  if (dn) {
    std::string s = dn->to_string();
    if (!printable(s)) std::abort();
    auto back = parse_dn(s, DnLimits{1 << 20, 1 << 20, 1 << 20, 1 << 20});
    if (!back || !dn_equal(*dn, *back) || back->to_string() != s) std::abort();
  }

  // As a hostile subject (and issuer) under a fixed map.
  map_all(hostile_subject_map(), {"CN=CA", std::string(text), "DER"});
  map_all(hostile_subject_map(), {std::string(text), "E=a@b,OU=x,O=y,C=z", "DER"});
  map_all(CertMap::builtin_default(), {"CN=CA", std::string(text), ""});
  return 0;
}
