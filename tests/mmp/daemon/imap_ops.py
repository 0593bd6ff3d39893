#!/usr/bin/env python3
# imap_ops.py: python's imaplib working on a mailbox through the mmp over IMAPS, for tests: store
# flags, search, copy, move, expunge, create/rename/delete, status, quota, and a NOOP that sees a
# message delivered meanwhile (by LMTP to the store, with the mta's certificate, through tests/store/lmtp_client.py). Prints
# "<step> <typ> <data>" lines that a C++ test checks; exits 3 on a protocol failure.
import argparse
import imaplib
import ssl
import subprocess
import tempfile
import sys


def deliver(args, subject):
    # tests/store/lmtp_client.py, as the store's own tests deliver (implicit TLS, the mta's certificate).
    out = subprocess.run([sys.executable, args.lmtp_client, "send", "--port", str(args.lmtp_port), "--tls", "implicit",
                          "--ca", args.ca, "--cert", args.cert, "--key", args.key, "--rcpt", args.user,
                          "--data", args.message_file], capture_output=True, text=True, timeout=60)
    print("delivered %s" % out.stdout.strip().replace("\n", " | "))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--lmtp-port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--lmtp-client", required=True)
    args = p.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".eml", delete=False) as f:
        f.write("From: sender@example.org\r\nSubject: arrived during the session\r\n\r\nhello\r\n")
        args.message_file = f.name
    context = ssl.create_default_context(cafile=args.ca)
    context.check_hostname = False
    m = imaplib.IMAP4_SSL("127.0.0.1", args.port, ssl_context=context, timeout=20)
    m.login(args.user, args.password)

    def step(name, result):
        typ, data = result
        print("%s %s %r" % (name, typ, data))
        return typ, data

    step("create", m.create("Work"))
    step("create-again", m.create("Work"))
    step("select", m.select("INBOX"))
    step("search-all", m.search(None, "ALL"))
    step("search-subject", m.uid("SEARCH", None, "SUBJECT", "test"))
    typ, _ = m._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")
    print("esearch %s %r" % (typ, m.untagged_responses.pop("ESEARCH", None)))
    step("store", m.store("1", "+FLAGS", "(\\Flagged $Work)"))
    step("search-flagged", m.search(None, "FLAGGED"))
    step("copy", m.copy("1", "Work"))
    step("copy-missing", m.copy("1", "Nowhere"))
    m.untagged_responses.clear()
    step("move", m._simple_command("MOVE", "2", "Work"))
    print("move-untagged %r %r" % (m.untagged_responses.get("EXPUNGE"), m.untagged_responses.get("OK")))
    m.untagged_responses.clear()
    step("status-work", m.status("Work", "(MESSAGES UIDNEXT UNSEEN)"))
    step("store-deleted", m.store("1", "+FLAGS.SILENT", "(\\Deleted)"))
    step("expunge", m.expunge())
    step("search-after", m.search(None, "ALL"))
    deliver(args, "arrived during the session")
    step("noop", m.noop())
    print("noop-exists %r" % (m.untagged_responses.get("EXISTS"),))
    step("fetch-new", m.fetch("*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    step("rename", m.rename("Work", "Projects"))
    step("list", m.list())
    step("quota", m.getquotaroot("INBOX"))
    step("namespace", m.namespace())
    step("close", m.close())
    step("delete", m.delete("Projects"))
    step("list-after", m.list())
    step("append", m.append("INBOX", "(\\Flagged)", None, b"Subject: appended\r\n\r\nhi\r\n"))
    step("append-missing", m.append("Nowhere", None, None, b"Subject: lost\r\n\r\nhi\r\n"))
    step("append-big", m.append("INBOX", None, None, b"Subject: big\r\n\r\n" + b"x" * 300000 + b"\r\n"))
    step("select-after", m.select("INBOX"))
    step("fetch-appended", m.fetch("*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    m.logout()
    print("done")


if __name__ == "__main__":
    try:
        main()
    except (imaplib.IMAP4.error, OSError, ssl.SSLError, subprocess.SubprocessError) as e:
        print("FAILED %s: %s" % (type(e).__name__, e))
        sys.exit(3)
