# mime_fuzz: the MIME structure parser and its stored form (store/mime).
postern_fuzz(mime_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/mime_fuzz.cpp DEPS store_mime)
