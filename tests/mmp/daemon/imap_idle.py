#!/usr/bin/env python3
# imap_idle.py: IDLE through the mmp with python's imaplib (IDLE and DONE sent by hand on its
# socket), for tests. Mode "changes": an LMTP delivery and a second session's STORE and EXPUNGE
# reach the idling session as EXISTS / FETCH / EXPUNGE (VANISHED with QRESYNC) before DONE. Mode
# "wait": IDLE, print "idling", then print every line until the server closes. Prints
# "<step> <what>" lines that a C++ test checks; exits 3 when an expected line does not come.
import re
import subprocess
import sys
import tempfile
import time

from imap_common import arguments, login_imaps


def connect(args):
    return login_imaps(args, timeout=args.timeout)


def deliver(args, subject):
    with tempfile.NamedTemporaryFile("w", suffix=".eml", delete=False) as f:
        f.write("From: sender@example.org\r\nSubject: %s\r\n\r\nhello\r\n" % subject)
        name = f.name
    out = subprocess.run([sys.executable, args.lmtp_client, "send", "--port", str(args.lmtp_port), "--tls", "implicit",
                          "--ca", args.ca, "--cert", args.cert, "--key", args.key, "--rcpt", args.user,
                          "--data", name], capture_output=True, text=True, timeout=60)
    print("delivered %s" % out.stdout.strip().replace("\n", " | "))


def expect(m, step, pattern):
    # Lines until one matches; each is printed, so the test sees what came.
    while True:
        try:
            line = m.readline()
        except (TimeoutError, OSError) as e:
            print("%s timeout waiting for %r (%s)" % (step, pattern, e))
            sys.exit(3)
        if not line:
            print("%s eof waiting for %r" % (step, pattern))
            sys.exit(3)
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        print("%s %s" % (step, text))
        if re.search(pattern, text):
            return text


def idle(m, tag):
    m.send(("%s IDLE\r\n" % tag).encode())


def changes(args):
    for i in range(3):
        deliver(args, "before %d" % i)
    a = connect(args)
    other = connect(args)
    typ, data = a.select("INBOX")
    print("select %s %r" % (typ, data))
    idle(a, "i1")
    expect(a, "idle-start", r"^\+ ")

    deliver(args, "during idle")
    expect(a, "idle-delivery", r"^\* 4 EXISTS$")

    other.select("INBOX")
    other.store("1", "+FLAGS", "(\\Flagged)")
    expect(a, "idle-flags", r"^\* 1 FETCH \(FLAGS \(\\Flagged\)\)$")

    other.store("2", "+FLAGS", "(\\Deleted)")
    other.expunge()
    expect(a, "idle-expunge", r"^\* 2 EXPUNGE$")

    a.send(b"DONE\r\n")
    expect(a, "idle-done", r"^i1 ")
    # The view after IDLE is what IDLE told: three messages, UIDs 1, 3 and 4.
    typ, data = a.fetch("1:*", "(UID)")
    print("fetch-after %s %r" % (typ, data))

    # Anything but DONE ends IDLE with a BAD; the session goes on.
    idle(a, "i2")
    expect(a, "idle2-start", r"^\+ ")
    a.send(b"i3 NOOP\r\n")
    expect(a, "idle2-end", r"^i2 BAD")
    typ, data = a.noop()
    print("noop-after %s" % typ)
    a.logout()

    # CONDSTORE and QRESYNC on: flag changes carry UID and MODSEQ, expunges come as VANISHED,
    # and what happened between SELECT and IDLE is told when IDLE starts (the Watch's catch-up).
    q = connect(args)
    typ, data = q._simple_command("ENABLE", "QRESYNC")
    print("enable %s %r" % (typ, q.untagged_responses.pop("ENABLED", None)))
    q.select("INBOX")
    other.store("1", "-FLAGS", "(\\Flagged)")
    idle(q, "q1")
    expect(q, "qidle-catchup", r"^\* 1 FETCH \(UID 1 FLAGS \(\) MODSEQ \(\d+\)\)$")
    expect(q, "qidle-start", r"^\+ ")
    other.store("3", "+FLAGS", "(\\Deleted)")
    other.expunge()
    expect(q, "qidle-vanished", r"^\* VANISHED \d+$")
    q.send(b"DONE\r\n")
    expect(q, "qidle-done", r"^q1 OK")
    q.logout()

    # IDLE without a mailbox is allowed (RFC 9051 §6.3.13).
    n = connect(args)
    idle(n, "n1")
    expect(n, "auth-idle-start", r"^\+ ")
    n.send(b"DONE\r\n")
    expect(n, "auth-idle-done", r"^n1 OK")
    n.logout()
    other.logout()
    print("done")


def wait(args):
    a = connect(args)
    a.select("INBOX")
    idle(a, "w1")
    expect(a, "wait-start", r"^\+ ")
    print("idling", flush=True)
    start = time.monotonic()
    while True:
        try:
            line = a.readline()
        except (TimeoutError, OSError) as e:
            print("wait-error %s" % e)
            break
        if not line:
            break
        print("wait %s" % line.decode("utf-8", "replace").rstrip("\r\n"), flush=True)
    print("closed after %.1f s" % (time.monotonic() - start), flush=True)


def main():
    p = arguments()
    p.add_argument("--mode", choices=["changes", "wait"], required=True)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--lmtp-port", type=int)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--lmtp-client")
    args = p.parse_args()
    if args.mode == "changes":
        changes(args)
    else:
        wait(args)


if __name__ == "__main__":
    main()
