# access_filter_fuzz: client access filter files and compact rules (common/access).
postern_fuzz(access_filter_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/access_filter_fuzz.cpp DEPS common_access)
