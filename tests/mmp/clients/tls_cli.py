#!/usr/bin/env python3
# tls_cli.py: drives a command-line TLS client (openssl s_client -starttls imap, gnutls-cli
# --starttls-proto=imap) as a person would: one IMAP command at a time on its stdin, waiting for
# the tagged answer on its stdout before the next. Prints every line the server sent and, per
# command, "answer <tag> <OK|NO|BAD|...>" for a C++ test to check. A command whose answer does not
# come within the timeout ends the run with "timeout <tag>".
import argparse
import os
import selectors
import subprocess
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--timeout", type=float, default=15)
    p.add_argument("--no-greeting", action="store_true", help="the client consumed the greeting (s_client -starttls)")
    p.add_argument("--command", action="append", default=[], help="one IMAP command line with its tag")
    p.add_argument("client", nargs=argparse.REMAINDER, help="-- the client's argv")
    args = p.parse_args()
    argv = args.client[1:] if args.client and args.client[0] == "--" else args.client
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""

    def lines_until(pred, deadline):
        nonlocal buf
        while True:
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.rstrip(b"\r").decode("utf-8", "replace")
                print("S: " + text)
                if pred(text):
                    return text
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                return None
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                return None
            buf += chunk

    rc = 0
    # The greeting (gnutls-cli and s_client print the server's lines after their own chatter).
    if not args.no_greeting and lines_until(lambda t: t.startswith("* OK") or t.startswith("* PREAUTH"), time.monotonic() + args.timeout) is None:
        print("no-greeting")
        rc = 2
    for command in args.command if rc == 0 else []:
        tag = command.split(" ", 1)[0]
        print("C: " + command)
        proc.stdin.write(command.encode() + b"\r\n")
        proc.stdin.flush()
        answer = lines_until(lambda t: t.startswith(tag + " "), time.monotonic() + args.timeout)
        if answer is None:
            print("timeout " + tag)
            rc = 2
            break
        print("answer %s %s" % (tag, answer.split(" ")[1]))
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass
    lines_until(lambda t: False, time.monotonic() + 2)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    print("exit %d" % proc.returncode)
    sys.exit(rc)


if __name__ == "__main__":
    main()
