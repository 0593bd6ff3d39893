// certmap_query.cpp: the searches certmap.conf prescribes for a certificate, as typed queries, and
// the mapper that runs them (certmap_query.hpp). Subjects and issuers are hostile bytes.
#include "common/tls/certmap_query.hpp"

#include <algorithm>
#include <memory>
#include <utility>

#include "common/ascii.hpp"
#include "common/text/ldap_escape.hpp"
#include "common/tls/certmap_detail.hpp"

namespace common::tls {

namespace {

using certmap_detail::clip;

tl::unexpected<common::Error> refuse(std::string detail) {
  return common::fail(common::ErrorKind::Protocol, std::move(detail));
}

std::string section_label(const CertMapSection& s) { return "section=" + s.name; }

// DNComps and FilterComps: the base (Table 8-8) and an equality per listed attribute the subject
// has, with the subject's bytes as they are.
common::Result<CertQuery> main_query(const CertMapSection& sec, const Dn& subject) {
  CertQuery q;
  q.section = sec.name;
  q.verify_cert = sec.verify_cert;
  switch (sec.dn_comps) {
    case Comps::Absent:  // Table 8-8: "take the user's DN from the certificate as is"
      q.base = subject;
      q.subject_is_user_dn = true;
      break;
    case Comps::Empty:  // "search the entire LDAP tree (DN == suffix)"
      break;
    case Comps::List: {  // "a comma separated list of attributes to form DN", in the subject's order
      for (const auto& rdn : subject.rdns) {
        Rdn kept;
        for (const auto& ava : rdn) {
          if (std::find(sec.dn_comps_list.begin(), sec.dn_comps_list.end(), ava.type) == sec.dn_comps_list.end()) {
            continue;
          }
          if (ava.ber || ava.value.empty()) {
            return refuse("reason=unusable_value " + section_label(sec) + " attr=" + ava.type);
          }
          kept.push_back(ava);
        }
        if (!kept.empty()) q.base.rdns.push_back(std::move(kept));
      }
      for (const auto& want : sec.dn_comps_list) {
        bool found = std::any_of(q.base.rdns.begin(), q.base.rdns.end(), [&](const Rdn& r) {
          return std::any_of(r.begin(), r.end(), [&](const Ava& a) { return a.type == want; });
        });
        if (!found) return refuse("reason=missing_dn_comp " + section_label(sec) + " attr=" + want);
      }
      break;
    }
  }
  if (sec.filter_comps != Comps::List) return q;  // commented out or empty: "objectclass="
  for (const auto& comp : sec.filter_comps_list) {
    bool found = false;
    for (const auto& rdn : subject.rdns) {
      for (const auto& ava : rdn) {
        if (ava.type != comp.cert_attr) continue;
        if (ava.ber || ava.value.empty()) {
          return refuse("reason=unusable_value " + section_label(sec) + " attr=" + ava.type);
        }
        q.filter.all_of.push_back({comp.ldap_attr, ava.value});
        found = true;
      }
    }
    if (!found) return refuse("reason=missing_filter_comp " + section_label(sec) + " attr=" + comp.cert_attr);
  }
  return q;
}

}  // namespace

std::string CertFilter::to_string() const {
  if (all_of.empty()) return "(objectclass=*)";
  std::string out = all_of.size() > 1 ? "(&" : "";
  for (const auto& e : all_of) out += "(" + e.attr + "=" + text::escape_filter_value(e.value) + ")";
  if (all_of.size() > 1) out += ")";
  return out;
}

common::Result<std::vector<CertQuery>> build_cert_queries(const CertMap& map, const CertFacts& facts) {
  auto issuer = parse_dn(facts.issuer_dn);
  if (!issuer) {
    return refuse("reason=bad_issuer_dn offset=" + std::to_string(issuer.error().offset) + " " +
                  clip(issuer.error().message));
  }
  const CertMapSection& sec = map.section_for(*issuer);
  auto subject = parse_dn(facts.subject_dn);
  if (!subject) {
    return refuse("reason=bad_subject_dn " + section_label(sec) + " offset=" +
                  std::to_string(subject.error().offset) + " " + clip(subject.error().message));
  }
  if (subject->empty()) return refuse("reason=empty_subject " + section_label(sec));

  auto main = main_query(sec, *subject);
  std::vector<CertQuery> out;
  if (sec.cmap_ldap_attr.empty()) {
    if (!main) return tl::unexpected(main.error());
    out.push_back(std::move(*main));
    return out;
  }
  // CmapLdapAttr: "search the entire tree for an entry with the CmapLdapAttr attribute that
  // matches the client certificate subject" (Table 8-8), as the TLS layer wrote the subject.
  CertQuery q;
  q.filter.all_of.push_back({sec.cmap_ldap_attr, std::string(common::ascii::trim(facts.subject_dn))});
  q.verify_cert = sec.verify_cert;
  q.cmap_attr = sec.cmap_ldap_attr;
  q.section = sec.name;
  out.push_back(std::move(q));
  // The DNComps/FilterComps retry, unless it cannot be built or would list the whole tree.
  if (main && !(main->base.empty() && main->filter.matches_everything())) out.push_back(std::move(*main));
  return out;
}

namespace {

struct MapState {
  std::vector<CertQuery> queries;
  std::string der;
  CertDirectory& directory;
  std::function<void(common::Result<std::string>)> done;
  size_t next = 0;
};

void finish_entries(const std::shared_ptr<MapState>& st, const CertQuery& q,
                    std::vector<CertDirectory::Entry>& entries) {
  std::string where = "section=" + q.section;
  if (entries.size() > 1) {
    st->done(refuse("reason=ambiguous " + where + " entries=" + std::to_string(entries.size()) +
                    " filter=" + clip(q.filter.to_string())));
    return;
  }
  const auto& e = entries.front();
  if (q.verify_cert) {
    if (st->der.empty()) {
      st->done(refuse("reason=no_certificate " + where));
      return;
    }
    bool same = std::any_of(e.certificates_der.begin(), e.certificates_der.end(),
                            [&](const std::string& c) { return c == st->der; });
    if (!same) {
      st->done(refuse("reason=cert_mismatch " + where + " stored=" + std::to_string(e.certificates_der.size())));
      return;
    }
  }
  if (e.uid.empty()) {
    st->done(refuse("reason=no_uid " + where));
    return;
  }
  st->done(e.uid);
}

void run_query(const std::shared_ptr<MapState>& st) {
  const CertQuery& q = st->queries[st->next];
  auto called = std::make_shared<bool>(false);
  st->directory.search(q, [st, called](common::Result<std::vector<CertDirectory::Entry>> r) {
    if (*called) return;  // a directory that answers twice must not log anyone in twice
    *called = true;
    const CertQuery& cur = st->queries[st->next];
    if (!r) {
      st->done(tl::unexpected(std::move(r.error())));
      return;
    }
    if (r->empty()) {
      if (st->next + 1 < st->queries.size()) {
        ++st->next;
        run_query(st);
        return;
      }
      st->done(refuse("reason=no_entry section=" + cur.section + " base=" + clip(cur.base_dn()) +
                      " filter=" + clip(cur.filter.to_string())));
      return;
    }
    finish_entries(st, cur, *r);
  });
}

}  // namespace

void map_certificate(const CertMap& map, const CertFacts& facts, CertDirectory& directory,
                     std::function<void(common::Result<std::string>)> done) {
  auto queries = build_cert_queries(map, facts);
  if (!queries) {
    done(tl::unexpected(std::move(queries.error())));
    return;
  }
  auto st = std::make_shared<MapState>(MapState{std::move(*queries), facts.der, directory, std::move(done), 0});
  run_query(st);
}

}  // namespace common::tls
