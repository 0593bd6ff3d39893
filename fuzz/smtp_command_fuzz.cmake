# smtp_command_fuzz: SMTP/LMTP command arguments, the DATA reader and the reply parser (common/smtp).
postern_fuzz(smtp_command_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/smtp_command_fuzz.cpp DEPS common_smtp)
