#!/usr/bin/env python3
# smtp_probe.py: python clients for the mta's tests. "inject": the STARTTLS command-injection probe
# (CVE-2011-0411): a command pipelined behind STARTTLS in plaintext must not run after the handshake.
# "submit": smtplib's own submission (STARTTLS or implicit TLS, login, sendmail), printing each step;
# with --cert and --key it logs in with SASL EXTERNAL (RFC 4422 App. A) on its client certificate.
import argparse
import smtplib
import socket
import ssl
import sys


def read_reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            return lines
        lines.append(line.decode("ascii", "replace").rstrip("\r\n"))
        if len(line) < 4 or line[3:4] != b"-":
            return lines


def inject(args):
    s = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    f = s.makefile("rb")
    print("greeting", read_reply(f)[-1])
    s.sendall(b"EHLO probe.example.org\r\n")
    print("ehlo", read_reply(f)[-1])
    s.sendall(b"STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
    print("starttls", read_reply(f)[-1])
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t = ctx.wrap_socket(s, server_hostname="mta1")
    tf = t.makefile("rb")
    t.sendall(b"EHLO probe.example.org\r\n")
    print("tls-ehlo", read_reply(tf)[-1])
    # The injected MAIL must be gone: a RCPT now is out of sequence.
    t.sendall(b"RCPT TO:<alice@example.com>\r\n")
    print("rcpt", read_reply(tf)[-1])
    t.sendall(b"QUIT\r\n")
    print("quit", read_reply(tf)[-1])


def tls_session(args):
    s = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    f = s.makefile("rb")
    read_reply(f)
    s.sendall(b"EHLO probe.example.org\r\n")
    read_reply(f)
    s.sendall(b"STARTTLS\r\n")
    read_reply(f)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t = ctx.wrap_socket(s, server_hostname="mta1")
    tf = t.makefile("rb")
    t.sendall(b"EHLO probe.example.org\r\n")
    read_reply(tf)
    return t, tf


def auth_garbage(args):
    t, tf = tls_session(args)
    for label, lines in [("garbage", [b"AUTH PLAIN !!!not-base64!!!"]),
                         ("unknown", [b"AUTH NOSUCH-MECH"]),
                         ("badname", [b"AUTH PL@IN"]),
                         ("abort", [b"AUTH LOGIN", b"*"]),
                         ("long", [b"AUTH LOGIN", b"A" * 20000]),
                         ("good", [b"AUTH PLAIN " + args.good.encode()])]:
        for line in lines:
            t.sendall(line + b"\r\n")
            last = read_reply(tf)[-1]
        print(label, last)
    t.sendall(b"QUIT\r\n")
    print("quit", read_reply(tf)[-1])


def submit(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.check_hostname = False
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    if args.implicit:
        c = smtplib.SMTP_SSL("127.0.0.1", args.port, context=ctx, timeout=20)
    else:
        c = smtplib.SMTP("127.0.0.1", args.port, timeout=20)
        c.ehlo("smtplib.example.org")
        print("starttls", c.starttls(context=ctx)[0])
    c.ehlo("smtplib.example.org")
    print("auth", " ".join(sorted(c.esmtp_features.get("auth", "").split())))
    if args.cert:
        # An empty authorization identity: the one the certificate maps to.
        print("login", c.auth("EXTERNAL", lambda challenge=None: "")[0])
    else:
        print("login", c.login(args.user, args.password)[0])
    msg = "From: %s\r\nTo: %s\r\nSubject: smtplib\r\n\r\nsent by smtplib\r\n" % (args.sender, ", ".join(args.rcpt))
    refused = c.sendmail(args.sender, args.rcpt, msg)
    print("refused", sorted(refused.keys()))
    print("quit", c.quit()[0])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["inject", "submit", "auth-garbage"])
    p.add_argument("--good", help="auth-garbage: a valid PLAIN initial response, tried last")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--implicit", action="store_true")
    p.add_argument("--ca")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--sender")
    p.add_argument("--rcpt", action="append", default=[])
    args = p.parse_args()
    try:
        {"inject": inject, "submit": submit, "auth-garbage": auth_garbage}[args.mode](args)
    except (smtplib.SMTPException, OSError) as e:
        print("error", type(e).__name__, e)
        sys.exit(1)


if __name__ == "__main__":
    main()
