# http_request_fuzz: the metrics endpoint's HTTP request-head parser under arbitrary bytes and splits.
postern_fuzz(http_request_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/http_request_fuzz.cpp DEPS common_metrics)
