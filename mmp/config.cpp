// config.cpp: reading [mmp], [imap], [authserv] and [stores] (config.hpp).
#include "mmp/config.hpp"

#include "common/ascii.hpp"
#include "common/authclient/config.hpp"
#include "common/net/address.hpp"
#include "mmp/store_client/config.hpp"

namespace mmp {

void read_config(common::config::Section root, Config& out) {
  auto m = root.section("mmp");
  m.get("host_name", out.mmp.host_name);
  if (out.mmp.host_name.empty()) out.mmp.host_name = common::net::local_host_name();
  m.get("default_domain", out.mmp.default_domain);
  out.mmp.default_domain = common::ascii::lowered(out.mmp.default_domain);
  if (out.mmp.default_domain.find('@') != std::string::npos) m.error("default_domain", "a domain, without \"@\"");
  m.get("restrict_plain_passwords", out.mmp.restrict_plain_passwords);

  auto i = root.section("imap");
  auto& l = out.imap.limits;
  i.get_size("max_line", l.max_line, 1024, 1u << 20);
  i.get_size("max_literal", l.max_literal, 1024, 16u << 20);
  i.get_size("max_message_size", l.max_message, 1024, 1ull << 31);
  i.get("max_depth", l.max_depth, size_t{8}, size_t{1000});
  i.get("max_errors", out.imap.max_errors, size_t{1}, size_t{1000});

  common::authclient::read_auth_client_config(root.section("authserv"), out.authserv);
  store_client::read_store_client_config(root.section("stores"), out.stores);
}

}  // namespace mmp
