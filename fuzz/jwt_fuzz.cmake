# jwt_fuzz: bearer-token validation (authserv/oauth) and its strict JSON reader on hostile input.
postern_fuzz(jwt_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/jwt_fuzz.cpp DEPS authserv_oauth)
