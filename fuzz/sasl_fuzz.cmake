# sasl_fuzz: SASL mechanism state machines (authserv/sasl) on hostile client messages.
postern_fuzz(sasl_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/sasl_fuzz.cpp DEPS authserv_sasl)
