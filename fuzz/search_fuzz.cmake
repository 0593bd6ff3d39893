# search_fuzz: SEARCH programs decoded from bytes, validated and run over a message (store/search).
postern_fuzz(search_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/search_fuzz.cpp DEPS store_search)
