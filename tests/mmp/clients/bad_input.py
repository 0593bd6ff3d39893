#!/usr/bin/env python3
# bad_input.py: hostile and broken IMAP through the running mmp (raw TLS socket), each case on its
# own connection, and what the store saw meanwhile. The store's gRPC traces one trailer line per
# call it answers ("TRL:SVR:grpc-status", GRPC_TRACE=http in its environment); each case prints
#   case <name> answer=<the tagged answer or BYE or EOF> store-calls=<calls during the case>
# and a control case whose good command must show up as store calls, so the count can fail.
import argparse
import socket
import ssl
import sys
import time

TRACE = b"TRL:SVR:grpc-status"


class Conn:
    def __init__(self, port, ca):
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = False
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.s = ctx.wrap_socket(raw)
        self.buf = b""
        self.greeting = self.line()

    def send(self, data):
        self.s.sendall(data)

    def line(self, timeout=20):
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            self.s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.s.recv(65536)
            except (socket.timeout, TimeoutError):
                return b"<timeout>"
            except (ssl.SSLError, OSError):
                return b"<eof>"
            if not chunk:
                return b"<eof>"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def answer(self, tag, timeout=20):
        """The tagged answer to `tag`, or the BYE that ended the session, or <eof>/<timeout>."""
        untagged = []
        while True:
            line = self.line(timeout)
            if line in (b"<eof>", b"<timeout>") or line.startswith(tag + b" "):
                return line, untagged
            if line.startswith(b"* BYE"):
                rest = self.line(2)
                if rest.startswith(tag + b" "):
                    return rest, untagged + [line]
                return line, untagged
            untagged.append(line)

    def command(self, tag, text):
        self.send(tag + b" " + text + b"\r\n")
        return self.answer(tag)

    def login(self, user, password):
        line, _ = self.command(b"l0", b"LOGIN " + user + b" " + password)
        assert line.startswith(b"l0 OK"), line

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--store-log", required=True)
    p.add_argument("--user", default="alice@example.com")
    p.add_argument("--password", default="secret-alice")
    args = p.parse_args()
    user, password = args.user.encode(), args.password.encode()

    def calls():
        time.sleep(0.5)  # what the mmp may still send on has time to reach the store's log
        with open(args.store_log, "rb") as f:
            return f.read().count(TRACE)

    def case(name, body, login=True, select=False):
        c = Conn(args.port, args.ca)
        if login:
            c.login(user, password)
        if select:
            line, _ = c.command(b"s0", b"SELECT INBOX")
            assert line.startswith(b"s0 OK"), line
        before = calls()
        try:
            answer = body(c)
        except (OSError, ssl.SSLError) as e:
            answer = ("<%s>" % type(e).__name__).encode()
        after = calls()
        print("case %s answer=%s store-calls=%d" % (name, answer.decode("utf-8", "replace"), after - before))
        sys.stdout.flush()
        c.close()

    # Control: a good STATUS is a store call, so a count of 0 below means something.
    case("control-status", lambda c: c.command(b"c1", b"STATUS INBOX (MESSAGES)")[0])

    # Literals that do not balance: three octets announced, more sent, so the command has text
    # after its last argument (BAD); and a LITERAL+ literal whose bytes never come (the session
    # waits for them, with its idle timer, and answers nothing meanwhile).
    def short_literal(c):
        c.send(b"u1 SELECT {3}\r\n")
        cont = c.line()
        if not cont.startswith(b"+"):
            return cont
        c.send(b"INBOX\r\n")
        line, _ = c.answer(b"u1")
        after, _ = c.command(b"u2", b"NOOP")  # the session resynchronised at the line's end
        return line + b" then " + after
    case("literal-longer-than-announced", short_literal)

    def never_sent(c):
        c.send(b"u3 SELECT {400+}\r\nINBOX\r\n")
        return c.line(timeout=2)
    case("literal-never-sent", never_sent)

    # A literal announced as 2 GiB: refused before any byte of it is read, synchronising or not.
    case("literal-2gib-append", lambda c: c.command(b"b1", b"APPEND INBOX {2147483648}")[0])
    case("literal-2gib-append-nonsync", lambda c: c.command(b"b2", b"APPEND INBOX {2147483648+}")[0])
    case("literal-2gib-login", lambda c: c.command(b"b3", b"LOGIN {2147483648}")[0], login=False)
    case("literal-2gib-select", lambda c: c.command(b"b4", b"SELECT {2147483648}")[0])

    # 10,000 nested parentheses, in FETCH (selected) and in SEARCH.
    case("nested-fetch", lambda c: c.command(b"n1", b"FETCH 1 " + b"(" * 10000 + b"FLAGS" + b")" * 10000)[0],
         select=True)
    case("nested-search", lambda c: c.command(b"n2", b"SEARCH " + b"(" * 10000 + b"ALL" + b")" * 10000)[0],
         select=True)

    # Commands in the wrong state.
    case("select-before-login", lambda c: c.command(b"w1", b"SELECT INBOX")[0], login=False)
    case("append-before-login", lambda c: c.command(b"w2", b"APPEND INBOX {5}")[0], login=False)
    case("fetch-not-selected", lambda c: c.command(b"w3", b"FETCH 1 (FLAGS)")[0])
    case("expunge-not-selected", lambda c: c.command(b"w4", b"EXPUNGE")[0])
    case("login-twice", lambda c: c.command(b"w5", b"LOGIN " + user + b" " + password)[0])
    case("close-not-selected", lambda c: c.command(b"w6", b"CLOSE")[0])

    # 8-bit bytes in mailbox names: an IMAP4rev1 client writes non-ASCII names in modified UTF-7,
    # so raw 8-bit is not a name; nor is an "&" sequence that does not decode.
    garbage = b"\xff\xfe\x80\xc3\x28 box"
    case("8bit-select-quoted", lambda c: c.command(b"g1", b"SELECT \"" + garbage + b"\"")[0])
    case("8bit-create-atom", lambda c: c.command(b"g2", b"CREATE \xc3\x28\xa0\xa1")[0])
    case("8bit-status-literal", lambda c: c.command(b"g3", b"STATUS {%d+}\r\n" % len(garbage) + garbage +
                                                    b" (MESSAGES)")[0])
    case("8bit-rename", lambda c: c.command(b"g4", b"RENAME INBOX \"\xe9t\xe9\"")[0])
    case("bad-mutf7-create", lambda c: c.command(b"g5", b"CREATE \"&Jjo!\"")[0])
    case("nul-in-name", lambda c: c.command(b"g6", b"CREATE {3+}\r\na\x00b")[0])

    # A flood of failed logins: the session counts its errors and ends itself with BYE.
    def login_flood(c):
        for i in range(30):
            line, untagged = c.command(b"f%d" % i, b"LOGIN " + user + b" wrong-%d" % i)
            if line.startswith(b"* BYE") or line in (b"<eof>", b"<timeout>") or any(u.startswith(b"* BYE") for u in untagged):
                return b"after %d failures: %s" % (i + 1, line)
        return b"no end after 30 failures"
    case("login-flood", login_flood, login=False)

    # After all this, a fresh session still works: the mmp is up and serving.
    c = Conn(args.port, args.ca)
    c.login(user, password)
    line, _ = c.command(b"z1", b"SELECT INBOX")
    print("after %s" % line.decode())
    c.close()
    print("done")


if __name__ == "__main__":
    try:
        main()
    except (OSError, ssl.SSLError, AssertionError) as e:
        print("FAILED %s: %s" % (type(e).__name__, e))
        sys.exit(3)
