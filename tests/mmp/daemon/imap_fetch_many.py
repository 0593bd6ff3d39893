#!/usr/bin/env python3
# imap_fetch_many.py: FETCH over many messages through the mmp, whose store sends several messages
# per reply: APPENDs 200 messages (one of 2.5 MB, so its body comes from the store in pieces),
# then checks FETCH 1:200 (FLAGS ENVELOPE BODY.PEEK[]) with imaplib message by message and byte for
# byte, FETCH (FLAGS ENVELOPE) alone, BODY[TEXT] without PEEK setting \Seen, a raw client that
# reads nothing for a while (the mmp pauses the store) and then gets every byte exactly as expected,
# and the big message's HEADER and TEXT in one FETCH, in either order.
# Prints "ok <check>" lines and "done"; exits non-zero on the first mismatch.
import re
import socket
import sys
import time

from imap_common import arguments, login_imaps, tls_context

COUNT = 200
BIG = 100  # the message of 2.5 MB


def message(i):
    head = ("From: Sender %d <sender%d@example.org>\r\nTo: alice@example.com\r\n"
            "Subject: batch message %d\r\nMessage-ID: <m%d@example.org>\r\n"
            "Date: Tue, 08 Dec 2026 01:00:00 +0000\r\n\r\n" % (i, i, i, i))
    line = "line of message %d ..........................................\r\n" % i
    size = 2500000 if i == BIG else 300 + (i * 397) % 7000
    body = line * (size // len(line) + 1)
    return (head + body).encode()


def fail(what):
    print("FAIL " + what)
    sys.exit(1)


def flags_of(i):
    return "\\Flagged" if i % 7 == 0 else ""


def main():
    args = arguments().parse_args()
    context = tls_context(args.ca)
    m = login_imaps(args, timeout=60)
    sent = {}
    for i in range(1, COUNT + 1):
        f = flags_of(i)
        typ, data = m.append("INBOX", "(%s)" % f if f else None, None, message(i))
        if typ != "OK":
            fail("append %d: %s %s" % (i, typ, data))
        uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
        sent[i] = (uid, message(i))
    print("ok appended %d" % COUNT)
    typ, data = m.select("INBOX")
    if typ != "OK" or int(data[0]) != COUNT:
        fail("select: %s %s" % (typ, data))

    # Every message once, in order, its flags, envelope and body exactly as appended.
    typ, data = m.fetch("1:%d" % COUNT, "(FLAGS ENVELOPE BODY.PEEK[])")
    if typ != "OK":
        fail("fetch: %s %s" % (typ, data))
    parts = [d for d in data if isinstance(d, tuple)]
    if len(parts) != COUNT:
        fail("fetch gave %d messages" % len(parts))
    for n, (head, body) in enumerate(parts, 1):
        i = n
        want = sent[i][1]
        if not head.startswith(b"%d (FLAGS (%s) ENVELOPE (" % (n, flags_of(i).encode())):
            fail("message %d head %r" % (n, head[:200]))
        if b'"batch message %d"' % i not in head or b'"<m%d@example.org>"' % i not in head:
            fail("message %d envelope %r" % (n, head[:300]))
        if not head.endswith(b"BODY[] {%d}" % len(want)):
            fail("message %d literal %r" % (n, head[-40:]))
        if body != want:
            fail("message %d body differs (%d octets, %d sent)" % (n, len(body), len(want)))
    print("ok fetch flags envelope body %d" % COUNT)

    typ, data = m.fetch("1:%d" % COUNT, "(FLAGS ENVELOPE)")
    lines = [d for d in data if isinstance(d, bytes)]
    if typ != "OK" or len(lines) != COUNT:
        fail("fetch envelope: %s %d" % (typ, len(lines)))
    for n, line in enumerate(lines, 1):
        if not line.startswith(b"%d (FLAGS (" % n) or b'"batch message %d"' % n not in line:
            fail("envelope line %d %r" % (n, line[:200]))
    print("ok fetch flags envelope %d" % COUNT)

    # Without PEEK: \Seen is set first, so the FLAGS answered include it.
    typ, data = m.fetch("1:50", "(BODY[TEXT])")
    parts = [d for d in data if isinstance(d, tuple)]
    if typ != "OK" or len(parts) != 50:
        fail("fetch text: %s %d" % (typ, len(parts)))
    for n, (head, body) in enumerate(parts, 1):
        if b"\\Seen" not in head:
            fail("text %d without \\Seen: %r" % (n, head[:200]))
        if body != sent[n][1].split(b"\r\n\r\n", 1)[1]:
            fail("text %d differs" % n)
    typ, data = m.fetch("51", "(FLAGS)")
    if b"\\Seen" in data[0]:
        fail("51 seen: %r" % data)
    print("ok fetch text seen 50")
    m.logout()

    # A client that reads nothing for a while: the mmp's output fills and it pauses the store's
    # stream, then resumes as the client reads; the bytes are exactly what the FETCH should be.
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    raw.settimeout(60)
    raw.connect(("127.0.0.1", args.port))
    s = context.wrap_socket(raw)
    got = b""

    def read_tagged(tag):
        # Everything up to and including the line tagged `tag`.
        nonlocal got
        marker = b"\r\n" + tag + b" "
        while True:
            text = b"\r\n" + got
            at = text.find(marker)
            eol = text.find(b"\r\n", at + len(marker)) if at >= 0 else -1
            if eol >= 0:
                end = eol  # the line's end with its CRLF in `text`, less the CRLF put in front
                out, got = got[:end], got[end:]
                return out
            chunk = s.recv(65536)
            if not chunk:
                fail("connection closed waiting for %r; got %r" % (tag, got[-200:]))
            got += chunk

    read_tagged(b"*")  # the greeting
    s.sendall(b"a1 LOGIN %s %s\r\n" % (args.user.encode(), args.password.encode()))
    if b"a1 OK" not in read_tagged(b"a1"):
        fail("raw login")
    s.sendall(b"a2 SELECT INBOX\r\n")
    if b"a2 OK" not in read_tagged(b"a2"):
        fail("raw select")
    s.sendall(b"a3 FETCH 1:%d (UID BODY.PEEK[])\r\n" % COUNT)
    time.sleep(3)
    answer = read_tagged(b"a3")
    expected = b"".join(b"* %d FETCH (UID %d BODY[] {%d}\r\n%s)\r\n" % (n, sent[n][0], len(sent[n][1]), sent[n][1])
                        for n in range(1, COUNT + 1))
    if not answer.startswith(expected):
        at = next((k for k in range(min(len(answer), len(expected))) if answer[k] != expected[k]),
                  min(len(answer), len(expected)))
        fail("raw fetch differs at octet %d of %d: %r" % (at, len(expected), answer[max(0, at - 80):at + 80]))
    if not answer[len(expected):].startswith(b"a3 OK"):
        fail("raw fetch tagged %r" % answer[len(expected):])
    print("ok raw fetch %d octets" % len(expected))

    # Two sections, the big message's TEXT in pieces before or after its HEADER: each message's
    # response closes only once its last section is whole.
    def split(n):
        header, text = sent[n][1].split(b"\r\n\r\n", 1)
        return {b"HEADER": header + b"\r\n\r\n", b"TEXT": text}

    for tag, order in ((b"a4", (b"HEADER", b"TEXT")), (b"a5", (b"TEXT", b"HEADER"))):
        s.sendall(b"%s FETCH %d:%d (BODY.PEEK[%s] BODY.PEEK[%s])\r\n" % (tag, BIG - 1, BIG + 1, order[0], order[1]))
        answer = read_tagged(tag)
        expected = b""
        for n in range(BIG - 1, BIG + 2):
            parts = split(n)
            items = b" ".join(b"BODY[%s] {%d}\r\n%s" % (name, len(parts[name]), parts[name]) for name in order)
            expected += b"* %d FETCH (%s)\r\n" % (n, items)
        if not answer.startswith(expected) or not answer[len(expected):].startswith(tag + b" OK"):
            at = next((k for k in range(min(len(answer), len(expected))) if answer[k] != expected[k]),
                      min(len(answer), len(expected)))
            fail("two sections %r differ at octet %d: %r" % (order, at, answer[max(0, at - 80):at + 80]))
    print("ok raw two sections")
    s.sendall(b"a9 LOGOUT\r\n")
    s.close()
    print("done")


if __name__ == "__main__":
    main()
