// metrics_scrape.hpp: reading one value out of a daemon's /metrics text (Prometheus format).
#pragma once

#include <string>

namespace test {

// The value of one sample line "name{labels} value" in a scrape, or -1.
inline double metric_sample(const std::string& scrape, const std::string& series) {
  auto pos = scrape.find("\n" + series + " ");
  if (pos == std::string::npos) return -1;
  return std::stod(scrape.substr(pos + series.size() + 2));
}

}  // namespace test
