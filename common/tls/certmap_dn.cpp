// certmap_dn.cpp: RFC 4514 DNs: the reader (with NSS's and RFC 1779's spellings), printing, the
// lenient equality issuers are matched by, and attribute type names (certmap_dn.hpp).
#include "common/tls/certmap_dn.hpp"

#include <algorithm>
#include <array>
#include <optional>
#include <utility>

#include "common/ascii.hpp"
#include "common/text/ldap_escape.hpp"
#include "common/tls/certmap_ber.hpp"
#include "common/tls/certmap_detail.hpp"

namespace common::tls {

namespace {

using common::ascii::iequals;
using common::ascii::is_alpha;
using common::ascii::is_digit;
using common::ascii::is_hex;
using common::ascii::lower;
using common::ascii::lowered;
using certmap_detail::describe_byte;

constexpr char kHex[] = "0123456789abcdef";

int hex_value(char c) { return is_digit(c) ? c - '0' : lower(c) - 'a' + 10; }

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


// ---- DN reading

bool dn_special(char c) {
  return c == ',' || c == '+' || c == '"' || c == '\\' || c == '<' || c == '>' || c == ';' || c == ' ' ||
         c == '#' || c == '=';
}

bool ends_rdn(char c) { return c == ',' || c == ';' || c == '+'; }

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
    if (!is_attribute_name(t)) {
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
    if (auto text = ber_directory_string(bytes)) {
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

}  // namespace

bool is_attribute_name(std::string_view s) {
  if (has_oid_prefix(s)) s.remove_prefix(4);
  return is_descr(s) || is_numericoid(s);
}

std::string canonical_attr_type(std::string_view type) {
  if (has_oid_prefix(type)) type.remove_prefix(4);
  std::string l = lowered(type);
  for (const auto& a : kAliases) {
    if (a.name == l) return std::string(a.canonical);
  }
  return l;
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
        out += text::escape_dn_value(ava.value);
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

}  // namespace common::tls
