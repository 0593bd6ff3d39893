#!/usr/bin/env python3
# fill.py: delivers the same seeded message set to every user's INBOX over plaintext LMTP, for
# bench/mmp/run (once to postern-store, once to Dovecot's LMTP): byte-identical messages, in the same
# order, so both servers' mailboxes hold the same mail. Standard library only.
import argparse
import base64
import random
import socket
import sys
import threading


def message(i, seed):
    """Message i of the set: text/plain of 2-8 KiB, every 25th a 64 KiB multipart with a base64
    attachment; From senderK@example.net with K = i % 20 (what the mix's SEARCH FROM asks for)."""
    r = random.Random(seed * 1000003 + i)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
             "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango"]
    headers = [
        f"From: Sender {i % 20} <sender{i % 20}@example.net>",
        "To: bench users <list@bench.example>",
        f"Subject: bench message {i} kw{r.randrange(10000):04d}",
        f"Date: Mon, 07 Dec 2026 {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d} +0000",
        f"Message-ID: <bench.{seed}.{i}@example.net>",
        "MIME-Version: 1.0",
    ]

    def text(size):
        lines, n = [], 0
        while n < size:
            line = " ".join(r.choice(words) for _ in range(10))
            lines.append(line)
            n += len(line) + 2
        return lines

    if i % 25 == 24:
        blob = base64.encodebytes(r.randbytes(48 * 1024)).decode().splitlines()
        body = ["This is a multi-part message.", "", "--b1", "Content-Type: text/plain; charset=us-ascii", ""]
        body += text(2048)
        body += ["--b1", "Content-Type: application/octet-stream; name=data.bin",
                 "Content-Transfer-Encoding: base64", "Content-Disposition: attachment; filename=data.bin", ""]
        body += blob + ["--b1--"]
        headers.append('Content-Type: multipart/mixed; boundary="b1"')
    else:
        headers.append("Content-Type: text/plain; charset=us-ascii")
        body = text(r.randrange(2048, 8192))
    return headers + [""] + body


class Lmtp:
    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), timeout=120)
        self.f = self.s.makefile("rb")
        self.reply("greeting")
        self.cmd("LHLO bench.example", "LHLO")

    def reply(self, what):
        while True:
            line = self.f.readline()
            if not line:
                raise SystemExit(f"fill: connection closed waiting for {what}")
            if line[3:4] != b"-":
                code = int(line[:3])
                if code >= 400:
                    raise SystemExit(f"fill: {what}: {line.decode(errors='replace').strip()}")
                return code

    def cmd(self, line, what):
        self.s.sendall(line.encode() + b"\r\n")
        return self.reply(what)

    def deliver(self, rcpts, lines):
        self.cmd("MAIL FROM:<bench@example.net>", "MAIL")
        for r in rcpts:
            self.cmd(f"RCPT TO:<{r}>", f"RCPT {r}")
        self.cmd("DATA", "DATA")
        data = "".join(("." + l if l.startswith(".") else l) + "\r\n" for l in lines) + ".\r\n"
        self.s.sendall(data.encode())
        for r in rcpts:  # RFC 2033: one reply per accepted recipient
            self.reply(f"data for {r}")

    def close(self):
        try:
            self.cmd("QUIT", "QUIT")
        finally:
            self.s.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--users", required=True, help="lines login<TAB>...; the first --count users get the mail")
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--batch", type=int, default=50, help="recipients per LMTP transaction")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sessions", type=int, default=5, help="LMTP sessions at once, each for its share of the users")
    a = p.parse_args()
    users = [l.split("\t")[0] for l in open(a.users) if "\t" in l][: a.count]
    messages = [message(i, a.seed) for i in range(a.messages)]
    size = sum(len(l) + 2 for m in messages for l in m)
    groups = [users[k::a.sessions] for k in range(a.sessions) if users[k::a.sessions]]
    errors = []

    def session(group):
        try:
            conn = Lmtp(a.host, a.port)
            for lines in messages:  # every user gets the messages in the same order (same UIDs)
                for k in range(0, len(group), a.batch):
                    conn.deliver(group[k:k + a.batch], lines)
            conn.close()
        except BaseException as e:  # SystemExit from a refused reply, or a socket error
            errors.append(str(e))

    threads = [threading.Thread(target=session, args=(g,)) for g in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    print(f"fill=ok users={len(users)} messages={a.messages} bytes_per_mailbox={size}")


if __name__ == "__main__":
    sys.exit(main())
