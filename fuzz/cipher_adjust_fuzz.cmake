# cipher_adjust_fuzz: the ssladjustciphersuites grammar (common/tls/ciphers.cpp).
postern_fuzz(cipher_adjust_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/cipher_adjust_fuzz.cpp DEPS common_tls)
