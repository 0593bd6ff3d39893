#!/usr/bin/env python3
# mbsync_sync.py: Debian's mbsync (isync) synchronising INBOX both ways with the mmp over IMAPS or
# STARTTLS, checked from the server side with python imaplib. Prints lines a C++ test checks:
#   sync<n> rc=<exit code> cmds=<IMAP verbs mbsync sent, in order>
#   pulled <n> same-bytes=<n>       messages the server had, now in the Maildir, bytes compared
#   pushed uid=<uid> same-bytes=<0|1>  a message put in the Maildir, now on the server (APPEND)
#   server-flags <uid> <flags>      after a flag set in the Maildir
#   local-flags <name> <info>       after a flag set on the server
#   server-gone <n> / local-gone <n> deletions propagated each way
#   noop rc=<rc> cmds=... local-same=<0|1> server-same=<0|1>
# The server's certificate is pinned (mbsync matches host names only against DNS names, and
# the test certificate names 127.0.0.1 as an IP address); a wrong pin must fail the sync.
import argparse
import imaplib
import os
import re
import ssl
import subprocess
import sys
import time


def run_mbsync(rc_path, timeout=60):
    p = subprocess.run(["mbsync", "-c", rc_path, "-D", "ch"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    out = p.stdout.decode("utf-8", "replace")
    cmds = []
    for line in out.splitlines():
        m = re.match(r"F: >>> \d+ (UID \w+|\w+)", line)
        if m:
            cmds.append(m.group(1).replace(" ", "-"))
    return p.returncode, cmds, out


def maildir_files(root):
    found = {}
    for sub in ("new", "cur"):
        d = os.path.join(root, sub)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            found[name] = os.path.join(d, name)
    return found


def crlf(data):
    """The message with CRLF line ends and without the X-TUID header mbsync adds to find its copies."""
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return re.sub(rb"(?m)^X-TUID: [^\r]*\r\n", b"", data, count=1)


class Server:
    def __init__(self, args):
        ctx = ssl.create_default_context(cafile=args.ca)
        ctx.check_hostname = False
        self.m = imaplib.IMAP4_SSL("127.0.0.1", args.port, ssl_context=ctx, timeout=20)
        self.m.login(args.user, args.password)
        typ, _ = self.m.select("INBOX")
        assert typ == "OK"

    def messages(self):
        """{uid: (flags, body bytes)} of INBOX, after a NOOP tells this session what changed."""
        self.m.noop()
        typ, data = self.m.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
        out = {}
        for part in data:
            if isinstance(part, tuple):
                head = part[0].decode()
                uid = int(re.search(r"UID (\d+)", head).group(1))
                flags = re.search(r"FLAGS \(([^)]*)\)", head).group(1)
                out[uid] = (flags, part[1])
        # A FETCH answer for a message whose flags followed its body comes as a bare line.
        for part in data:
            if isinstance(part, bytes) and b"FLAGS" in part:
                m = re.search(rb"UID (\d+)", part)
                if m and int(m.group(1)) in out:
                    out[int(m.group(1))] = (re.search(rb"FLAGS \(([^)]*)\)", part).group(1).decode(),
                                            out[int(m.group(1))][1])
        return out

    def close(self):
        self.m.logout()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--auth-mechs", default="PLAIN")
    p.add_argument("--ssl-type", choices=["IMAPS", "STARTTLS"], default="IMAPS")
    p.add_argument("--mbsync-port", type=int, help="the port mbsync uses (default --port, the IMAPS one)")
    p.add_argument("--only-login", action="store_true", help="one sync with --auth-mechs, print its output")
    args = p.parse_args()

    pin = os.path.join(args.workdir, "server.pem")
    with open(pin, "w") as f:
        f.write(ssl.get_server_certificate(("127.0.0.1", args.port)))
    maildir = os.path.join(args.workdir, "mail")
    os.makedirs(maildir, exist_ok=True)
    inbox = os.path.join(maildir, "INBOX")
    rc_path = os.path.join(args.workdir, "mbsyncrc")
    with open(rc_path, "w") as f:
        f.write(f"""IMAPAccount postern
Host 127.0.0.1
Port {args.mbsync_port or args.port}
User {args.user}
Pass {args.password}
SSLType {args.ssl_type}
CertificateFile {pin}
AuthMechs {args.auth_mechs}
Timeout 20

IMAPStore remote
Account postern

MaildirStore local
Path {maildir}/
Inbox {inbox}
SubFolders Verbatim

Channel ch
Far :remote:
Near :local:
Patterns INBOX
Create Both
Expunge Both
SyncState *
Sync All
""")

    if args.only_login:
        rc, cmds, out = run_mbsync(rc_path)
        print("login rc=%d cmds=%s" % (rc, " ".join(cmds)))
        print(out)
        return

    # 1. Server to Maildir: what LMTP delivered arrives whole.
    server = Server(args)
    before = server.messages()
    rc, cmds, out = run_mbsync(rc_path)
    print("sync1 rc=%d cmds=%s" % (rc, " ".join(cmds)))
    if rc != 0:
        print(out)
    local = maildir_files(inbox)
    bodies = sorted(crlf(open(path, "rb").read()) for path in local.values())
    same = sum(1 for b in sorted(crlf(body) for _, body in before.values()) if b in bodies)
    print("pulled %d same-bytes=%d" % (len(local), same))
    if same != len(before):
        for body in bodies:
            print("local: %r" % body[:300])
        for _, body in before.values():
            print("server: %r" % crlf(body)[:300])

    # 2. Maildir to server: a new message in new/ is APPENDed, bytes intact.
    message = (b"From: carol@example.org\nTo: alice@example.com\nSubject: written offline\n"
               b"Message-ID: <offline-1@example.org>\nDate: Mon, 7 Dec 2026 10:00:00 +0000\n\n"
               b"Composed in the local Maildir.\n" + b"x" * 3000 + b"\n")
    with open(os.path.join(inbox, "new", "%d.offline.localhost" % int(time.time())), "wb") as f:
        f.write(message)
    rc, cmds, out = run_mbsync(rc_path)
    print("sync2 rc=%d cmds=%s" % (rc, " ".join(cmds)))
    if rc != 0:
        print(out)
    after = server.messages()
    for uid, (flags, body) in sorted(after.items()):
        if uid not in before:
            print("pushed uid=%d same-bytes=%d" % (uid, int(crlf(body) == crlf(message))))

    # 3. Flags both ways: \Flagged set in the Maildir (file name info), \Answered set on the server.
    local = maildir_files(inbox)
    names = sorted(local)
    first = names[0]
    path = local[first]
    base, _, info = first.partition(":2,")
    flagged = os.path.join(inbox, "cur", base + ":2," + "".join(sorted(set(info + "F"))))
    os.rename(path, flagged)
    uid_of_first = int(re.search(r",U=(\d+)", first).group(1))
    others = [u for u in sorted(after) if u != uid_of_first]
    answered_uid = others[0]
    server.m.uid("STORE", str(answered_uid), "+FLAGS", "(\\Answered)")
    rc, cmds, out = run_mbsync(rc_path)
    print("sync3 rc=%d cmds=%s" % (rc, " ".join(cmds)))
    if rc != 0:
        print(out)
    now = server.messages()
    print("server-flags %d %s" % (uid_of_first, now[uid_of_first][0]))
    for name in maildir_files(inbox):
        if re.search(r",U=%d[:,]" % answered_uid, name):
            print("local-flags %d %s" % (answered_uid, name.partition(":2,")[2]))

    # 4. Deletions both ways: a message trashed in the Maildir (T) and one expunged on the server.
    local = maildir_files(inbox)
    for name, path in local.items():
        if re.search(r",U=%d[:,]" % uid_of_first, name):
            base, _, info = name.partition(":2,")
            os.rename(path, os.path.join(inbox, "cur", base + ":2," + "".join(sorted(set(info + "T")))))
    server.m.uid("STORE", str(answered_uid), "+FLAGS", "(\\Deleted)")
    server.m.expunge()
    rc, cmds, out = run_mbsync(rc_path)
    print("sync4 rc=%d cmds=%s" % (rc, " ".join(cmds)))
    if rc != 0:
        print(out)
    now = server.messages()
    print("server-gone %d" % int(uid_of_first not in now))
    print("local-gone %d" % int(not any(re.search(r",U=%d[:,]" % answered_uid, n) for n in maildir_files(inbox))))
    print("server-left %d local-left %d" % (len(now), len(maildir_files(inbox))))

    # 5. Nothing changed: the next sync changes nothing on either side.
    local_before = sorted(maildir_files(inbox))
    server_before = server.messages()
    rc, cmds, out = run_mbsync(rc_path)
    print("noop rc=%d cmds=%s local-same=%d server-same=%d" %
          (rc, " ".join(cmds), int(sorted(maildir_files(inbox)) == local_before),
           int(server.messages() == server_before)))
    server.close()
    print("done")


if __name__ == "__main__":
    try:
        main()
    except (imaplib.IMAP4.error, OSError, ssl.SSLError, subprocess.TimeoutExpired, AssertionError) as e:
        print("FAILED %s: %s" % (type(e).__name__, e))
        sys.exit(3)
