# sasl_relay_fuzz: the front ends' SASL relay state machine (common/authclient) on hostile lines.
postern_fuzz(sasl_relay_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/sasl_relay_fuzz.cpp DEPS common_authclient)
