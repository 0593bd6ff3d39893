#!/usr/bin/env python3
# tls_close_client.py: ends a TLS connection one of three ways, so tests can tell a clean close from
# a truncation: "clean" sends close_notify (ssl unwrap), "truncate" sends a TCP FIN without it, after
# a line cut short, and "half-record" sends the header and part of a record before the FIN.
# Usage: tls_close_client.py MODE HOST PORT CAFILE
import os
import socket
import ssl
import sys

mode, host, port, cafile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sock = socket.create_connection((host, port), timeout=10)
context = ssl.create_default_context(cafile=cafile)
context.minimum_version = ssl.TLSVersion.TLSv1_3
tls = context.wrap_socket(sock, server_hostname="localhost")
reader = tls.makefile("rb")
print("greeting:", reader.readline().decode().strip())
tls.sendall(b"hello\r\n")
print("echo:", reader.readline().decode().strip())

if mode == "clean":
    tls.sendall(b"committed\r\n")
    print("echo:", reader.readline().decode().strip())
    raw = tls.unwrap()  # close_notify both ways
    print("unwrapped: yes")
    raw.shutdown(socket.SHUT_WR)
    print("after-close:", repr(raw.recv(100)))
elif mode == "truncate":
    tls.sendall(b"cut-short-without-newline")
    # SSLSocket.shutdown is the TCP shutdown alone: no close_notify goes out.
    tls.shutdown(socket.SHUT_WR)
    try:
        print("after-close:", repr(tls.recv(100)))
    except (OSError, ssl.SSLError) as e:
        print("after-close:", type(e).__name__)
elif mode == "half-record":
    raw = socket.socket(fileno=os.dup(tls.fileno()))
    # An application_data record header announcing 64 bytes, then 10 of them.
    raw.sendall(b"\x17\x03\x03\x00\x40" + b"\x00" * 10)
    raw.shutdown(socket.SHUT_WR)
    try:
        print("after-close:", repr(raw.recv(100)))
    except OSError as e:
        print("after-close:", type(e).__name__)
    raw.close()
else:
    sys.exit("unknown mode " + mode)
print("done: yes")
