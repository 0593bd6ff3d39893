#!/usr/bin/env python3
# smtp_peer.py: the SMTP server the tests use as a remote MX or relay target (python3's smtpd is gone
# and aiosmtpd is not packaged here): one thread per session, PIPELINING, SIZE, 8BITMIME, optional
# CHUNKING, STARTTLS with a PEM certificate (or refused, or with an injected reply after its 220),
# recipients "bad..." refused with 550 and "tmp..." with 450; a transcript of every command read
# (--transcript) and every message kept as OUT/N.eml (dot-unstuffed) beside OUT/N.env (helo, tls,
# mail, rcpt lines), both renamed into place when complete (--out). Exits by itself after --lifetime.
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

    def exactly(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                return None
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class Peer:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.count = 0
        self.log = open(args.transcript, "a", buffering=1) if args.transcript else None

    def note(self, text):
        if self.log:
            with self.lock:
                self.log.write(text + "\n")

    def keep(self, env, data):
        if not self.args.out:
            return
        with self.lock:
            self.count += 1
            base = os.path.join(self.args.out, "%06d" % self.count)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(data)
        os.rename(base + ".eml.tmp", base + ".eml")
        with open(base + ".env.tmp", "w") as f:
            f.write("".join("%s %s\n" % kv for kv in env))
        os.rename(base + ".env.tmp", base + ".env")

    def caps(self, tls):
        caps = ["peer.test hello"]
        if not self.args.no_pipelining:
            caps.append("PIPELINING")
        caps += ["SIZE %d" % self.args.size, "8BITMIME", "ENHANCEDSTATUSCODES"]
        if self.args.chunking:
            caps.append("CHUNKING")
        if self.args.starttls != "no" and tls == "none":
            caps.append("STARTTLS")
        return caps

    def session(self, sock):
        a = self.args
        sock.settimeout(30)
        r = Reader(sock)
        tls = "none"
        helo, mail, rcpts = "", None, []
        sock.sendall(b"220 peer.test ESMTP ready\r\n")
        self.note("* connect")
        while True:
            raw = r.line()
            if raw is None:
                self.note("* eof")
                return
            line = raw.decode("utf-8", "replace")
            self.note(("tls: " if tls != "none" else "plain: ") + line)
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                helo = line[5:].strip()
                caps = self.caps(tls) if verb == "EHLO" else ["peer.test"]
                sock.sendall(("".join("250-%s\r\n" % c for c in caps[:-1]) + "250 %s\r\n" % caps[-1]).encode())
            elif verb == "STARTTLS" and a.starttls != "no" and tls == "none":
                if a.starttls == "refuse":
                    sock.sendall(b"454 4.7.0 TLS not available now\r\n")
                    continue
                if a.starttls == "inject":
                    # What an attacker on the path appends: a reply the client must never read.
                    sock.sendall(b"220 2.0.0 go ahead\r\n250-injected\r\n250 PIPELINING\r\n")
                else:
                    sock.sendall(b"220 2.0.0 go ahead\r\n")
                if r.buf:
                    self.note("! client pipelined after STARTTLS")
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(a.cert, a.key)
                sock = ctx.wrap_socket(sock, server_side=True)
                r = Reader(sock)
                tls = sock.version()
                helo, mail, rcpts = "", None, []
                self.note("* tls %s" % tls)
            elif verb == "MAIL":
                mail = line[line.find("<") + 1:line.find(">")]
                rcpts = []
                sock.sendall(b"250 2.1.0 ok\r\n")
            elif verb == "RCPT":
                addr = line[line.find("<") + 1:line.find(">")]
                if mail is None:
                    sock.sendall(b"503 5.5.1 MAIL first\r\n")
                elif addr.startswith("bad"):
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
                sock.sendall(b"354 go ahead\r\n")
                data = []
                while True:
                    l = r.line()
                    if l is None:
                        return
                    if l == b".":
                        break
                    data.append(l[1:] if l.startswith(b".") else l)
                self.note("* data %d lines" % len(data))
                env = [("helo", helo), ("tls", tls), ("mail", mail)] + [("rcpt", x) for x in rcpts]
                self.keep(env, b"".join(x + b"\r\n" for x in data))
                sock.sendall(b"250 2.0.0 queued as PEER1\r\n")
                mail, rcpts = None, []
            elif verb == "BDAT" and a.chunking:
                parts = line.split()
                data = r.exactly(int(parts[1]))
                if data is None:
                    return
                self.note("* bdat %d" % len(data))
                sock.sendall(b"250 2.0.0 queued as PEER2\r\n")
            elif verb == "RSET":
                mail, rcpts = None, []
                sock.sendall(b"250 2.0.0 ok\r\n")
            elif verb == "NOOP":
                sock.sendall(b"250 2.0.0 ok\r\n")
            elif verb == "QUIT":
                sock.sendall(b"221 2.0.0 bye\r\n")
                self.note("* quit")
                return
            else:
                sock.sendall(b"500 5.5.2 what\r\n")

    def serve(self, conn):
        try:
            self.session(conn)
        except (OSError, ssl.SSLError) as e:
            self.note("! error %s" % e)
        finally:
            try:
                conn.close()
            except OSError:
                pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--port", type=int, default=0, help="0: any free port")
    p.add_argument("--transcript")
    p.add_argument("--out", help="keep every message here")
    p.add_argument("--starttls", choices=["no", "yes", "refuse", "inject"], default="no")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--chunking", action="store_true")
    p.add_argument("--no-pipelining", action="store_true")
    p.add_argument("--size", type=int, default=10240000)
    p.add_argument("--lifetime", type=int, default=300, help="exit after this many seconds")
    a = p.parse_args()
    if a.out:
        os.makedirs(a.out, exist_ok=True)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", a.port))
    srv.listen(64)
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(srv.getsockname()[1]))
    os.rename(a.port_file + ".tmp", a.port_file)
    peer = Peer(a)
    # A leftover peer must not live on: it exits by itself after --lifetime.
    threading.Timer(a.lifetime, lambda: os._exit(0)).start()
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=peer.serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
