# certmap_fuzz: certmap.conf and DN parsers, and the mapper on hostile subjects (common/tls).
postern_fuzz(certmap_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/certmap_fuzz.cpp DEPS common_tls)
