#!/usr/bin/env python3
# smtp_sink.py: an SMTP server that keeps what it receives, for the Postfix peer tests: one thread per
# session, optional STARTTLS with a PEM certificate, every message as OUT/N.eml (the data, dot-unstuffed)
# beside OUT/N.env (helo, tls, mail, rcpt lines), both renamed into place when complete.
import argparse
import os
import socket
import ssl
import sys
import threading


class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                return None
            d = self.sock.recv(65536)
            if not d:
                return None
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l


class Sink:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.count = 0

    def next_name(self):
        with self.lock:
            self.count += 1
            return os.path.join(self.args.out, "%06d" % self.count)

    def keep(self, env, data):
        base = self.next_name()
        with open(base + ".eml.tmp", "wb") as f:
            f.write(data)
        os.rename(base + ".eml.tmp", base + ".eml")
        with open(base + ".env.tmp", "w") as f:
            f.write("".join("%s %s\n" % kv for kv in env))
        os.rename(base + ".env.tmp", base + ".env")

    def session(self, sock):
        sock.settimeout(30)
        r = Reader(sock)
        tls = "none"
        helo = ""
        mail = None
        rcpts = []
        sock.sendall(b"220 sink.test ESMTP ready\r\n")
        while True:
            raw = r.line()
            if raw is None:
                return
            line = raw.decode("utf-8", "replace")
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                helo = line[5:].strip()
                caps = ["sink.test", "PIPELINING", "SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES"]
                if self.args.starttls and tls == "none":
                    caps.append("STARTTLS")
                if verb == "HELO":
                    caps = caps[:1]
                sock.sendall(("".join("250-%s\r\n" % c for c in caps[:-1]) + "250 %s\r\n" % caps[-1]).encode())
            elif verb == "STARTTLS" and self.args.starttls and tls == "none":
                sock.sendall(b"220 2.0.0 go ahead\r\n")
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(self.args.cert, self.args.key)
                sock = ctx.wrap_socket(sock, server_side=True)
                r = Reader(sock)
                tls = sock.version()
                helo, mail, rcpts = "", None, []
            elif verb == "MAIL":
                mail = line[line.find("<") + 1:line.find(">")]
                rcpts = []
                sock.sendall(b"250 2.1.0 ok\r\n")
            elif verb == "RCPT":
                if mail is None:
                    sock.sendall(b"503 5.5.1 MAIL first\r\n")
                    continue
                rcpts.append(line[line.find("<") + 1:line.find(">")])
                sock.sendall(b"250 2.1.5 ok\r\n")
            elif verb == "DATA":
                if not rcpts:
                    sock.sendall(b"554 5.5.1 no valid recipients\r\n")
                    continue
                sock.sendall(b"354 go ahead\r\n")
                data = []
                while True:
                    l = r.line()
                    if l is None:
                        return
                    if l == b".":
                        break
                    data.append(l[1:] if l.startswith(b".") else l)
                env = [("helo", helo), ("tls", tls), ("mail", mail)] + [("rcpt", x) for x in rcpts]
                self.keep(env, b"".join(x + b"\r\n" for x in data))
                sock.sendall(b"250 2.0.0 kept\r\n")
                mail, rcpts = None, []
            elif verb == "RSET":
                mail, rcpts = None, []
                sock.sendall(b"250 2.0.0 ok\r\n")
            elif verb == "NOOP":
                sock.sendall(b"250 2.0.0 ok\r\n")
            elif verb == "QUIT":
                sock.sendall(b"221 2.0.0 bye\r\n")
                return
            else:
                sock.sendall(b"502 5.5.2 not here\r\n")

    def serve(self, conn):
        try:
            self.session(conn)
        except (OSError, ssl.SSLError) as e:
            sys.stderr.write("session error: %s\n" % e)
        finally:
            try:
                conn.close()
            except OSError:
                pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--starttls", action="store_true")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--port", type=int, default=0, help="0: any free port")
    p.add_argument("--lifetime", type=int, default=300, help="exit after this many seconds")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", a.port))
    srv.listen(64)
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(srv.getsockname()[1]))
    os.rename(a.port_file + ".tmp", a.port_file)
    sink = Sink(a)
    # A leftover sink must not live on: it exits by itself after --lifetime.
    threading.Timer(a.lifetime, lambda: os._exit(0)).start()
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=sink.serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
