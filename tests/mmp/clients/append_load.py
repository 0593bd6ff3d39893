#!/usr/bin/env python3
# append_load.py: python imaplib clients APPENDing through the mmp while a test kills the store or
# the mmp with SIGKILL, and the checks after. Modes:
#   load    --clients N --stop-file F: each client APPENDs distinct messages in a loop (reconnecting
#           after BYE or a dead connection) until F exists; one line per APPEND, flushed:
#             append c=<client> n=<seq> sha=<sha256 of the bytes> mid=<Message-ID> result=OK|NO|BAD|BYE|EOF [uidvalidity=V uid=U]
#   verify  --results FILE: every APPEND answered OK [APPENDUID V U] is in INBOX as UID U under
#           UIDVALIDITY V, byte for byte:  verified ok=<n> present=<n> mismatched=<n> missing=<n>
#           and, for the rest: unacked=<n> unacked-present=<n> (an APPEND answered NO or cut off
#           may or may not have committed; only an OK promises the message)
#   partial --marker M: APPENDs a 4 MiB message, sends half of it, prints "half-sent", then waits
#           for the connection to die (the test kills the mmp): "cut <how>"
#   count   --marker M: "count <messages in INBOX whose Message-ID holds M>"
import argparse
import hashlib
import imaplib
import os
import random
import re
import socket
import ssl
import sys
import threading
import time


def connect(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.check_hostname = False
    m = imaplib.IMAP4_SSL("127.0.0.1", args.port, ssl_context=ctx, timeout=20)
    m.login(args.user, args.password)
    return m


def message(client, n):
    rnd = random.Random(client * 1000003 + n)
    mid = "<load-%d-%d-%08x@test>" % (client, n, rnd.getrandbits(32))
    body = b"".join(b"%06d %s\r\n" % (i, bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(60)))
                    for i in range(rnd.randint(5, 300)))
    head = ("From: load%d@example.org\r\nTo: alice@example.com\r\nSubject: load %d/%d\r\nMessage-ID: %s\r\n"
            "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\n" % (client, client, n, mid)).encode()
    return mid, head + body


def load(args):
    lock = threading.Lock()
    out = open(args.out, "a", buffering=1)

    def record(line):
        with lock:
            out.write(line + "\n")
            out.flush()

    def client(c):
        n = 0
        m = None
        while not os.path.exists(args.stop_file):
            if m is None:
                try:
                    m = connect(args)
                except (imaplib.IMAP4.error, OSError, ssl.SSLError):
                    m = None
                    time.sleep(0.2)
                    continue
            n += 1
            mid, data = message(c, n)
            sha = hashlib.sha256(data).hexdigest()
            prefix = "append c=%d n=%d sha=%s mid=%s" % (c, n, sha, mid)
            try:
                typ, resp = m.append("INBOX", None, None, data)
                text = resp[0].decode(errors="replace") if resp and resp[0] else ""
                found = re.search(r"\[APPENDUID (\d+) (\d+)\]", text)
                if typ == "OK" and found:
                    record("%s result=OK uidvalidity=%s uid=%s" % (prefix, found.group(1), found.group(2)))
                elif typ == "OK":
                    record("%s result=OK-without-appenduid %s" % (prefix, text))
                else:
                    record("%s result=%s %s" % (prefix, typ, text))
            except imaplib.IMAP4.abort as e:
                record("%s result=%s %s" % (prefix, "BYE" if "BYE" in str(e) else "EOF", e))
                m = None
            except (imaplib.IMAP4.error, OSError, ssl.SSLError) as e:
                record("%s result=EOF %s" % (prefix, type(e).__name__))
                m = None
        if m is not None:
            try:
                m.logout()
            except (imaplib.IMAP4.error, OSError, ssl.SSLError):
                pass

    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("load done")


def inbox(m):
    typ, _ = m.select("INBOX")
    assert typ == "OK"
    return int(m.untagged_responses.get("UIDVALIDITY", [b"0"])[-1])


def verify(args):
    m = connect(args)
    uidvalidity = inbox(m)
    ok = present = mismatched = missing = unacked = unacked_present = 0
    answers = {}
    for line in open(args.results):
        if not line.startswith("append "):
            continue
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        answers[fields["result"]] = answers.get(fields["result"], 0) + 1
        if fields["result"] == "OK":
            ok += 1
            if int(fields["uidvalidity"]) != uidvalidity:
                print("uidvalidity changed: %s then %d" % (fields["uidvalidity"], uidvalidity))
                missing += 1
                continue
            typ, data = m.uid("FETCH", fields["uid"], "(BODY.PEEK[])")
            body = next((part[1] for part in data if isinstance(part, tuple)), None)
            if body is None:
                missing += 1
                print("missing " + line.strip())
            elif hashlib.sha256(body).hexdigest() != fields["sha"]:
                mismatched += 1
                print("mismatched " + line.strip())
            else:
                present += 1
        else:
            unacked += 1
            typ, data = m.uid("SEARCH", "HEADER", "Message-ID", fields["mid"])
            if data and data[0].split():
                unacked_present += 1
    print("answers " + " ".join("%s=%d" % kv for kv in sorted(answers.items())))
    print("verified ok=%d present=%d mismatched=%d missing=%d" % (ok, present, mismatched, missing))
    print("unacked=%d unacked-present=%d" % (unacked, unacked_present))
    m.logout()


def partial(args):
    m = connect(args)
    inbox(m)
    mid = "<%s@test>" % args.marker
    head = ("From: partial@example.org\r\nSubject: cut off\r\nMessage-ID: %s\r\n\r\n" % mid).encode()
    data = head + b"y" * (4 * 1024 * 1024)
    sock = m.sock
    sock.sendall(b"p1 APPEND INBOX {%d}\r\n" % len(data))
    cont = m._get_line()
    if not cont.startswith(b"+"):
        print("no-continuation %r" % cont)
        return
    sock.sendall(data[:len(data) // 2])
    print("half-sent")
    sys.stdout.flush()
    deadline = time.monotonic() + 60
    sock.settimeout(1)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except (socket.timeout, TimeoutError):
            continue
        except (OSError, ssl.SSLError) as e:
            print("cut %s" % type(e).__name__)
            return
        if not chunk:
            print("cut eof")
            return
        print("unexpected %r" % chunk[:200])
    print("cut never")


def count(args):
    m = connect(args)
    inbox(m)
    typ, data = m.uid("SEARCH", "HEADER", "Message-ID", args.marker)
    print("count %d" % len(data[0].split()))
    typ, data = m.status("INBOX", "(MESSAGES)")
    print("status %s" % data[0].decode())
    m.logout()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["load", "verify", "partial", "count"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--user", default="alice@example.com")
    p.add_argument("--password", default="secret-alice")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--stop-file")
    p.add_argument("--out")
    p.add_argument("--results")
    p.add_argument("--marker")
    args = p.parse_args()
    {"load": load, "verify": verify, "partial": partial, "count": count}[args.mode](args)


if __name__ == "__main__":
    try:
        main()
    except (imaplib.IMAP4.error, OSError, ssl.SSLError, AssertionError) as e:
        print("FAILED %s: %s" % (type(e).__name__, e))
        sys.exit(3)
