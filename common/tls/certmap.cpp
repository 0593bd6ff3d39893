// certmap.cpp: DN parsing and comparison, the certmap.conf parser, and certificate -> query -> uid
// mapping. Subjects and issuers come from client certificates: every byte of them is hostile.
#include "common/ascii.hpp"
#include "common/tls/certmap.hpp"

#include <algorithm>
#include <array>
#include <memory>
#include <utility>

namespace common::tls {

namespace {

using common::ascii::lower;
using common::ascii::lowered;
using common::ascii::iequals;
using common::ascii::is_digit;
using common::ascii::is_alpha;
using common::ascii::is_hex;

constexpr char kHex[] = "0123456789abcdef";
constexpr std::string_view kMatchAll = "(objectclass=*)";
constexpr size_t kMaxDetail = 160;  // client-derived text in error details (CONVENTIONS: logs)




int hex_value(char c) { return is_digit(c) ? c - '0' : lower(c) - 'a' + 10; }
bool is_blank(char c) { return c == ' ' || c == '\t'; }

void append_hex(std::string& out, unsigned char u) {
  out += '\\';
  out += kHex[u >> 4];
  out += kHex[u & 15];
}

// A byte named for a message without echoing hostile bytes: 'x' when printable, else its hex.
std::string describe_byte(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u >= 0x21 && u < 0x7f) return std::string("'") + c + "'";
  std::string s = "byte 0x";
  s += kHex[u >> 4];
  s += kHex[u & 15];
  return s;
}

std::string clip(std::string_view s) {
  if (s.size() <= kMaxDetail) return std::string(s);
  return std::string(s.substr(0, kMaxDetail)) + "...";
}

// ---- attribute types

struct TypeAlias {
  std::string_view name;       // lowercase
  std::string_view canonical;
};

// Names NSS (CERT_NameToAscii), OpenSSL and the LDAP schemas use for the attributes of X.509
// names, and their OIDs. The e-mail forms all fold to mail, as 389-ds does for certmap.
constexpr std::array kAliases = {
    TypeAlias{"cn", "cn"}, TypeAlias{"commonname", "cn"}, TypeAlias{"2.5.4.3", "cn"}, TypeAlias{"sn", "sn"},
    TypeAlias{"surname", "sn"}, TypeAlias{"2.5.4.4", "sn"}, TypeAlias{"serialnumber", "serialnumber"},
    TypeAlias{"2.5.4.5", "serialnumber"}, TypeAlias{"c", "c"}, TypeAlias{"countryname", "c"},
    TypeAlias{"2.5.4.6", "c"}, TypeAlias{"l", "l"}, TypeAlias{"localityname", "l"}, TypeAlias{"2.5.4.7", "l"},
    TypeAlias{"st", "st"}, TypeAlias{"s", "st"}, TypeAlias{"stateorprovincename", "st"},
    TypeAlias{"2.5.4.8", "st"}, TypeAlias{"street", "street"}, TypeAlias{"streetaddress", "street"},
    TypeAlias{"2.5.4.9", "street"}, TypeAlias{"o", "o"}, TypeAlias{"organizationname", "o"},
    TypeAlias{"2.5.4.10", "o"}, TypeAlias{"ou", "ou"}, TypeAlias{"organizationalunitname", "ou"},
    TypeAlias{"2.5.4.11", "ou"}, TypeAlias{"title", "title"}, TypeAlias{"2.5.4.12", "title"},
    TypeAlias{"businesscategory", "businesscategory"}, TypeAlias{"2.5.4.15", "businesscategory"},
    TypeAlias{"postalcode", "postalcode"}, TypeAlias{"2.5.4.17", "postalcode"},
    TypeAlias{"givenname", "givenname"}, TypeAlias{"gn", "givenname"}, TypeAlias{"2.5.4.42", "givenname"},
    TypeAlias{"initials", "initials"}, TypeAlias{"2.5.4.43", "initials"},
    TypeAlias{"generationqualifier", "generationqualifier"}, TypeAlias{"2.5.4.44", "generationqualifier"},
    TypeAlias{"dnqualifier", "dnqualifier"}, TypeAlias{"2.5.4.46", "dnqualifier"},
    TypeAlias{"pseudonym", "pseudonym"}, TypeAlias{"2.5.4.65", "pseudonym"}, TypeAlias{"uid", "uid"},
    TypeAlias{"userid", "uid"}, TypeAlias{"0.9.2342.19200300.100.1.1", "uid"}, TypeAlias{"dc", "dc"},
    TypeAlias{"domaincomponent", "dc"}, TypeAlias{"0.9.2342.19200300.100.1.25", "dc"},
    TypeAlias{"mail", "mail"}, TypeAlias{"rfc822mailbox", "mail"},
    TypeAlias{"0.9.2342.19200300.100.1.3", "mail"}, TypeAlias{"e", "mail"}, TypeAlias{"email", "mail"},
    TypeAlias{"emailaddress", "mail"}, TypeAlias{"1.2.840.113549.1.9.1", "mail"},
};

bool has_oid_prefix(std::string_view s) {
  return s.size() > 4 && iequals(s.substr(0, 4), "oid.") && is_digit(s[4]);
}

// numericoid (RFC 4512 §1.4): number 1*( "." number ), no leading zeros.
bool is_numericoid(std::string_view s) {
  size_t dots = 0, digits = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '.') {
      if (digits == 0) return false;
      ++dots;
      digits = 0;
    } else if (is_digit(c)) {
      if (digits == 1 && s[i - 1] == '0') return false;
      ++digits;
    } else {
      return false;
    }
  }
  return digits > 0 && dots > 0;
}

// descr (RFC 4512 §1.4): ALPHA *( ALPHA / DIGIT / "-" ).
bool is_descr(std::string_view s) {
  if (s.empty() || !is_alpha(s[0])) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_alpha(c) || is_digit(c) || c == '-'; });
}

bool is_attr_name(std::string_view s) {
  if (has_oid_prefix(s)) s.remove_prefix(4);
  return is_descr(s) || is_numericoid(s);
}

// ---- DN reading

bool dn_special(char c) {
  return c == ',' || c == '+' || c == '"' || c == '\\' || c == '<' || c == '>' || c == ';' || c == ' ' ||
         c == '#' || c == '=';
}

bool ends_rdn(char c) { return c == ',' || c == ';' || c == '+'; }

// One X.509 DirectoryString in BER (tag, length, content): the text for the character-string types.
std::optional<std::string> ber_string(std::string_view ber) {
  if (ber.size() < 2) return std::nullopt;
  auto tag = static_cast<unsigned char>(ber[0]);
  if (tag != 0x0c && tag != 0x13 && tag != 0x14 && tag != 0x16 && tag != 0x1a) return std::nullopt;
  auto first = static_cast<unsigned char>(ber[1]);
  size_t len = 0, head = 2;
  if (first < 0x80) {
    len = first;
  } else {
    size_t n = first & 0x7f;
    if (n == 0 || n > 4 || ber.size() < 2 + n) return std::nullopt;
    for (size_t k = 0; k < n; ++k) len = (len << 8) | static_cast<unsigned char>(ber[2 + k]);
    head = 2 + n;
  }
  if (ber.size() - head != len) return std::nullopt;
  return std::string(ber.substr(head));
}

class DnReader {
 public:
  DnReader(std::string_view s, const DnLimits& limits) : s_(s), limits_(limits) {}

  tl::expected<Dn, DnError> read() {
    if (s_.size() > limits_.max_length) {
      return fail(limits_.max_length, "DN longer than " + std::to_string(limits_.max_length) + " bytes");
    }
    Dn dn;
    skip_blanks();
    if (i_ == s_.size()) return dn;  // "" is the empty (root) DN
    for (;;) {
      Rdn rdn;
      for (;;) {
        skip_blanks();
        auto type = read_type();
        if (!type) return tl::unexpected(err_);
        skip_blanks();
        if (i_ == s_.size() || s_[i_] != '=') return fail(i_, "expected '=' after the attribute type");
        ++i_;
        skip_blanks();
        Ava ava;
        ava.type = std::move(*type);
        if (!read_value(ava)) return tl::unexpected(err_);
        rdn.push_back(std::move(ava));
        if (rdn.size() > limits_.max_avas) {
          return fail(i_, "more than " + std::to_string(limits_.max_avas) + " values in one RDN");
        }
        if (i_ < s_.size() && s_[i_] == '+') {
          ++i_;
          continue;
        }
        break;
      }
      dn.rdns.push_back(std::move(rdn));
      if (dn.rdns.size() > limits_.max_rdns) {
        return fail(i_, "more than " + std::to_string(limits_.max_rdns) + " RDNs");
      }
      if (i_ == s_.size()) return dn;
      ++i_;  // ',' or ';' (read_value stops only there, at '+' or at the end)
      skip_blanks();
      if (i_ == s_.size()) return fail(i_, "empty RDN after the last separator");
    }
  }

 private:
  tl::unexpected<DnError> fail(size_t at, std::string message) {
    err_ = DnError{at, std::move(message)};
    return tl::unexpected(err_);
  }
  bool set_err(size_t at, std::string message) {
    err_ = DnError{at, std::move(message)};
    return false;
  }

  void skip_blanks() {
    while (i_ < s_.size() && s_[i_] == ' ') ++i_;
  }

  std::optional<std::string> read_type() {
    size_t start = i_;
    while (i_ < s_.size() && (is_alpha(s_[i_]) || is_digit(s_[i_]) || s_[i_] == '-' || s_[i_] == '.')) ++i_;
    std::string_view t = s_.substr(start, i_ - start);
    if (t.empty()) {
      if (i_ == s_.size()) {
        set_err(i_, "expected an attribute type at the end of the DN");
      } else {
        set_err(i_, "expected an attribute type, found " + describe_byte(s_[i_]));
      }
      return std::nullopt;
    }
    if (t.size() > limits_.max_type) {
      set_err(start, "attribute type longer than " + std::to_string(limits_.max_type) + " bytes");
      return std::nullopt;
    }
    if (!is_attr_name(t)) {
      set_err(start, "invalid attribute type (a name like cn or an OID like 2.5.4.3)");
      return std::nullopt;
    }
    return canonical_attr_type(t);
  }

  // After a quoted or hex value only blanks may come before the separator.
  bool expect_value_end() {
    skip_blanks();
    if (i_ < s_.size() && !ends_rdn(s_[i_])) {
      return set_err(i_, "unexpected " + describe_byte(s_[i_]) + " after the value");
    }
    return true;
  }

  // "\" followed by a special character or two hex digits; appends the byte.
  bool read_escape(std::string& out) {
    size_t at = i_;
    ++i_;
    if (i_ == s_.size()) return set_err(at, "'\\' at the end of the DN");
    char c = s_[i_];
    if (is_hex(c)) {
      if (i_ + 1 >= s_.size() || !is_hex(s_[i_ + 1])) return set_err(at, "'\\' needs two hex digits here");
      out += static_cast<char>(hex_value(c) * 16 + hex_value(s_[i_ + 1]));
      i_ += 2;
      return true;
    }
    if (!dn_special(c)) return set_err(at, "invalid escape '\\' + " + describe_byte(c));
    out += c;
    ++i_;
    return true;
  }

  bool read_value(Ava& ava) {
    if (i_ < s_.size() && s_[i_] == '#') return read_hex(ava);
    if (i_ < s_.size() && s_[i_] == '"') return read_quoted(ava);
    std::string& v = ava.value;
    size_t keep = 0;  // unescaped trailing blanks are not part of the value
    while (i_ < s_.size() && !ends_rdn(s_[i_])) {
      char c = s_[i_];
      if (c == '\\') {
        if (!read_escape(v)) return false;
        keep = v.size();
        continue;
      }
      if (c == '\0') return set_err(i_, "NUL byte in a value (write it as \\00)");
      if (c == '"' || c == '<' || c == '>') return set_err(i_, "unescaped " + describe_byte(c) + " in a value");
      v += c;
      if (c != ' ') keep = v.size();
      ++i_;
    }
    v.resize(keep);
    return true;
  }

  bool read_quoted(Ava& ava) {
    size_t open = i_++;
    for (;;) {
      if (i_ == s_.size()) return set_err(open, "unterminated quoted value");
      char c = s_[i_];
      if (c == '"') {
        ++i_;
        break;
      }
      if (c == '\\') {
        if (!read_escape(ava.value)) return false;
        continue;
      }
      if (c == '\0') return set_err(i_, "NUL byte in a value (write it as \\00)");
      ava.value += c;
      ++i_;
    }
    return expect_value_end();
  }

  bool read_hex(Ava& ava) {
    size_t start = ++i_;
    std::string bytes;
    while (i_ < s_.size() && is_hex(s_[i_])) {
      if (i_ + 1 >= s_.size() || !is_hex(s_[i_ + 1])) return set_err(i_, "odd number of hex digits after '#'");
      bytes += static_cast<char>(hex_value(s_[i_]) * 16 + hex_value(s_[i_ + 1]));
      i_ += 2;
    }
    if (i_ == start) return set_err(start, "'#' must be followed by hex digits (BER)");
    if (auto text = ber_string(bytes)) {
      ava.value = std::move(*text);
    } else {
      ava.value = std::move(bytes);
      ava.ber = true;
    }
    return expect_value_end();
  }

  std::string_view s_;
  const DnLimits& limits_;
  size_t i_ = 0;
  DnError err_;
};

// caseIgnore-style key: ASCII case folded, blanks trimmed, inner runs of blanks as one.
std::string value_key(const Ava& a) {
  if (a.ber) return "#" + a.value;
  std::string out = "=";
  bool pending = false;
  for (char c : a.value) {
    if (c == ' ') {
      pending = out.size() > 1;
      continue;
    }
    if (pending) out += ' ';
    pending = false;
    out += lower(c);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> rdn_key(const Rdn& r) {
  std::vector<std::pair<std::string, std::string>> k;
  k.reserve(r.size());
  for (const auto& a : r) k.emplace_back(a.type, value_key(a));
  std::sort(k.begin(), k.end());
  return k;
}

// ---- certmap.conf properties

enum class Prop : uint8_t { DnComps, FilterComps, VerifyCert, CmapLdapAttr, Plugin, Unknown };

Prop property_kind(std::string_view name) {
  if (iequals(name, "DNComps")) return Prop::DnComps;
  if (iequals(name, "FilterComps")) return Prop::FilterComps;
  if (iequals(name, "VerifyCert")) return Prop::VerifyCert;
  if (iequals(name, "CmapLdapAttr")) return Prop::CmapLdapAttr;
  if (iequals(name, "library") || iequals(name, "InitFn")) return Prop::Plugin;
  return Prop::Unknown;
}

std::string property_message(Prop kind, std::string_view name) {
  if (kind == Prop::Plugin) {
    return "certmap plugins are not supported: Postern loads no mapping code ('" + std::string(name) +
           "'); map with DNComps, FilterComps, CmapLdapAttr and VerifyCert";
  }
  return "unknown property '" + clip(name) + "' (known: DNComps, FilterComps, VerifyCert, CmapLdapAttr)";
}

// A value in double quotes ("e=mail", the msconfig spelling) is unquoted; `shift` is the quote.
tl::expected<std::string_view, PropertyError> unquote(std::string_view v, size_t& shift) {
  shift = 0;
  if (v.empty() || v.front() != '"') return v;
  if (v.size() < 2 || v.back() != '"') return tl::unexpected(PropertyError{0, "unterminated quoted value"});
  shift = 1;
  return v.substr(1, v.size() - 2);
}

struct CompItem {
  std::string cert_attr;  // canonical
  std::string ldap_attr;
};

tl::expected<std::vector<CompItem>, PropertyError> parse_comps(std::string_view v, size_t shift, bool renames,
                                                               const CertMapLimits& limits) {
  std::vector<CompItem> out;
  auto is_sep = [](char c) { return c == ',' || is_blank(c); };
  auto is_name_char = [](char c) { return is_alpha(c) || is_digit(c) || c == '-' || c == '.'; };
  auto err = [&](size_t at, std::string m) { return tl::unexpected(PropertyError{shift + at, std::move(m)}); };
  size_t i = 0;
  auto read_name = [&](std::string_view what) -> tl::expected<std::string_view, PropertyError> {
    size_t start = i;
    while (i < v.size() && is_name_char(v[i])) ++i;
    std::string_view name = v.substr(start, i - start);
    if (name.empty()) {
      if (i == v.size()) return err(i, "expected " + std::string(what) + " at the end of the value");
      return err(i, "expected " + std::string(what) + ", found " + describe_byte(v[i]));
    }
    if (name.size() > limits.max_name) return err(start, "attribute name too long");
    if (!is_attr_name(name)) return err(start, "invalid attribute name '" + clip(name) + "'");
    return name;
  };
  for (;;) {
    while (i < v.size() && is_sep(v[i])) ++i;
    if (i == v.size()) break;
    size_t item = i;
    auto cert = read_name("an attribute name");
    if (!cert) return tl::unexpected(cert.error());
    size_t after = i;  // just past the name
    size_t j = i;
    while (j < v.size() && is_blank(v[j])) ++j;
    CompItem c;
    c.cert_attr = canonical_attr_type(*cert);
    c.ldap_attr = c.cert_attr;
    if (j < v.size() && v[j] == '=') {
      if (!renames) return err(j, "DNComps takes attribute names only ('a=b' is for FilterComps)");
      i = j + 1;
      while (i < v.size() && is_blank(v[i])) ++i;
      auto ldap = read_name("an LDAP attribute name after '='");
      if (!ldap) return tl::unexpected(ldap.error());
      c.ldap_attr = std::string(*ldap);
      if (i < v.size() && !is_sep(v[i])) {
        return err(i, "unexpected " + describe_byte(v[i]) + " in the attribute list");
      }
    } else if (after < v.size() && !is_sep(v[after])) {
      return err(after, "unexpected " + describe_byte(v[after]) + " in the attribute list");
    }
    bool dup = std::any_of(out.begin(), out.end(), [&](const CompItem& o) {
      return o.cert_attr == c.cert_attr && iequals(o.ldap_attr, c.ldap_attr);
    });
    if (!dup) out.push_back(std::move(c));
    if (out.size() > limits.max_comps) {
      return err(item, "more than " + std::to_string(limits.max_comps) + " attributes in the list");
    }
  }
  if (out.empty()) return err(0, "no attribute names (leave the value out for an empty list)");
  return out;
}

std::string section_label(const CertMapSection& s) { return "section=" + s.name; }

std::string comps_text(const CertMapSection& s, bool filter) {
  std::string out;
  if (filter) {
    for (const auto& c : s.filter_comps_list) {
      if (!out.empty()) out += ", ";
      out += c.cert_attr;
      if (c.ldap_attr != c.cert_attr) out += "=" + c.ldap_attr;
    }
  } else {
    for (const auto& c : s.dn_comps_list) {
      if (!out.empty()) out += ", ";
      out += c;
    }
  }
  return out;
}

// ---- queries

tl::unexpected<common::Error> refuse(std::string detail) {
  return common::fail(common::ErrorKind::Protocol, std::move(detail));
}

common::Result<CertQuery> main_query(const CertMapSection& sec, const Dn& subject) {
  CertQuery q;
  q.section = sec.name;
  q.verify_cert = sec.verify_cert;
  switch (sec.dn_comps) {
    case Comps::Absent:  // Table 8-8: "take the user's DN from the certificate as is"
      q.base_dn = subject.to_string();
      q.subject_is_user_dn = true;
      break;
    case Comps::Empty:  // "search the entire LDAP tree (DN == suffix)"
      break;
    case Comps::List: {  // "a comma separated list of attributes to form DN", in the subject's order
      Dn base;
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
        if (!kept.empty()) base.rdns.push_back(std::move(kept));
      }
      for (const auto& want : sec.dn_comps_list) {
        bool found = std::any_of(base.rdns.begin(), base.rdns.end(), [&](const Rdn& r) {
          return std::any_of(r.begin(), r.end(), [&](const Ava& a) { return a.type == want; });
        });
        if (!found) return refuse("reason=missing_dn_comp " + section_label(sec) + " attr=" + want);
      }
      q.base_dn = base.to_string();
      break;
    }
  }
  if (sec.filter_comps != Comps::List) {  // commented out or empty: "objectclass="
    q.filter = std::string(kMatchAll);
    return q;
  }
  std::vector<std::string> terms;
  for (const auto& comp : sec.filter_comps_list) {
    bool found = false;
    for (const auto& rdn : subject.rdns) {
      for (const auto& ava : rdn) {
        if (ava.type != comp.cert_attr) continue;
        if (ava.ber || ava.value.empty()) {
          return refuse("reason=unusable_value " + section_label(sec) + " attr=" + ava.type);
        }
        terms.push_back("(" + comp.ldap_attr + "=" + escape_filter_value(ava.value) + ")");
        found = true;
      }
    }
    if (!found) return refuse("reason=missing_filter_comp " + section_label(sec) + " attr=" + comp.cert_attr);
  }
  if (terms.size() == 1) {
    q.filter = std::move(terms.front());
  } else {
    q.filter = "(&";
    for (const auto& t : terms) q.filter += t;
    q.filter += ")";
  }
  return q;
}

std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// DNs

std::string canonical_attr_type(std::string_view type) {
  if (has_oid_prefix(type)) type.remove_prefix(4);
  std::string l = lowered(type);
  for (const auto& a : kAliases) {
    if (a.name == l) return std::string(a.canonical);
  }
  return l;
}

std::string escape_filter_value(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (char c : bytes) {
    auto u = static_cast<unsigned char>(c);
    if (c == '*' || c == '(' || c == ')' || c == '\\' || u < 0x20 || u >= 0x7f) {
      append_hex(out, u);
    } else {
      out += c;
    }
  }
  return out;
}

std::string escape_dn_value(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t k = 0; k < bytes.size(); ++k) {
    char c = bytes[k];
    auto u = static_cast<unsigned char>(c);
    bool edge_space = c == ' ' && (k == 0 || k + 1 == bytes.size());
    if (u < 0x20 || u >= 0x7f || edge_space) {
      append_hex(out, u);  // \20 at the edges survives config-line trimming
    } else if (c == ',' || c == '+' || c == '"' || c == '\\' || c == '<' || c == '>' || c == ';' ||
               (c == '#' && k == 0)) {
      out += '\\';
      out += c;
    } else {
      out += c;
    }
  }
  return out;
}

std::string Dn::to_string() const {
  std::string out;
  for (size_t r = 0; r < rdns.size(); ++r) {
    if (r) out += ',';
    for (size_t a = 0; a < rdns[r].size(); ++a) {
      const Ava& ava = rdns[r][a];
      if (a) out += '+';
      out += ava.type;
      out += '=';
      if (ava.ber) {
        out += '#';
        for (char c : ava.value) {
          out += kHex[static_cast<unsigned char>(c) >> 4];
          out += kHex[static_cast<unsigned char>(c) & 15];
        }
      } else {
        out += escape_dn_value(ava.value);
      }
    }
  }
  return out;
}

tl::expected<Dn, DnError> parse_dn(std::string_view text, const DnLimits& limits) {
  return DnReader(text, limits).read();
}

bool dn_equal(const Dn& a, const Dn& b) {
  if (a.rdns.size() != b.rdns.size()) return false;
  for (size_t i = 0; i < a.rdns.size(); ++i) {
    if (a.rdns[i].size() != b.rdns[i].size()) return false;
    if (rdn_key(a.rdns[i]) != rdn_key(b.rdns[i])) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// certmap.conf

bool CertMapSection::is_default() const { return iequals(name, "default"); }

std::string CertMapDiagnostic::to_string() const {
  return source + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

common::Error to_error(const CertMapErrors& errors) {
  std::string detail;
  for (const auto& e : errors) {
    if (!detail.empty()) detail += "; ";
    detail += e.to_string();
  }
  return common::Error{common::ErrorKind::Config, std::move(detail)};
}

tl::expected<void, PropertyError> set_property(CertMapSection& section, std::string_view property,
                                               std::string_view value, const CertMapLimits& limits) {
  Prop kind = property_kind(property);
  if (kind == Prop::Plugin || kind == Prop::Unknown) {
    return tl::unexpected(PropertyError{0, property_message(kind, property)});
  }
  size_t shift = 0;
  auto v = unquote(value, shift);
  if (!v) return tl::unexpected(v.error());
  switch (kind) {
    case Prop::DnComps:
    case Prop::FilterComps: {
      bool filter = kind == Prop::FilterComps;
      Comps state = Comps::Empty;
      std::vector<CompItem> items;
      if (!v->empty()) {
        auto parsed = parse_comps(*v, shift, filter, limits);
        if (!parsed) return tl::unexpected(parsed.error());
        items = std::move(*parsed);
        state = Comps::List;
      }
      if (filter) {
        section.filter_comps = state;
        section.filter_comps_list.clear();
        for (auto& c : items) section.filter_comps_list.push_back({std::move(c.cert_attr), std::move(c.ldap_attr)});
      } else {
        section.dn_comps = state;
        section.dn_comps_list.clear();
        for (auto& c : items) section.dn_comps_list.push_back(std::move(c.cert_attr));
      }
      return {};
    }
    case Prop::VerifyCert:
      if (v->empty() || iequals(*v, "on")) {
        section.verify_cert = true;  // empty: on (389-ds process_certinfo, mail/news compatibility)
      } else if (iequals(*v, "off")) {
        section.verify_cert = false;
      } else {
        return tl::unexpected(PropertyError{shift, "VerifyCert takes 'on' or 'off'"});
      }
      return {};
    case Prop::CmapLdapAttr:
      if (v->size() > limits.max_name) return tl::unexpected(PropertyError{shift, "attribute name too long"});
      if (!v->empty() && !is_attr_name(*v)) {
        return tl::unexpected(PropertyError{shift, "CmapLdapAttr takes one LDAP attribute name"});
      }
      section.cmap_ldap_attr = std::string(*v);  // empty: not set ("If not empty", Table 8-8)
      return {};
    case Prop::Plugin:
    case Prop::Unknown:
      break;
  }
  return {};
}

namespace {

bool valid_section_name(std::string_view name, const CertMapLimits& limits) {
  if (name.empty() || name.size() > limits.max_name) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return is_alpha(c) || is_digit(c) || c == '-' || c == '_' || c == '.'; });
}

// The checks beyond syntax, shared by CertMap::build and the parser. Canonicalises the attribute
// lists of sections built in code. Returns the default section's index when there were no errors.
std::optional<size_t> check_sections(std::vector<CertMapSection>& sections, std::string_view source,
                                     const CertMapLimits& limits, uint32_t eof_line, CertMapErrors& errors,
                                     size_t& count) {
  auto error = [&](const CertMapSection* s, std::string m) {
    ++count;
    if (errors.size() < limits.max_errors) {
      uint32_t line = s ? s->line : eof_line;
      uint32_t column = s ? s->column : (eof_line ? 1u : 0u);
      errors.push_back({std::string(source), line, column, std::move(m)});
    }
  };
  if (sections.size() > limits.max_sections) {
    error(nullptr, "more than " + std::to_string(limits.max_sections) + " sections");
  }
  std::optional<size_t> def;
  for (size_t i = 0; i < sections.size(); ++i) {
    auto& s = sections[i];
    if (!valid_section_name(s.name, limits)) {
      error(&s, "invalid section name '" + clip(s.name) + "' (letters, digits, - _ .)");
      continue;
    }
    if (s.is_default()) {
      if (s.issuer) error(&s, "the default section's issuer must be the word 'default'");
      if (!def) def = i;
    } else if (!s.issuer || s.issuer->empty()) {
      error(&s, "section '" + s.name + "' has no issuer DN");
    }
    for (size_t j = 0; j < i; ++j) {
      if (iequals(sections[j].name, s.name)) {
        error(&s, "section '" + s.name + "' declared twice");
      } else if (s.issuer && sections[j].issuer && dn_equal(*s.issuer, *sections[j].issuer)) {
        error(&s, "sections '" + sections[j].name + "' and '" + s.name + "' map the same issuer DN");
      }
    }
    bool bad_list = (s.dn_comps == Comps::List) == s.dn_comps_list.empty() ||
                    (s.filter_comps == Comps::List) == s.filter_comps_list.empty();
    for (auto& t : s.dn_comps_list) {
      bad_list = bad_list || !is_attr_name(t);
      t = canonical_attr_type(t);
    }
    for (auto& c : s.filter_comps_list) {
      bad_list = bad_list || !is_attr_name(c.cert_attr) || !is_attr_name(c.ldap_attr);
      c.cert_attr = canonical_attr_type(c.cert_attr);
    }
    if (bad_list) error(&s, "section '" + s.name + "': a List needs attribute names, Absent and Empty none");
    if (!s.cmap_ldap_attr.empty() && !is_attr_name(s.cmap_ldap_attr)) {
      error(&s, "section '" + s.name + "': CmapLdapAttr is not an attribute name");
    }
    if (s.dn_comps == Comps::Empty && s.filter_comps != Comps::List && s.cmap_ldap_attr.empty()) {
      error(&s, "section '" + s.name +
                    "' searches the whole tree with no filter, so every entry matches and no one can map: "
                    "set FilterComps (e.g. e=mail) or CmapLdapAttr");
    }
  }
  if (!def && sections.size() <= limits.max_sections) {
    error(nullptr, "no default section: add the line 'certmap default default'");
  }
  if (count == 0) return def;
  if (count > errors.size()) {
    errors.push_back({std::string(source), 0, 0, std::to_string(count - errors.size()) + " more errors not shown"});
  }
  return std::nullopt;
}

}  // namespace

CertMap CertMap::builtin_default() {
  CertMap m;
  CertMapSection s;
  s.name = "default";
  s.issuer_text = "default";
  s.dn_comps = Comps::Empty;
  s.filter_comps = Comps::List;
  s.filter_comps_list.push_back({"mail", "mail"});
  m.sections_.push_back(std::move(s));
  return m;
}

CertMapResult<CertMap> CertMap::build(std::vector<CertMapSection> sections, std::string_view source,
                                      const CertMapLimits& limits) {
  CertMapErrors errors;
  size_t count = 0;
  auto def = check_sections(sections, source, limits, 0, errors, count);
  if (!def) return tl::unexpected(std::move(errors));
  CertMap m;
  m.sections_ = std::move(sections);
  m.default_index_ = *def;
  return m;
}

const CertMapSection& CertMap::section_for(const Dn& issuer) const {
  for (const auto& s : sections_) {
    if (s.issuer && dn_equal(*s.issuer, issuer)) return s;
  }
  return default_section();
}

std::string CertMap::to_conf() const {
  std::string out;
  for (const auto& s : sections_) {
    out += "certmap " + s.name + " " + (s.issuer ? s.issuer->to_string() : std::string("default")) + "\n";
    if (s.dn_comps != Comps::Absent) {
      out += s.name + ":DNComps";
      if (s.dn_comps == Comps::List) out += " " + comps_text(s, false);
      out += "\n";
    }
    if (s.filter_comps != Comps::Absent) {
      out += s.name + ":FilterComps";
      if (s.filter_comps == Comps::List) out += " " + comps_text(s, true);
      out += "\n";
    }
    if (s.verify_cert) out += s.name + ":VerifyCert on\n";
    if (!s.cmap_ldap_attr.empty()) out += s.name + ":CmapLdapAttr " + s.cmap_ldap_attr + "\n";
  }
  return out;
}

CertMapParser::CertMapParser(std::string source, CertMapLimits limits)
    : source_(std::move(source)), limits_(limits) {}

void CertMapParser::error(uint32_t column, std::string message) {
  ++error_count_;
  if (errors_.size() < limits_.max_errors) errors_.push_back({source_, line_, column, std::move(message)});
}

void CertMapParser::feed(std::string_view bytes) {
  while (!bytes.empty()) {
    size_t nl = bytes.find('\n');
    std::string_view part = bytes.substr(0, nl);
    if (!overflow_) {
      if (part.size() > limits_.max_line - line_buf_.size()) {
        overflow_ = true;  // report once, keep nothing of it, resync at the next LF
        line_buf_.clear();
        error(static_cast<uint32_t>(limits_.max_line + 1),
              "line longer than " + std::to_string(limits_.max_line) + " bytes (skipped)");
      } else {
        line_buf_.append(part);
      }
    }
    if (nl == std::string_view::npos) return;
    end_line();
    bytes.remove_prefix(nl + 1);
  }
}

void CertMapParser::end_line() {
  if (!overflow_) {
    std::string_view line = line_buf_;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    bool bom = line_ == 1 && line.substr(0, 3) == "\xEF\xBB\xBF";
    if (bom) line.remove_prefix(3);
    size_t before = errors_.size();
    parse_line(line);
    // Columns count bytes of the physical line, BOM included.
    for (size_t k = before; bom && k < errors_.size(); ++k) errors_[k].column += 3;
  }
  line_buf_.clear();
  overflow_ = false;
  ++line_;
}

CertMapSection* CertMapParser::find_section(std::string_view name) {
  for (auto& s : sections_) {
    if (iequals(s.name, name)) return &s;
  }
  return nullptr;
}

void CertMapParser::parse_line(std::string_view line) {
  auto col = [](size_t index) { return static_cast<uint32_t>(index + 1); };
  for (size_t k = 0; k < line.size(); ++k) {
    auto u = static_cast<unsigned char>(line[k]);
    if ((u < 0x20 && line[k] != '\t') || u == 0x7f) {
      error(col(k), "control " + describe_byte(line[k]) + " in the line");
      return;
    }
  }
  size_t i = 0;
  while (i < line.size() && is_blank(line[i])) ++i;
  if (i == line.size() || line[i] == '#') return;
  size_t end = line.size();
  while (end > i && is_blank(line[end - 1])) --end;
  // "...\ " ends in an escaped blank that belongs to the DN: keep it.
  size_t backslashes = 0;
  while (end - backslashes > i && line[end - backslashes - 1] == '\\') ++backslashes;
  if (end < line.size() && backslashes % 2 == 1) ++end;
  line = line.substr(0, end);

  size_t tok_end = i;
  while (tok_end < line.size() && !is_blank(line[tok_end])) ++tok_end;
  std::string_view first = line.substr(i, tok_end - i);

  if (iequals(first, "certmap")) {
    size_t p = tok_end;
    while (p < line.size() && is_blank(line[p])) ++p;
    size_t name_start = p;
    while (p < line.size() && !is_blank(line[p])) ++p;
    std::string_view name = line.substr(name_start, p - name_start);
    if (name.empty()) {
      error(col(name_start), "missing section name: expected 'certmap <name> <issuerDN>'");
      return;
    }
    if (name.size() > limits_.max_name) {
      error(col(name_start), "section name longer than " + std::to_string(limits_.max_name) + " bytes");
      return;
    }
    for (size_t k = 0; k < name.size(); ++k) {
      char c = name[k];
      if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_' && c != '.') {
        error(col(name_start + k), "invalid " + describe_byte(c) + " in section name (letters, digits, - _ .)");
        return;
      }
    }
    while (p < line.size() && is_blank(line[p])) ++p;
    size_t dn_start = p;
    std::string_view issuer = line.substr(dn_start);
    if (issuer.empty()) {
      error(col(dn_start), "missing issuer DN after the section name (the default section is "
                           "'certmap default default')");
      return;
    }
    CertMapSection s;
    s.name = std::string(name);
    s.issuer_text = std::string(issuer);
    s.line = line_;
    s.column = col(i);
    if (s.is_default()) {
      if (!iequals(issuer, "default")) {
        error(col(dn_start), "the default section's issuer must be the word 'default'");
        return;
      }
    } else {
      if (iequals(issuer, "default")) {
        error(col(dn_start), "only the section named 'default' may have the issuer 'default'");
        return;
      }
      auto dn = parse_dn(issuer, limits_.dn);
      if (!dn) {
        error(col(dn_start + dn.error().offset), "invalid issuer DN: " + dn.error().message);
        return;
      }
      if (dn->empty()) {
        error(col(dn_start), "empty issuer DN");
        return;
      }
      s.issuer = std::move(*dn);
    }
    if (const CertMapSection* other = find_section(name)) {
      error(col(name_start), "section '" + s.name + "' already declared on line " + std::to_string(other->line));
      return;
    }
    if (s.issuer) {
      for (const auto& other : sections_) {
        if (other.issuer && dn_equal(*other.issuer, *s.issuer)) {
          error(col(dn_start), "issuer DN already mapped by section '" + other.name + "' on line " +
                                   std::to_string(other.line));
          return;
        }
      }
    }
    if (sections_.size() >= limits_.max_sections) {
      if (!too_many_sections_) {
        error(col(i), "more than " + std::to_string(limits_.max_sections) + " sections");
        too_many_sections_ = true;
      }
      return;
    }
    sections_.push_back(std::move(s));
    seen_.emplace_back();
    return;
  }

  size_t colon = first.find(':');
  if (colon == std::string_view::npos) {
    error(col(i), "expected 'certmap <name> <issuerDN>' or '<name>:<property> [value]'");
    return;
  }
  std::string_view name = first.substr(0, colon);
  if (name.empty()) {
    error(col(i), "missing section name before ':'");
    return;
  }
  size_t p = i + colon + 1;
  while (p < line.size() && is_blank(line[p])) ++p;
  size_t prop_start = p;
  while (p < line.size() && !is_blank(line[p])) ++p;
  std::string_view prop = line.substr(prop_start, p - prop_start);
  if (prop.empty()) {
    error(col(prop_start), "missing property name after '" + clip(name) + ":'");
    return;
  }
  while (p < line.size() && is_blank(line[p])) ++p;
  size_t value_start = p;
  std::string_view value = line.substr(value_start);

  CertMapSection* section = find_section(name);
  if (!section) {
    error(col(i), "property for undeclared section '" + clip(name) + "' (declare it first: 'certmap " +
                      clip(name) + " <issuerDN>')");
    return;
  }
  Prop kind = property_kind(prop);
  if (kind == Prop::Plugin || kind == Prop::Unknown) {
    error(col(prop_start), property_message(kind, prop));
    return;
  }
  auto& seen = seen_[static_cast<size_t>(section - sections_.data())];
  for (const auto& [other, other_line] : seen) {
    if (iequals(other, prop)) {
      error(col(prop_start), std::string(prop) + " already set for section '" + section->name + "' on line " +
                                 std::to_string(other_line));
      return;
    }
  }
  auto r = set_property(*section, prop, value, limits_);
  if (!r) {
    error(col(value_start + r.error().offset), std::string(prop) + ": " + r.error().message);
    return;
  }
  seen.emplace_back(std::string(prop), line_);
}

CertMapResult<CertMap> CertMapParser::finish() {
  if (!line_buf_.empty() || overflow_) end_line();
  // Syntax errors first, then what only the whole file shows (a missing default at the end).
  auto def = check_sections(sections_, source_, limits_, line_, errors_, error_count_);
  if (!def) return tl::unexpected(std::move(errors_));
  CertMap m;
  m.sections_ = std::move(sections_);
  m.default_index_ = *def;
  return m;
}

CertMapResult<CertMap> parse_certmap(std::string_view text, std::string_view source, const CertMapLimits& limits) {
  CertMapParser p(std::string(source), limits);
  p.feed(text);
  return p.finish();
}

// ---------------------------------------------------------------------------------------------
// Mapping

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
  q.filter = "(" + sec.cmap_ldap_attr + "=" + escape_filter_value(trim_blanks(facts.subject_dn)) + ")";
  q.verify_cert = sec.verify_cert;
  q.cmap_attr = sec.cmap_ldap_attr;
  q.section = sec.name;
  out.push_back(std::move(q));
  // The DNComps/FilterComps retry, unless it cannot be built or would list the whole tree.
  if (main && !(main->base_dn.empty() && main->filter == kMatchAll)) out.push_back(std::move(*main));
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
                    " filter=" + clip(q.filter)));
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
      st->done(refuse("reason=no_entry section=" + cur.section + " base=" + clip(cur.base_dn) +
                      " filter=" + clip(cur.filter)));
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
