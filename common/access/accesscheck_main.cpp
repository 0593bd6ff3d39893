// accesscheck_main.cpp: postern-accesscheck entry point; the logic lives in accesscheck.cpp.
#include <iostream>
#include <string_view>
#include <vector>

#include "common/access/accesscheck.hpp"

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  return common::access::accesscheck_run(args, std::cout, std::cerr);
}
