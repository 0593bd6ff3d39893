#!/usr/bin/env python3
# replay_capture.py: replays a client capture (captures/*.txt, from record_proxy.py or written by
# hand) against the mmp's IMAPS port, byte for byte as the client sent it: literals wait for "+"
# unless LITERAL+, a "+" during a command (AUTHENTICATE, IDLE) is answered with the capture's next
# client line. Checks every server response is well-formed IMAP (RFC 9051 §9 shapes: balanced
# lists and brackets, quoted strings, literals of the announced size, known untagged kinds) and
# each tagged answer is the one the capture recorded (OK when the capture has none). Capture format:
#   "# connection" starts a session; "C: " a client line; "S: " a server line (for comparison);
#   "#? <why>" marks the next command optional (a feature the mmp may not have yet); other "#" lines
#   are comments. Bytes outside printable ASCII, and backslash itself, are written \xNN / \\.
# Prints: "answer <tag> <status>", "optional <tag> <status> <why>", "malformed <line>",
#         "mismatch <tag> got <status> captured <status>", and "summary ..." at the end.
import argparse
import re
import socket
import ssl
import sys

UNTAGGED = {b"OK", b"NO", b"BAD", b"BYE", b"PREAUTH", b"CAPABILITY", b"LIST", b"LSUB", b"STATUS", b"SEARCH",
            b"ESEARCH", b"FLAGS", b"NAMESPACE", b"QUOTA", b"QUOTAROOT", b"ID", b"ENABLED", b"VANISHED"}
SHOW = False
NUMBERED = {b"EXISTS", b"EXPUNGE", b"RECENT", b"FETCH"}


def unescape(text):
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and text[i + 1:i + 2] == "\\":
            out.append(0x5C)
            i += 2
        elif ch == "\\" and text[i + 1:i + 2] == "x":
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            out += ch.encode()
            i += 1
    return bytes(out)


def load(path):
    """[(client byte stream, {tag: captured status}, {tag: optional reason})] per connection."""
    conns = []
    cur = None
    pending_optional = None
    last_tag_line = True
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        if line == "# connection":
            cur = {"client": [], "status": {}, "optional": {}}
            conns.append(cur)
            continue
        if line.startswith("#? "):
            pending_optional = line[3:]
            continue
        if line.startswith("#") or not line:
            continue
        who, _, data = line.partition(": ")
        if who == "C":
            data_b = unescape(data)
            cur["client"].append(data_b)
            if pending_optional is not None:
                cur["optional"][data_b.split(b" ", 1)[0]] = pending_optional
                pending_optional = None
        elif who == "S":
            m = re.match(rb"^([A-Za-z0-9.]+) (OK|NO|BAD)\b", unescape(data))
            if m and m.group(1) not in (b"*", b"+"):
                cur["status"][m.group(1)] = m.group(2)
    return [(b"".join(l + b"\r\n" for l in c["client"]), c["status"], c["optional"]) for c in conns]


class Server:
    def __init__(self, port, ca):
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = False
        self.s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20))
        self.buf = b""

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("server closed")
        self.buf += chunk

    def response(self):
        """One whole server response: its line, with any literals inside it."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, self.buf = self.buf.split(b"\r\n", 1)
            out += line
            m = re.search(rb"\{(\d+)\}$", line)
            if not m:
                return out
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            out += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]


def well_formed(resp):
    """None if `resp` has the shape of an IMAP response, else why not."""
    if resp.startswith(b"+"):
        return None
    m = re.match(rb"^(\*|[A-Za-z0-9.]+) ", resp)
    if not m:
        return "no tag"
    rest = resp[m.end():]
    if m.group(1) == b"*":
        num = re.match(rb"^(\d+) ([A-Z]+)", rest)
        if num:
            if num.group(2) not in NUMBERED:
                return "unknown numbered response " + num.group(2).decode()
            if num.group(2) == b"FETCH" and not rest[num.end():].startswith(b" ("):
                return "FETCH without a list"
        else:
            kind = re.match(rb"^([A-Z]+)", rest)
            if not kind or kind.group(1) not in UNTAGGED:
                return "unknown untagged response"
    elif not re.match(rb"^(OK|NO|BAD|BYE)( |$)", rest):
        return "tagged response without OK/NO/BAD"
    # Lists, brackets, quoted strings and literals.
    depth = []
    i = 0
    while i < len(rest):
        c = rest[i:i + 1]
        if c == b'"':
            i += 1
            while i < len(rest) and rest[i:i + 1] != b'"':
                if rest[i:i + 1] == b"\\":
                    i += 1
                if rest[i:i + 1] in (b"\r", b"\n"):
                    return "line end in a quoted string"
                i += 1
            if i >= len(rest):
                return "unterminated quoted string"
        elif c == b"{":
            lit = re.match(rb"\{(\d+)\}\r\n", rest[i:])
            if not lit:
                return "bad literal"
            n = int(lit.group(1))
            if len(rest) < i + lit.end() + n:
                return "short literal"
            i += lit.end() + n - 1
        elif c in (b"(", b"["):
            depth.append(b")" if c == b"(" else b"]")
        elif c in (b")", b"]"):
            # "]" also closes the response code around text; a stray one in text is tolerated
            # only outside lists.
            if depth and depth[-1] == c:
                depth.pop()
            elif c == b")":
                return "unbalanced )"
        elif c in (b"\r", b"\n"):
            return "bare CR or LF"
        i += 1
    if b")" in depth:
        return "unclosed ("
    return None


def replay(port, ca, client, captured, optional, stats):
    srv = Server(port, ca)
    greeting = srv.response()
    print("greeting %s" % greeting.decode(errors="replace"))
    why = well_formed(greeting)
    if why:
        print("malformed %s: %r" % (why, greeting))
        stats["malformed"] += 1
    lines = client.split(b"\r\n")[:-1]
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        tag = line.split(b" ", 1)[0]
        srv.s.sendall(line + b"\r\n")
        # Literals of the command: synchronising ones wait for "+".
        while True:
            lit = re.search(rb"\{(\d+)(\+?)\}$", line)
            if not lit:
                break
            n = int(lit.group(1))
            if not lit.group(2):
                resp = srv.response()
                while not resp.startswith(b"+"):
                    if resp.startswith(tag + b" "):
                        break
                    resp = srv.response()
                if resp.startswith(tag + b" "):
                    print("literal refused %s" % resp.decode(errors="replace"))
                    break
            data = b""
            while len(data) < n + 2:
                data += lines[i] + b"\r\n"
                i += 1
            literal, line = data[:n], data[n:].rstrip(b"\r\n")
            srv.s.sendall(literal + line + b"\r\n")
        stats["commands"] += 1
        while True:
            resp = srv.response()
            if SHOW:
                print("S: %s" % resp[:200].decode(errors="replace"))
            why = well_formed(resp)
            if why:
                print("malformed %s: %r" % (why, resp[:300]))
                stats["malformed"] += 1
            if resp.startswith(b"+"):
                # AUTHENTICATE or IDLE: the capture's next line is the client's answer.
                srv.s.sendall(lines[i] + b"\r\n")
                i += 1
                continue
            if resp.startswith(tag + b" "):
                break
        status = resp.split(b" ")[1]
        expected = captured.get(tag, b"OK")
        if tag in optional:
            state = "supported" if status == expected else "missing"
            print("optional %s %s %s (%s)" % (tag.decode(), status.decode(), state, optional[tag]))
            stats["optional_" + state] += 1
        elif status != expected:
            print("mismatch %s got %s captured %s: %s" % (tag.decode(), status.decode(), expected.decode(),
                                                          resp.decode(errors="replace")))
            stats["mismatch"] += 1
        else:
            print("answer %s %s" % (tag.decode(), status.decode()))
            stats["ok"] += 1
    srv.s.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--show", action="store_true", help="print every server response too")
    p.add_argument("capture")
    args = p.parse_args()
    global SHOW
    SHOW = args.show
    stats = {"commands": 0, "ok": 0, "mismatch": 0, "malformed": 0, "optional_supported": 0, "optional_missing": 0}
    for n, (client, captured, optional) in enumerate(load(args.capture)):
        print("connection %d" % (n + 1))
        replay(args.port, args.ca, client, captured, optional, stats)
    print("summary " + " ".join("%s=%d" % kv for kv in stats.items()))


if __name__ == "__main__":
    try:
        main()
    except (OSError, ssl.SSLError, EOFError, IndexError) as e:
        print("FAILED %s: %s" % (type(e).__name__, e))
        sys.exit(3)
