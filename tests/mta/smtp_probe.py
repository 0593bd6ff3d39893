#!/usr/bin/env python3
# smtp_probe.py: python clients for the mta's tests. "inject": the STARTTLS command-injection probe
# (CVE-2011-0411): a command pipelined behind STARTTLS in plaintext must not run after the handshake.
# "submit": smtplib's own submission (STARTTLS or implicit TLS, login, sendmail), printing each step;
# with --cert and --key it logs in with SASL EXTERNAL (RFC 4422 App. A) on its client certificate.
import argparse
import base64
import hashlib
import hmac
import os
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


def scram(args):
    """SCRAM-SHA-256 (RFC 5802, RFC 7677) over AUTH, the client side written out: smtplib has none."""
    t, tf = tls_session(args)
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = "n=%s,r=%s" % (args.user.replace("=", "=3D").replace(",", "=2C"), nonce)
    t.sendall(b"AUTH SCRAM-SHA-256 " + base64.b64encode(("n,," + first_bare).encode()) + b"\r\n")
    reply = read_reply(tf)[-1]
    if not reply.startswith("334 "):
        print("scram-first", reply)
        return
    server_first = base64.b64decode(reply[4:]).decode()
    fields = dict(f.split("=", 1) for f in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", args.password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    final_bare = "c=biws,r=" + fields["r"]
    auth_message = ",".join([first_bare, server_first, final_bare]).encode()
    signature = hmac.new(stored_key, auth_message, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    t.sendall(base64.b64encode((final_bare + ",p=" + base64.b64encode(proof).decode()).encode()) + b"\r\n")
    reply = read_reply(tf)[-1]
    if reply.startswith("334 "):
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        expected = base64.b64encode(hmac.new(server_key, auth_message, "sha256").digest()).decode()
        verified = base64.b64decode(reply[4:]).decode() == "v=" + expected
        print("server-signature", "ok" if verified else "wrong")
        t.sendall(b"\r\n" if verified else b"*\r\n")
        reply = read_reply(tf)[-1]
    print("scram", reply)
    t.sendall(b"QUIT\r\n")
    read_reply(tf)


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
    p.add_argument("mode", choices=["inject", "submit", "auth-garbage", "scram"])
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
        {"inject": inject, "submit": submit, "auth-garbage": auth_garbage, "scram": scram}[args.mode](args)
    except (smtplib.SMTPException, OSError) as e:
        print("error", type(e).__name__, e)
        sys.exit(1)


if __name__ == "__main__":
    main()
