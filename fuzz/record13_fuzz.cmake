# record13_fuzz: the TLS 1.3 record layer after the handshake (common/tls) against a hostile peer.
postern_fuzz(record13_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/record13_fuzz.cpp DEPS record13_testing)
