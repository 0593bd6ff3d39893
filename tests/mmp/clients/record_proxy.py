#!/usr/bin/env python3
# record_proxy.py: a recording IMAP proxy for making client captures by hand: a mail client speaks
# plaintext to 127.0.0.1:<listen>, the proxy speaks TLS to the server (the mmp's IMAPS port) and
# writes every line each side sent to the capture file, "C: " and "S: " lines, non-printable
# bytes as \xNN (replay_capture.py reads it back). One connection after another, until killed:
#   record_proxy.py --listen 14300 --port <imaps> --ca ca.pem --out capture.txt
import argparse
import socket
import ssl
import threading


def escape(data):
    out = []
    for b in data:
        if b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append("\\x%02x" % b)
    return "".join(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.check_hostname = False
    out = open(args.out, "a", buffering=1)
    lock = threading.Lock()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.listen))
    srv.listen(4)
    while True:
        client, _ = srv.accept()
        server = ctx.wrap_socket(socket.create_connection(("127.0.0.1", args.port)))
        with lock:
            out.write("# connection\n")

        def pump(src, dst, who):
            pending = b""
            while True:
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                pending += data
                while b"\r\n" in pending:
                    line, pending = pending.split(b"\r\n", 1)
                    with lock:
                        out.write("%s: %s\n" % (who, escape(line)))
                try:
                    dst.sendall(data)
                except OSError:
                    break
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        a = threading.Thread(target=pump, args=(client, server, "C"))
        b = threading.Thread(target=pump, args=(server, client, "S"))
        a.start()
        b.start()
        a.join()
        b.join()
        client.close()
        server.close()


if __name__ == "__main__":
    main()
