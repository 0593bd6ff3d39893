# line_session_fuzz: the line framer and the command dispatcher of common/line (a toy table).
postern_fuzz(line_session_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/line_session_fuzz.cpp DEPS common_line)
