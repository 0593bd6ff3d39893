#!/usr/bin/env python3
"""lmtp_client.py: python's smtplib.LMTP against postern-store for the store's tests.

  send    one message to some recipients; prints each recipient's reply ("RCPT <addr> <code> <text>")
  storm   N sessions deliver M messages in all, each with its own XID; after every 250 the message id
          is appended to --acked (flushed), so a test can kill the store at any moment and know
          exactly what was acknowledged.
TLS: --tls implicit|starttls with --cert/--key (a client certificate) and --ca.
"""
import argparse
import re
import smtplib
import socket
import ssl
import sys
import threading


def context(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.check_hostname = False  # the store's certificate names store1 and 127.0.0.1; we dial 127.0.0.1
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


class ImplicitLMTP(smtplib.LMTP):
    """LMTP with TLS from the first byte (smtplib has SMTP_SSL but no LMTP_SSL)."""

    def __init__(self, host, port, ctx, timeout):
        self._ctx = ctx
        self._timeout = timeout
        super().__init__()
        self.timeout = timeout
        self.connect(host, port)

    def connect(self, host="localhost", port=0, source_address=None):
        if port == 0:
            return (0, b"")
        raw = socket.create_connection((host, port), self._timeout)
        self.sock = self._ctx.wrap_socket(raw, server_hostname=host)
        self.file = None
        code, msg = self.getreply()
        return code, msg


def connect(args):
    if args.tls == "implicit":
        return ImplicitLMTP(args.host, args.port, context(args), args.timeout)
    client = smtplib.LMTP(args.host, args.port, timeout=args.timeout)
    if args.tls == "starttls":
        client.ehlo_or_helo_if_needed()
        code, msg = client.starttls(context=context(args))
        if code != 220:
            raise SystemExit(f"STARTTLS refused: {code} {msg}")
    return client


def message(mid, size):
    head = (f"From: sender@example.org\r\nTo: rcpt@example.com\r\nSubject: test {mid}\r\n"
            f"Message-ID: <{mid}@test>\r\n\r\n")
    line = "0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ " + mid + "\r\n"
    body = ""
    while len(head) + len(body) < size:
        body += line
    return (head + body).encode()


def lmtp_send(client, sender, rcpts, data, xid=None):
    """MAIL, RCPTs, DATA; returns [(rcpt, code, text)], refused RCPTs included."""
    client.ehlo_or_helo_if_needed()
    opts = [f"XID={xid}"] if xid else []
    code, text = client.mail(sender, opts)
    if code != 250:
        return [(r, code, text.decode(errors="replace")) for r in rcpts]
    results = {}
    accepted = []
    for r in rcpts:
        code, text = client.rcpt(r)
        if code == 250:
            accepted.append(r)
        else:
            results[r] = (code, text.decode(errors="replace"))
    if accepted:
        client.putcmd("data")
        code, text = client.getreply()
        if code != 354:
            for r in accepted:
                results[r] = (code, text.decode(errors="replace"))
        else:
            client.send(re.sub(rb"(?m)^\.", b"..", data))
            if not data.endswith(b"\r\n"):
                client.send(b"\r\n")
            client.send(b".\r\n")
            for r in accepted:
                code, text = client.getreply()
                results[r] = (code, text.decode(errors="replace"))
    else:
        client.rset()
    return [(r,) + results[r] for r in rcpts]


def cmd_send(args):
    # The message is made before connecting: the store's greeting idle timeout (5 s in the tests)
    # must not run while a large one is built on a loaded machine.
    data = open(args.data, "rb").read() if args.data else message("single", args.size)
    client = connect(args)
    for r, code, text in lmtp_send(client, args.sender, args.rcpt, data, args.xid):
        print(f"RCPT {r} {code} {text}")
    client.quit()


def cmd_storm(args):
    lock = threading.Lock()
    acked = open(args.acked, "a", buffering=1)
    counter = iter(range(args.messages))
    errors = []

    def worker(n):
        try:
            client = connect(args)
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                mid = f"m{i:06d}"
                user = args.users[i % len(args.users)]
                result = lmtp_send(client, args.sender, [user], message(mid, args.size), xid="x" + mid)
                if result[0][1] == 250:
                    with lock:
                        acked.write(f"{mid} {user}\n")
            client.quit()
        except Exception as e:  # the store was killed: this session ends
            with lock:
                errors.append(f"session {n}: {e!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"errors={len(errors)}")
    for e in errors[:5]:
        print(e)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["send", "storm"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", choices=["off", "implicit", "starttls"], default="off")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--ca")
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--sender", default="sender@example.org")
    p.add_argument("--rcpt", action="append", default=[])
    p.add_argument("--data")
    p.add_argument("--size", type=int, default=1000)
    p.add_argument("--xid")
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--messages", type=int, default=100)
    p.add_argument("--users", nargs="*", default=[])
    p.add_argument("--acked")
    args = p.parse_args()
    try:
        {"send": cmd_send, "storm": cmd_storm}[args.command](args)
    except (ssl.SSLError, ConnectionError, smtplib.SMTPException, OSError) as e:
        print(f"FAILED {type(e).__name__}: {e}")
        sys.exit(3)


if __name__ == "__main__":
    main()
