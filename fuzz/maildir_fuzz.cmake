# maildir_fuzz: postern-storectl's Maildir and mbox formats (store/tools): file names, dovecot-uidlist,
# dovecot-keywords, modified UTF-7 folder names, subscriptions, line ends, mboxrd.
postern_fuzz(maildir_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/maildir_fuzz.cpp DEPS store_tools)
