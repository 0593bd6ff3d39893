# client_hello_fuzz: the ClientHello scan for record_size_limit (common/tls/client_hello.cpp).
postern_fuzz(client_hello_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/client_hello_fuzz.cpp DEPS common_tls)
