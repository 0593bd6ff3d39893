// directory.cpp: account status names (inetUserStatus / mailUserStatus) and how two of them combine.
#include "authserv/directory/directory.hpp"

#include "common/ascii.hpp"

namespace authserv::directory {
namespace {

using common::ascii::iequals;

// Severity for stricter(): larger blocks more.
int rank(Status s) {
  switch (s) {
    case Status::Active: return 0;
    case Status::Inactive: return 1;
    case Status::Held: return 2;
    case Status::Deleted: return 3;
  }
  return 3;  // out-of-range value (damaged memory): the strictest
}

}  // namespace

std::string_view status_name(Status s) {
  switch (s) {
    case Status::Active: return "active";
    case Status::Inactive: return "inactive";
    case Status::Held: return "hold";
    case Status::Deleted: return "deleted";
  }
  return "deleted";
}

Status parse_status(std::string_view v) {
  v = common::ascii::trim(v);  // directory values are sometimes written with blanks around them by LDIF tools
  if (v.empty() || iequals(v, "active")) return Status::Active;
  if (iequals(v, "hold") || iequals(v, "held")) return Status::Held;
  if (iequals(v, "deleted") || iequals(v, "removed")) return Status::Deleted;
  return Status::Inactive;  // "inactive" and every typo: fail closed
}

Status stricter(Status a, Status b) { return rank(a) >= rank(b) ? a : b; }

}  // namespace authserv::directory
