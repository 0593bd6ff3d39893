# access_token_fuzz: access-token verification (common/authtoken) on hostile tokens and payloads.
postern_fuzz(access_token_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/access_token_fuzz.cpp DEPS common_authtoken)
