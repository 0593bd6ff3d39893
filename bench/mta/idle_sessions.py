#!/usr/bin/env python3
# idle_sessions.py: holds N SMTP sessions open and idle (greeting read, EHLO answered) for
# bench/mta/run's memory figure; writes the count to --ready once all are up, then waits for stdin to
# close (or --hold seconds) and ends each with QUIT.
import argparse
import socket
import sys


def read_reply(sock, buf):
    # One complete reply: lines until "NNN " (RFC 5321 §4.2.1); returns (code, rest of buffer).
    while True:
        while b"\r\n" not in buf:
            d = sock.recv(4096)
            if not d:
                raise OSError("connection closed")
            buf += d
        line, buf = buf.split(b"\r\n", 1)
        if len(line) >= 4 and line[3:4] == b" ":
            return int(line[:3]), buf


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--hold", type=float, default=120)
    a = p.parse_args()
    socks = []
    for _ in range(a.count):
        s = socket.create_connection(("127.0.0.1", a.port), timeout=30)
        code, buf = read_reply(s, b"")
        if code != 220:
            sys.exit("greeting %d" % code)
        s.sendall(b"EHLO idle.bench.example\r\n")
        code, buf = read_reply(s, buf)
        if code != 250:
            sys.exit("EHLO %d" % code)
        socks.append(s)
    with open(a.ready, "w") as f:
        f.write("%d\n" % len(socks))
    import select
    select.select([sys.stdin], [], [], a.hold)
    for s in socks:
        try:
            s.sendall(b"QUIT\r\n")
            s.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
