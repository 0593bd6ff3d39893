#!/usr/bin/env python3
# imap_searchres.py: SEARCHRES (RFC 5182) through the mmp with python's imaplib: SEARCH RETURN
# (SAVE) keeps a result that "$" names in FETCH, STORE, SEARCH and COPY; SAVE alone sends no
# ESEARCH; MIN/MAX with SAVE keep only those; an expunged message drops out of "$". Prints
# "<step> <typ> <data>" lines that a C++ test checks.

from imap_common import arguments, login_imaps


def main():
    args = arguments().parse_args()
    m = login_imaps(args)
    print("caps %s" % " ".join(m.capabilities))

    def step(name, *command):
        m.untagged_responses.clear()
        typ, data = m._simple_command(*command)
        esearch = m.untagged_responses.get("ESEARCH")
        fetch = m.untagged_responses.get("FETCH")
        print("%s %s %r esearch=%r fetch=%r" % (name, typ, data, esearch, fetch))

    m.select("INBOX")
    step("fetch-before", "FETCH", "$", "(UID)")
    step("save", "SEARCH", "RETURN", "(SAVE)", "UID", "2:3")
    step("fetch-saved", "FETCH", "$", "(UID)")
    step("store-saved", "STORE", "$", "+FLAGS", "(\\Flagged)")
    step("search-saved", "SEARCH", "RETURN", "(ALL)", "$", "FLAGGED")
    step("uid-search-saved", "UID", "SEARCH", "RETURN", "(COUNT)", "UID", "$")
    step("copy-saved", "COPY", "$", "INBOX")
    step("save-min", "SEARCH", "RETURN", "(SAVE MIN)", "ALL")
    step("fetch-min", "FETCH", "$", "(UID)")
    step("save-max", "UID", "SEARCH", "RETURN", "(SAVE MAX)", "ALL")
    step("fetch-max", "UID", "FETCH", "$", "(FLAGS)")
    step("delete-max", "UID", "STORE", "$", "+FLAGS.SILENT", "(\\Deleted)")
    step("expunge", "EXPUNGE")
    step("fetch-after-expunge", "FETCH", "$", "(UID)")
    m.logout()
    print("done")


if __name__ == "__main__":
    main()
