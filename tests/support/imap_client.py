#!/usr/bin/env python3
# imap_client.py: a small IMAP client for tests (python's imaplib, plaintext on loopback): runs a list
# of commands from a JSON file, or dumps every mailbox of a user (status, subscriptions, each
# message's UID, flags, internal date, size and bytes), so a C++ test can compare what a peer server
# reports with what our store holds. The dump is lines a C++ test splits on spaces:
#   mailbox <uidvalidity> <uidnext> <messages> <unseen> <subscribed 0|1> <name as IMAP sends it>
#   message <uid> <rfc822.size> <internal date, unix seconds> <bytes, base64> [<flag> ...]
# (\Recent left out: it is no stored flag).
import argparse
import base64
import datetime
import imaplib
import json
import re
import socket
import sys

FETCH_ITEMS = re.compile(rb'UID (\d+)|FLAGS \(([^)]*)\)|INTERNALDATE "([^"]+)"|RFC822\.SIZE (\d+)')


def check(typ, data, what):
    if typ != 'OK':
        raise SystemExit('%s failed: %s %r' % (what, typ, data))
    return data


def unix_time(internaldate):
    return int(datetime.datetime.strptime(internaldate, '%d-%b-%Y %H:%M:%S %z').timestamp())


def list_names(m, command):
    names = []
    for line in check(*getattr(m, command)('""', '*'), command):
        if line is None:
            continue
        # (\Flags) "/" name   -- the name as an atom or a quoted string
        match = re.match(rb'\(([^)]*)\) (NIL|"[^"]*") (.*)$', line)
        if not match:
            raise SystemExit('unexpected %s line %r' % (command, line))
        name = match.group(3)
        if name.startswith(b'"') and name.endswith(b'"'):
            name = name[1:-1]
        names.append((name.decode(), match.group(1).decode()))
    return names


def dump(m):
    out = {'mailboxes': []}
    subscribed = {n for n, _ in list_names(m, 'lsub')}
    for name, attributes in list_names(m, 'list'):
        if '\\Noselect' in attributes or '\\NonExistent' in attributes:
            continue
        quoted = '"%s"' % name
        status = check(*m.status(quoted, '(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)'), 'STATUS')[0]
        fields = dict(re.findall(rb'(MESSAGES|UIDNEXT|UIDVALIDITY|UNSEEN) (\d+)', status))
        box = {
            'name': name,
            'subscribed': name in subscribed,
            'messages': int(fields[b'MESSAGES']),
            'uidnext': int(fields[b'UIDNEXT']),
            'uidvalidity': int(fields[b'UIDVALIDITY']),
            'unseen': int(fields[b'UNSEEN']),
            'list': [],
        }
        # EXAMINE: read-only, so looking changes nothing (no \Recent cleared, no file moved).
        check(*m.select(quoted, readonly=True), 'EXAMINE')
        if box['messages']:
            data = check(*m.uid('FETCH', '1:*', '(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])'), 'FETCH')
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head, body = item
                entry = {}
                for uid, flags, date, size in FETCH_ITEMS.findall(head):
                    if uid:
                        entry['uid'] = int(uid)
                    if flags or b'FLAGS ()' in head:
                        entry['flags'] = [f for f in flags.decode().split() if f != '\\Recent']
                    if date:
                        entry['internaldate'] = unix_time(date.decode())
                    if size:
                        entry['size'] = int(size)
                entry.setdefault('flags', [])
                entry['body'] = base64.b64encode(body).decode()
                box['list'].append(entry)
        box['list'].sort(key=lambda e: e['uid'])
        out['mailboxes'].append(box)
    return out


def run_commands(m, commands):
    for c in commands:
        op = c[0]
        if op == 'select':
            check(*m.select('"%s"' % c[1]), 'SELECT')
        elif op == 'create':
            check(*m.create('"%s"' % c[1]), 'CREATE')
        elif op == 'subscribe':
            check(*m.subscribe('"%s"' % c[1]), 'SUBSCRIBE')
        elif op == 'store':  # uid set, "+FLAGS" / "-FLAGS" / "FLAGS", "(\\Seen $Forwarded)"
            check(*m.uid('STORE', c[1], c[2], c[3]), 'STORE')
        elif op == 'expunge':
            check(*m.expunge(), 'EXPUNGE')
        elif op == 'append':  # mailbox, "(flags)", unix date, file
            with open(c[4], 'rb') as f:
                message = f.read()
            date = imaplib.Time2Internaldate(c[3])
            check(*m.append('"%s"' % c[1], c[2], date, message), 'APPEND')
        else:
            raise SystemExit('unknown command %r' % (op,))


def main():
    p = argparse.ArgumentParser()
    p.add_argument('action', choices=['run', 'dump'])
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--user', required=True)
    p.add_argument('--password', required=True)
    p.add_argument('--commands', help='run: a JSON file with a list of [command, args...]')
    p.add_argument('--out', help='dump: the file to write')
    p.add_argument('--timeout', type=float, default=30)
    a = p.parse_args()
    socket.setdefaulttimeout(a.timeout)
    m = imaplib.IMAP4('127.0.0.1', a.port)
    check(*m.login(a.user, a.password), 'LOGIN')
    if a.action == 'run':
        with open(a.commands) as f:
            run_commands(m, json.load(f))
    else:
        lines = []
        for box in dump(m)['mailboxes']:
            lines.append('mailbox %d %d %d %d %d %s' % (box['uidvalidity'], box['uidnext'], box['messages'],
                                                      box['unseen'], 1 if box['subscribed'] else 0, box['name']))
            for e in box['list']:
                lines.append(' '.join(['message', str(e['uid']), str(e['size']), str(e['internaldate']), e['body']] +
                                      e['flags']))
        with open(a.out, 'w') as f:
            f.write('\n'.join(lines) + '\n')
    m.logout()
    return 0


if __name__ == '__main__':
    sys.exit(main())
