#!/usr/bin/env python3
# starttls_inject.py: the STARTTLS command injection of CVE-2011-0411. A man in the middle cannot
# read the TLS session, but can append plaintext commands after the client's STARTTLS; a server
# that keeps those bytes in its input buffer runs them inside the TLS session as if the client
# had sent them. Each case prints lines a C++ test checks:
#   <case> plaintext-after-ok <bytes the server sent in plaintext after "a OK">
#   <case> handshake ok|failed <why>
#   <case> after-tls <what arrived inside TLS before we sent anything>
#   <case> fresh <tagged answer to a command sent inside TLS>
import argparse
import socket
import ssl
import sys
import time


def read_line(sock, deadline):
    data = b""
    while not data.endswith(b"\r\n"):
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def drain(sock, seconds):
    """Whatever arrives within `seconds` (b"" if nothing, b"<eof>" appended on close)."""
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except (socket.timeout, ssl.SSLWantReadError):
            break
        except (ssl.SSLError, OSError) as e:
            out += b"<error %s>" % type(e).__name__.encode()
            break
        if not chunk:
            out += b"<eof>"
            break
        out += chunk
    return out


def run_case(name, port, ca, first, second):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    deadline = time.monotonic() + 10
    greeting = read_line(sock, deadline)
    if not greeting.startswith(b"* OK"):
        print("%s greeting %r" % (name, greeting))
        return
    # `first` is one write, so one segment: the server reads STARTTLS and what follows together.
    sock.sendall(first)
    ok = read_line(sock, time.monotonic() + 10)
    print("%s starttls-answer %s" % (name, ok.decode(errors="replace").strip()))
    if second:
        sock.sendall(second)
    leftover = drain(sock, 0.5)
    print("%s plaintext-after-ok %r" % (name, leftover))
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    try:
        tls = ctx.wrap_socket(sock)
    except (ssl.SSLError, OSError) as e:
        print("%s handshake failed %s" % (name, type(e).__name__))
        return
    print("%s handshake ok" % name)
    print("%s after-tls %r" % (name, drain(tls, 1.5)))
    try:
        tls.sendall(b"c CAPABILITY\r\n")
        answer = b""
        end = time.monotonic() + 10
        while not answer.startswith(b"c ") and time.monotonic() < end:
            answer = read_line(tls, end)
            if answer.startswith(b"* CAPABILITY"):
                print("%s fresh-caps %s" % (name, answer.decode().strip()))
        print("%s fresh %s" % (name, answer.decode(errors="replace").strip()))
    except (ssl.SSLError, OSError) as e:
        print("%s fresh failed %s" % (name, type(e).__name__))
    tls.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    args = p.parse_args()
    # The classic: the injected command in the same segment as STARTTLS.
    run_case("same-packet", args.port, args.ca, b"a STARTTLS\r\nb CAPABILITY\r\n", None)
    # A login injected the same way must not log the session in (the attacker's account).
    run_case("login", args.port, args.ca, b"a STARTTLS\r\nb LOGIN mallory@example.com secret\r\nd SELECT INBOX\r\n", None)
    # Injected after the OK but before the client's handshake: the server must take it as TLS
    # (a broken ClientHello), never as a command.
    run_case("after-ok", args.port, args.ca, b"a STARTTLS\r\n", b"b CAPABILITY\r\n")
    print("done")


if __name__ == "__main__":
    try:
        main()
    except (OSError, ssl.SSLError) as e:
        print("FAILED %s: %s" % (type(e).__name__, e))
        sys.exit(3)
