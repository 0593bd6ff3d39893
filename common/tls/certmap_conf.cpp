// certmap_conf.cpp: certmap.conf: properties, section checks, the incremental line parser, and
// the effective configuration written back (certmap_conf.hpp).
#include "common/tls/certmap_conf.hpp"

#include <algorithm>
#include <utility>

#include "common/ascii.hpp"
#include "common/tls/certmap_detail.hpp"

namespace common::tls {

namespace {

using common::ascii::iequals;
using common::ascii::is_alpha;
using common::ascii::is_blank;
using common::ascii::is_digit;
using certmap_detail::clip;
using certmap_detail::describe_byte;

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
    if (!is_attribute_name(name)) return err(start, "invalid attribute name '" + clip(name) + "'");
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

}  // namespace

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
      if (!v->empty() && !is_attribute_name(*v)) {
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
      bad_list = bad_list || !is_attribute_name(t);
      t = canonical_attr_type(t);
    }
    for (auto& c : s.filter_comps_list) {
      bad_list = bad_list || !is_attribute_name(c.cert_attr) || !is_attribute_name(c.ldap_attr);
      c.cert_attr = canonical_attr_type(c.cert_attr);
    }
    if (bad_list) error(&s, "section '" + s.name + "': a List needs attribute names, Absent and Empty none");
    if (!s.cmap_ldap_attr.empty() && !is_attribute_name(s.cmap_ldap_attr)) {
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

}  // namespace common::tls
