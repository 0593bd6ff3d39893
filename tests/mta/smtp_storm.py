#!/usr/bin/env python3
# smtp_storm.py: a submission storm for the mta's crash test: N sessions send numbered messages to
# one recipient for a while, reconnecting when the mta goes away, and write the Message-ID of every
# message the mta answered 250 to (one per line, written at once) so the test can check that each
# of them arrives exactly once after a kill -9.
import argparse
import smtplib
import threading
import time


def worker(n, args, acked, lock, deadline):
    seq = 0
    while time.time() < deadline:
        try:
            c = smtplib.SMTP("127.0.0.1", args.port, timeout=10)
            c.ehlo("storm.example.org")
            while time.time() < deadline:
                seq += 1
                mid = "storm-%d-%d@test" % (n, seq)
                msg = ("From: storm@example.org\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s>\r\n\r\n%s\r\n"
                       % (args.rcpt, mid, mid, "x" * args.size))
                c.sendmail("storm@example.org", [args.rcpt], msg)
                with lock:
                    acked.write(mid + "\n")
                    acked.flush()
        except (smtplib.SMTPException, OSError):
            time.sleep(0.05)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rcpt", required=True)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--size", type=int, default=2000)
    p.add_argument("--acked", required=True)
    args = p.parse_args()
    deadline = time.time() + args.seconds
    lock = threading.Lock()
    with open(args.acked, "w") as acked:
        threads = [threading.Thread(target=worker, args=(n, args, acked, lock, deadline)) for n in range(args.sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


if __name__ == "__main__":
    main()
