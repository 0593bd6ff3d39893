#!/usr/bin/env python3
# tls_client.py: adversarial and byte-level TLS clients for server_test.cpp (Python's ssl module over
# memory BIOs, so every byte on the wire is under control). Usage: tls_client.py MODE HOST PORT [ARGS].
#   starttls-inject CAFILE   EHLO, then "STARTTLS\r\nINJECTED\r\n" in one write, TLS, NOOP, QUIT
#   bytewise CAFILE          implicit TLS with every handshake byte in its own TCP segment
#   garbage                  an HTTP request instead of a ClientHello
#   raw HEX                  these bytes instead of a ClientHello: prints how long until the server closed
#   starttls-raw HEX         EHLO, STARTTLS, then these bytes in plaintext instead of a ClientHello
#   hello-silence            a ClientHello, then nothing: prints how long until the server closed
#   disconnect-mid           a ClientHello, read a little, then a reset
#   bulk CAFILE LINES        TLS 1.3, LINES lines of 700 bytes echoed back, 20 at a time
#   tamper CAFILE            TLS 1.3, one line echoed, then a forged record: prints the alert
#   half-record CAFILE       TLS 1.3, one line echoed, then half a record and a close
# Prints what it saw, one "key: value" line each; exits 0 when the mode ran to its end.
import socket
import ssl
import struct
import sys
import time


def connect(host, port):
    s = socket.create_connection((host, int(port)), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_line(s, buf):
    while b"\r\n" not in buf[0]:
        data = s.recv(4096)
        if not data:
            raise EOFError("closed")
        buf[0] += data
    line, rest = buf[0].split(b"\r\n", 1)
    buf[0] = rest
    return line.decode("latin-1")


class MemTls:
    """TLS client over memory BIOs on a plain socket."""

    def __init__(self, sock, cafile, server_name="localhost", bytewise=False):
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_name)
        self.bytewise = bytewise
        self.sent_segments = 0

    def flush(self):
        data = self.outgoing.read()
        if not data:
            return
        if self.bytewise:
            for i in range(len(data)):
                self.sock.sendall(data[i:i + 1])
                self.sent_segments += 1
                time.sleep(0.001)
        else:
            self.sock.sendall(data)

    def pump_in(self):
        data = self.sock.recv(65536)
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self.flush()
                return
            except ssl.SSLWantReadError:
                self.flush()
                if not self.pump_in():
                    raise EOFError("closed during handshake")

    def send(self, data):
        self.obj.write(data)
        self.flush()

    def read_line(self):
        buf = b""
        while b"\r\n" not in buf:
            try:
                buf += self.obj.read(4096)
            except ssl.SSLWantReadError:
                self.flush()
                if not self.pump_in():
                    raise EOFError("closed")
        return buf.split(b"\r\n", 1)[0].decode("latin-1"), buf.split(b"\r\n", 1)[1]


def client_hello(cafile=None):
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def starttls_inject(host, port, cafile):
    s = connect(host, port)
    buf = [b""]
    print("greeting:", read_line(s, buf))
    s.sendall(b"EHLO client.example\r\n")
    while True:
        line = read_line(s, buf)
        if line.startswith("250 "):
            break
    # The injected command rides in the same segment as STARTTLS (CVE-2011-0411).
    s.sendall(b"STARTTLS\r\nINJECTED\r\n")
    print("starttls:", read_line(s, buf))
    if buf[0]:
        print("plaintext-after-220:", buf[0])
    tls = MemTls(s, cafile)
    tls.handshake()
    print("protocol:", tls.obj.version())
    tls.send(b"NOOP\r\n")
    line, _ = tls.read_line()
    print("first-reply:", line)
    tls.send(b"QUIT\r\n")
    line, _ = tls.read_line()
    print("quit-reply:", line)


def read_to_end(tls):
    """Reads until the server ends the stream: "close_notify", or "closed" (TCP end without it)."""
    while True:
        try:
            if not tls.obj.read(4096):
                return "close_notify"
        except ssl.SSLWantReadError:
            if not tls.pump_in():
                return "closed"


def bytewise(host, port, cafile):
    s = connect(host, port)
    tls = MemTls(s, cafile, bytewise=True)
    tls.handshake()
    print("protocol:", tls.obj.version())
    print("segments:", tls.sent_segments)
    tls.bytewise = False
    line, rest = tls.read_line()
    print("greeting:", line)
    tls.send(b"hello bytes\r\nQUIT\r\n")
    got = rest
    while got.count(b"\r\n") < 2:
        try:
            got += tls.obj.read(4096)
        except ssl.SSLWantReadError:
            if not tls.pump_in():
                break
    for l in got.split(b"\r\n")[:2]:
        print("reply:", l.decode("latin-1"))
    # After +bye the server ends TLS properly: close_notify, then EOF.
    try:
        end = read_to_end(tls)
    except ssl.SSLEOFError:
        end = "closed"
    print("close_notify:", "yes" if end == "close_notify" else "no")


def tls13(host, port, cafile):
    tls = MemTls(connect(host, port), cafile)
    tls.obj.context.minimum_version = ssl.TLSVersion.TLSv1_3
    tls.handshake()
    print("protocol:", tls.obj.version())
    greeting, rest = tls.read_line()
    print("greeting:", greeting)
    tls.send(b"before\r\n")
    line, _ = tls.read_line()
    print("reply:", line)
    return tls


def bulk(host, port, cafile, lines):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    s = ctx.wrap_socket(connect(host, port), server_hostname="localhost")
    s.settimeout(20)
    print("protocol:", s.version())
    sent = [b"%06d " % i + bytes(65 + (i + j) % 26 for j in range(693)) for i in range(lines)] + [b"QUIT"]
    got = b""

    def read_until(count):
        nonlocal got
        while got.count(b"\r\n") < count:
            data = s.recv(65536)
            if not data:
                return
            got += data

    read_until(1)
    # 20 lines (14 KB) at a time, each batch read back before the next: one thread, and never more
    # in flight than the socket buffers hold (an SSL socket must not be read and written at once).
    for first in range(0, len(sent), 20):
        batch = sent[first:first + 20]
        s.sendall(b"".join(line + b"\r\n" for line in batch))
        read_until(1 + first + len(batch))
    replies = got.split(b"\r\n")
    print("greeting:", replies[0].decode("latin-1"))
    print("echoed:", sum(1 for a, b in zip(sent[:lines], replies[1:]) if a == b))
    print("last:", replies[lines + 1].decode("latin-1") if len(replies) > lines + 1 else "")


def tamper(host, port, cafile):
    tls = tls13(host, port, cafile)
    tls.sock.sendall(b"\x17\x03\x03\x00\x20" + b"\x55" * 32)  # not protected by the traffic key
    try:
        print("alert: none (%s)" % read_to_end(tls))
    except ssl.SSLError as e:
        print("alert:", e.reason)


def half_record(host, port, cafile):
    tls = tls13(host, port, cafile)
    tls.sock.sendall(b"\x17\x03\x03\x01\x00" + b"\x00" * 100)
    tls.sock.close()
    print("closed: yes")


def wait_closed(s, limit):
    start = time.monotonic()
    s.settimeout(limit)
    received = 0
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
            received += len(data)
    except ConnectionResetError:
        pass
    except socket.timeout:
        print("closed: no")
        return
    print("closed: yes")
    print("received:", received)
    print("seconds: %.2f" % (time.monotonic() - start))


def garbage(host, port):
    s = connect(host, port)
    s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
    wait_closed(s, 5)


def raw(host, port, payload):
    s = connect(host, port)
    s.sendall(bytes.fromhex(payload))
    wait_closed(s, 5)


def starttls_raw(host, port, payload):
    s = connect(host, port)
    buf = [b""]
    read_line(s, buf)
    s.sendall(b"EHLO client.example\r\n")
    while not read_line(s, buf).startswith("250 "):
        pass
    s.sendall(b"STARTTLS\r\n")
    print("starttls:", read_line(s, buf))
    # A separate segment after the 220, so the bytes reach the TLS layer, not the discarded buffer.
    s.sendall(bytes.fromhex(payload))
    wait_closed(s, 5)


def hello_silence(host, port):
    s = connect(host, port)
    s.sendall(client_hello())
    wait_closed(s, 10)


def disconnect_mid(host, port):
    s = connect(host, port)
    s.sendall(client_hello())
    data = s.recv(10)
    print("read:", len(data))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    print("reset: yes")


def main():
    mode, host, port = sys.argv[1], sys.argv[2], sys.argv[3]
    args = sys.argv[4:]
    if mode == "starttls-inject":
        starttls_inject(host, port, args[0])
    elif mode == "bytewise":
        bytewise(host, port, args[0])
    elif mode == "garbage":
        garbage(host, port)
    elif mode == "raw":
        raw(host, port, args[0])
    elif mode == "starttls-raw":
        starttls_raw(host, port, args[0])
    elif mode == "hello-silence":
        hello_silence(host, port)
    elif mode == "disconnect-mid":
        disconnect_mid(host, port)
    elif mode == "bulk":
        bulk(host, port, args[0], int(args[1]))
    elif mode == "tamper":
        tamper(host, port, args[0])
    elif mode == "half-record":
        half_record(host, port, args[0])
    else:
        print("unknown mode", mode)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
