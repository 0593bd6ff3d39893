#!/usr/bin/env python3
# smtp_stub.py: a small SMTP server for the client session tests (python3's smtpd is gone and
# aiosmtpd is not packaged here): PIPELINING, SIZE, 8BITMIME, CHUNKING, optional STARTTLS with a
# PEM certificate, scripted recipient answers, a transcript of every command it read.
import argparse
import socket
import ssl
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--transcript", required=True)
    p.add_argument("--starttls", choices=["no", "yes", "refuse", "inject"], default="no")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--chunking", action="store_true")
    p.add_argument("--no-pipelining", action="store_true")
    a = p.parse_args()

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(60)
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(srv.getsockname()[1]))
    import os
    os.rename(a.port_file + ".tmp", a.port_file)
    log = open(a.transcript, "a", buffering=1)
    while True:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            return
        try:
            session(conn, a, log)
        except (OSError, ssl.SSLError) as e:
            log.write("! error %s\n" % e)
        finally:
            try:
                conn.close()
            except OSError:
                pass


class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                return None
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l.decode("utf-8", "replace")

    def exactly(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                return None
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def session(sock, a, log):
    r = Reader(sock)
    tls = False
    sock.sendall(b"220 stub.test ESMTP ready\r\n")
    log.write("* connect\n")
    rcpts = []
    while True:
        line = r.line()
        if line is None:
            log.write("* eof\n")
            return
        log.write(("tls: " if tls else "plain: ") + line + "\n")
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO":
            caps = ["stub.test hello"]
            if not a.no_pipelining:
                caps.append("PIPELINING")
            caps += ["SIZE 1000000", "8BITMIME", "ENHANCEDSTATUSCODES"]
            if a.chunking:
                caps.append("CHUNKING")
            if a.starttls != "no" and not tls:
                caps.append("STARTTLS")
            out = "".join("250-%s\r\n" % c for c in caps[:-1]) + "250 %s\r\n" % caps[-1]
            sock.sendall(out.encode())
        elif verb == "STARTTLS":
            if a.starttls == "refuse":
                sock.sendall(b"454 4.7.0 TLS not available now\r\n")
                continue
            if a.starttls == "inject":
                # What an attacker on the path appends: a reply the client must never read.
                sock.sendall(b"220 2.0.0 go ahead\r\n250-injected\r\n250 PIPELINING\r\n")
            else:
                sock.sendall(b"220 2.0.0 go ahead\r\n")
            if r.buf:
                log.write("! client pipelined after STARTTLS\n")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(a.cert, a.key)
            sock = ctx.wrap_socket(sock, server_side=True)
            r = Reader(sock)
            tls = True
            log.write("* tls %s\n" % sock.version())
        elif verb == "MAIL":
            rcpts = []
            sock.sendall(b"250 2.1.0 ok\r\n")
        elif verb == "RCPT":
            addr = line[line.find("<") + 1:line.find(">")]
            if addr.startswith("bad"):
                sock.sendall(b"550 5.1.1 no such user\r\n")
            elif addr.startswith("tmp"):
                sock.sendall(b"450 4.2.1 try later\r\n")
            else:
                rcpts.append(addr)
                sock.sendall(b"250 2.1.5 ok\r\n")
        elif verb == "DATA":
            if not rcpts:
                sock.sendall(b"554 5.5.1 no valid recipients\r\n")
                continue
            sock.sendall(b"354 go\r\n")
            body = []
            while True:
                l = r.line()
                if l is None:
                    return
                if l == ".":
                    break
                body.append(l)
            log.write("* data %d lines\n" % len(body))
            sock.sendall(b"250 2.0.0 queued as STUB1\r\n")
        elif verb == "BDAT":
            parts = line.split()
            data = r.exactly(int(parts[1]))
            log.write("* bdat %d\n" % len(data))
            sock.sendall(b"250 2.0.0 queued as STUB2\r\n")
        elif verb == "RSET":
            rcpts = []
            sock.sendall(b"250 2.0.0 ok\r\n")
        elif verb == "NOOP":
            sock.sendall(b"250 2.0.0 ok\r\n")
        elif verb == "QUIT":
            sock.sendall(b"221 2.0.0 bye\r\n")
            log.write("* quit\n")
            return
        else:
            sock.sendall(b"500 5.5.2 what\r\n")


if __name__ == "__main__":
    sys.exit(main())
