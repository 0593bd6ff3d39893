#!/usr/bin/env python3
# imap_read.py: python's imaplib as a mail client of the mmp, for tests: logs in (over STARTTLS on
# 143-style ports or implicit TLS), lists, selects INBOX and reads every message, printing lines a
# C++ test checks:
#   caps-before <capabilities before TLS>      (STARTTLS only)
#   login-plaintext <the server's answer to LOGIN before TLS>
#   caps <capabilities after TLS>
#   list <name>
#   exists <n>
#   message <seq> <uid> <size> <flags...> | subject <Subject header>
#   seen <flags after reading>
import email
import imaplib
import ssl
import sys

from imap_common import arguments, tls_context


def main():
    p = arguments()
    p.add_argument("--tls", choices=["starttls", "implicit"], required=True)
    args = p.parse_args()
    context = tls_context(args.ca)
    if args.tls == "implicit":
        m = imaplib.IMAP4_SSL("127.0.0.1", args.port, ssl_context=context, timeout=20)
    else:
        m = imaplib.IMAP4("127.0.0.1", args.port, timeout=20)
        print("caps-before " + " ".join(m.capabilities))
        try:
            typ, data = m._simple_command("LOGIN", args.user, m._quote(args.password))
            print("login-plaintext %s %s" % (typ, data))
        except imaplib.IMAP4.error as e:
            print("login-plaintext NO %s" % e)
        m.starttls(ssl_context=context)
    typ, caps = m.capability()
    print("caps " + caps[0].decode())
    m.login(args.user, args.password)
    typ, boxes = m.list()
    for b in boxes:
        print("list " + b.decode())
    typ, data = m.select("INBOX")
    if typ != "OK":
        print("select-failed %s %s" % (typ, data))
        sys.exit(3)
    print("exists " + data[0].decode())
    n = int(data[0])
    if n:
        typ, data = m.fetch("1:%d" % n, "(UID RFC822.SIZE FLAGS BODY.PEEK[])")
        for part in data:
            if isinstance(part, tuple):
                head, body = part
                msg = email.message_from_bytes(body)
                print("message %s len=%d | subject %s" % (head.decode(), len(body), msg["Subject"]))
        typ, data = m.fetch("1", "(BODY[HEADER.FIELDS (SUBJECT)])")
        typ, data = m.fetch("1", "(FLAGS)")
        print("seen " + data[0].decode())
    m.logout()
    print("done")


if __name__ == "__main__":
    try:
        main()
    except (imaplib.IMAP4.error, OSError, ssl.SSLError) as e:
        print("FAILED %s: %s" % (type(e).__name__, e))
        sys.exit(3)
