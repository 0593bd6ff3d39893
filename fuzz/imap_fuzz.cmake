# imap_fuzz: the IMAP command parser, mUTF-7 and the response encoders of mmp/imap, any split of the input.
postern_fuzz(imap_fuzz SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/imap_fuzz.cpp DEPS mmp_imap)
