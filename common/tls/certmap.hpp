// certmap.hpp: client certificate -> user mapping for SASL EXTERNAL, one header for its parts:
//   certmap_dn.hpp     distinguished names (RFC 4514): parse, print, compare
//   certmap_ber.hpp    the BER DirectoryString a DN's "#hex" value may hold
//   certmap_conf.hpp   the certmap.conf file (seed S2 §8 Table 8-8; 389-ds certmap.conf(5))
//   certmap_query.hpp  the typed directory queries for a certificate, and the mapper
// Escaping of DN and filter values is common/text/ldap_escape.hpp's. Pure: no NSS, no I/O.
#pragma once

#include "common/tls/certmap_ber.hpp"
#include "common/tls/certmap_conf.hpp"
#include "common/tls/certmap_dn.hpp"
#include "common/tls/certmap_query.hpp"
