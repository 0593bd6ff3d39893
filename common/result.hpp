// result.hpp: the one error type of the suite; errors are values on every protocol path.
#pragma once

#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace common {

// kind decides what the caller does; detail is for logs only, never for clients.
enum class ErrorKind { Protocol, Remote, Connect, TempFail, Config, Internal };

struct Error {
  ErrorKind kind;
  std::string detail;
};

template <class T>
using Result = tl::expected<T, Error>;

inline tl::unexpected<Error> fail(ErrorKind kind, std::string detail) {
  return tl::unexpected<Error>(Error{kind, std::move(detail)});
}

}  // namespace common
