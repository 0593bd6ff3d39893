#!/usr/bin/env python3
# starttls_client.py: drives postern-echo's STARTTLS with Python's ssl module (OpenSSL), sending
# plaintext pipelined behind STARTTLS in the same write; prints every line it reads after the
# handshake, so the test can check the injected line was never executed.
import socket
import ssl
import sys

host, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sock = socket.create_connection((host, port), timeout=10)
reader = sock.makefile("rb")
print("greeting:", reader.readline().decode().strip())
sock.sendall(b"STARTTLS\r\nINJECTED\r\n")
print("starttls:", reader.readline().decode().strip())
context = ssl.create_default_context(cafile=cafile)
tls = context.wrap_socket(sock, server_hostname="localhost")
print("version:", tls.version())
tls_reader = tls.makefile("rb")
tls.sendall(b"TLSINFO\r\nafter\r\nQUIT\r\n")
for _ in range(3):
    print("line:", tls_reader.readline().decode().strip())
