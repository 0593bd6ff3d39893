// filter.cpp: Sun filter template expansion.
#include "authserv/ldap/filter.hpp"

#include "common/text/ldap_escape.hpp"

namespace authserv::ldap {

using common::text::escape_filter_value;

common::Result<std::string> expand_filter(std::string_view templ, const FilterVars& vars) {
  if (templ.empty()) return common::fail(common::ErrorKind::Config, "empty search filter template");
  std::string out;
  out.reserve(templ.size() + vars.login.size() * 2);
  for (size_t i = 0; i < templ.size(); ++i) {
    if (templ[i] != '%') {
      out += templ[i];
      continue;
    }
    if (i + 1 == templ.size()) {
      return common::fail(common::ErrorKind::Config, "search filter template ends in %");
    }
    switch (templ[++i]) {
      case 'U': out += escape_filter_value(vars.uid); break;
      case 'u': out += escape_filter_value(vars.login); break;
      case 'd':
      case 'V': out += escape_filter_value(vars.domain); break;  // %V: Sun's name for it
      case 'o': out += escape_filter_value(vars.original); break;
      case '%': out += '%'; break;
      default:
        return common::fail(common::ErrorKind::Config,
                            std::string("unknown %") + templ[i] + " in search filter template");
    }
  }
  if (out.front() != '(') out = "(" + out + ")";
  return out;
}

std::string and_filter(std::string_view a, std::string_view b) {
  std::string out = "(&";
  out += a;
  out += b;
  out += ')';
  return out;
}

}  // namespace authserv::ldap
