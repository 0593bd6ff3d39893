#!/usr/bin/env python3
# imapconf.py: runs IMAP conformance scripts (*.imap, format in README.md) against one server: sends
# each step's client bytes, reads to the tagged completion, checks the expected responses.
# Standard library only (socket, ssl), so it runs on any test host as it is.
import argparse
import base64
import os
import re
import secrets
import socket
import ssl
import sys
import time

TARGET_RE = re.compile(r'^([A-Za-z+~!&]+|CAP[+-])(?:\[([a-z0-9_,-]+)\])?:(?: (.*))?$')
MAX_RESPONSE = 64 << 20  # one response (with its literals) larger than this is a server fault here


class ScriptError(Exception):
    """A malformed script (the script's fault, not the server's)."""


class StepFailure(Exception):
    pass


# --- values: ${...} expansion -------------------------------------------------------------------

ESCAPES = {'r': '\r', 'n': '\n', 't': '\t', '0': '\0', '\\': '\\'}


def unescape_bytes(text):
    """Text as bytes: characters as UTF-8; \\r \\n \\t \\0 \\\\ and \\xHH (that byte) are escapes, and any
    other backslash stays (so \\Seen is \\Seen)."""
    out, i = bytearray(), 0
    while i < len(text):
        m = re.match(r'\\x([0-9a-fA-F]{2})', text[i:i + 4])
        if m:
            out.append(int(m.group(1), 16))
            i += 4
            continue
        if text[i] == '\\' and i + 1 < len(text) and text[i + 1] in ESCAPES:
            out += ESCAPES[text[i + 1]].encode()
            i += 2
            continue
        out += text[i].encode('utf-8', errors='surrogateescape')
        i += 1
    return bytes(out)


def split_refs(text):
    """Splits text into ('text', s) and ('ref', inner) parts; ${...} may nest."""
    parts, i, start = [], 0, 0
    while i < len(text):
        if text.startswith('${', i):
            depth, j = 1, i + 2
            while j < len(text) and depth:
                if text.startswith('${', j):
                    depth += 1
                    j += 2
                    continue
                if text[j] == '}':
                    depth -= 1
                j += 1
            if depth:
                raise ScriptError('unclosed ${ in %r' % text)
            if i > start:
                parts.append(('text', text[start:i]))
            parts.append(('ref', text[i + 2:j - 1]))
            i = start = j
            continue
        i += 1
    if start < len(text):
        parts.append(('text', text[start:]))
    return parts


def expand(text, env):
    """${name}, ${a+b-1}, ${b64:T}, ${len:T}, ${rep:N:T}, ${lower:T}; T is expanded first."""
    return ''.join(s if kind == 'text' else ref_value(s, env) for kind, s in split_refs(text))


def ref_value(inner, env):
    m = re.fullmatch(r'(b64|len|rep|lower):(.*)', inner, re.S)
    if m:
        fn, arg = m.groups()
        if fn == 'rep':
            # The text repeated as written: escapes in it are read where it lands (an R: line).
            count, _, what = arg.partition(':')
            return expand(what, env) * int(expand(count, env))
        if fn == 'lower':
            return expand(arg, env).lower()
        data = unescape_bytes(expand(arg, env))
        if fn == 'b64':
            return base64.b64encode(data).decode()
        return str(len(data))
    terms = re.split(r'([+-])', inner)
    if not all(re.fullmatch(r'[A-Za-z_][A-Za-z0-9_.]*|\d+', t) for t in terms[::2]):
        raise ScriptError('bad reference ${%s}' % inner)

    def value(term):
        if term.isdigit():
            return term
        if term not in env:
            raise StepFailure('${%s} is not set (a capture that did not happen, or a missing --var)' % term)
        return env[term]

    if len(terms) == 1:
        return value(terms[0])
    # Arithmetic: ${a+b-1}.
    total = int(value(terms[0]))
    for op, term in zip(terms[1::2], terms[2::2]):
        total += int(value(term)) if op == '+' else -int(value(term))
    return str(total)


# --- patterns: literal text with holes -----------------------------------------------------------

HOLE_RE = re.compile(r'<\*>|<n>|<q>|<w>|</((?:[^/\\]|\\.)*)/>'
                     r'|<([a-z_][a-z0-9_]*):(n|\*|q|w|/(?:(?:[^/\\]|\\.)*)/)>')
HOLE_KINDS = {'n': r'\d+', '*': r'.*?', 'q': r'"(?:[^"\\]|\\.)*"', 'w': r'[^ ()\[\]]+'}


def render(data):
    """Bytes as one line of text for matching: UTF-8 where valid, CR/LF/TAB and controls escaped."""
    text = data.decode('utf-8', errors='backslashreplace')
    return ''.join(
        {'\r': '\\r', '\n': '\\n', '\t': '\\t'}.get(c) or ('\\x%02x' % ord(c) if ord(c) < 32 or ord(c) == 127 else c)
        for c in text)


def compile_pattern(text, env):
    regex, names = [], []
    for kind, s in split_refs(text):
        if kind == 'ref':
            regex.append(re.escape(render(ref_value(s, env).encode())))
            continue
        at = 0
        for m in HOLE_RE.finditer(s):
            regex.append(re.escape(s[at:m.start()]))
            at = m.end()
            whole = m.group(0)
            if m.group(1) is not None:
                regex.append('(?:%s)' % m.group(1))
            elif m.group(2):
                name, kind2 = m.group(2), m.group(3)
                body = kind2[1:-1] if kind2.startswith('/') else HOLE_KINDS[kind2]
                if name in names:
                    raise ScriptError('capture <%s:...> twice in one pattern' % name)
                names.append(name)
                regex.append('(?P<%s>%s)' % (name, body))
            else:
                regex.append(HOLE_KINDS[whole[1]])
        regex.append(re.escape(s[at:]))
    try:
        return re.compile(''.join(regex), re.I | re.S)
    except re.error as e:
        raise ScriptError('pattern %r: %s' % (text, e))


# --- scripts -------------------------------------------------------------------------------------

class Line:
    def __init__(self, kind, targets, text, where):
        self.kind, self.targets, self.text, self.where = kind, targets, text, where

    def applies(self, target):
        return self.targets is None or target in self.targets


class Step:
    """One exchange: a directive (connect, await, ...) or client lines, and what must come back."""

    def __init__(self, kind, where, args=None, targets=None):
        self.kind, self.where, self.args, self.targets = kind, where, args or [], targets
        self.client = []   # Line C or R
        self.expect = []   # Line S, S~, S!, T, +, CAP+, CAP-, closed

    def applies(self, target):
        return self.targets is None or target in self.targets

    def title(self):
        if self.client:
            return self.client[0].text
        return ' '.join([self.kind] + self.args)


class Script:
    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        self.headers = {}
        self.deliver = []
        self.only = None
        self.only_reason = None
        self.bodies = {}   # name -> text (CRLF lines)
        self.sets = []     # (name, raw value) in order, expanded at run time
        self.steps = []
        self.parse()

    def error(self, lineno, msg):
        raise ScriptError('%s:%d: %s' % (self.name, lineno, msg))

    def parse(self):
        with open(self.path, encoding='utf-8') as f:
            lines = f.read().split('\n')
        if lines and lines[-1] == '':
            lines.pop()
        step = None
        block = None          # targets of the open `only` block
        reason_ok = False     # a comment since the last blank line gives a reason for a [target] line
        i = 0
        while i < len(lines):
            raw = lines[i]
            lineno = i + 1
            i += 1
            line = raw.rstrip('\r')
            stripped = line.strip()
            if not stripped:
                reason_ok = False
                continue
            if stripped.startswith('#'):
                reason_ok = True
                continue
            where = '%s:%d' % (self.name, lineno)
            if line.startswith('@'):
                key, _, value = line[1:].partition(' ')
                value = value.strip()
                if key == 'deliver':
                    self.deliver += value.split()
                elif key == 'only':
                    targets, sep, why = value.partition(' -- ')
                    if not sep or not why.strip():
                        self.error(lineno, '@only needs "-- <why>" (the RFC section that allows the difference)')
                    self.only, self.only_reason = set(targets.split(',')), why.strip()
                elif key in ('title', 'timeout'):
                    self.headers[key] = value
                else:
                    self.error(lineno, 'unknown header @%s' % key)
                continue
            word, _, rest = stripped.partition(' ')
            if word == 'body':
                name, _, how = rest.partition(' ')
                if how.startswith('<<'):
                    term, text = how[2:].strip(), []
                    while i < len(lines) and lines[i].rstrip('\r') != term:
                        text.append(lines[i].rstrip('\r'))
                        i += 1
                    if i == len(lines):
                        self.error(lineno, 'body %s: no closing %s' % (name, term))
                    i += 1
                    self.bodies[name] = ''.join(t + '\r\n' for t in text)
                elif how.startswith('file '):
                    p = os.path.join(os.path.dirname(self.path), how[5:].strip())
                    with open(p, 'rb') as f:
                        data = f.read().decode('utf-8')
                    self.bodies[name] = data.replace('\r\n', '\n').replace('\n', '\r\n')
                else:
                    self.error(lineno, 'body NAME <<TERM or body NAME file PATH')
                continue
            if word == 'set':
                name, _, value = rest.partition(' ')
                self.sets.append((name, value))
                continue
            if word == 'only':
                targets, sep, why = rest.partition(' -- ')
                if block is not None:
                    self.error(lineno, 'only blocks do not nest')
                if not sep or not why.strip():
                    self.error(lineno, 'only needs "-- <why>" (the RFC section that allows the difference)')
                block = set(targets.split(','))
                step = None
                continue
            if word == 'end':
                if block is None:
                    self.error(lineno, 'end without only')
                block = None
                step = None
                continue
            if word in ('connect', 'on', 'disconnect', 'await', 'sleep'):
                step = Step(word, where, rest.split(), block)
                self.steps.append(step)
                if word == 'connect' and len(step.args) < 1:
                    self.error(lineno, 'connect NAME [plain|starttls|tls] [login|login2] [cert=NAME]')
                if word in ('on', 'disconnect') and len(step.args) != 1:
                    self.error(lineno, '%s NAME' % word)
                continue
            if stripped == 'nowait':
                if step is None or step.kind != 'send':
                    self.error(lineno, 'nowait belongs to a C:/R: step')
                step.expect.append(Line('nowait', None, '', where))
                continue
            if stripped == 'closed' or stripped.startswith('closed['):
                m = re.fullmatch(r'closed(?:\[([a-z0-9_,-]+)\])?', stripped)
                if not m or step is None:
                    self.error(lineno, 'closed belongs to a step')
                targets = set(m.group(1).split(',')) if m.group(1) else None
                if targets and not reason_ok:
                    self.error(lineno, 'a [target] line needs a comment above it in its paragraph saying why (which RFC section)')
                step.expect.append(Line('closed', targets, '', where))
                continue
            m = TARGET_RE.match(line)
            if not m:
                self.error(lineno, 'cannot read %r' % line)
            kind, targets, text = m.group(1), m.group(2), m.group(3) or ''
            targets = set(targets.split(',')) if targets else None
            if targets is not None and not reason_ok:
                self.error(lineno, 'a [target] line needs a comment above it in its paragraph saying why (which RFC section)')
            if kind in ('C', 'R', 'R+'):
                if kind == 'R+' and (step is None or not step.client or step.expect):
                    self.error(lineno, 'R+: continues the C:/R: line above it')
                if step is None or step.kind != 'send' or step.expect:
                    step = Step('send', where, targets=block)
                    if targets is not None:
                        step.targets = targets if block is None else (targets & block)
                    self.steps.append(step)
                elif targets is not None:
                    self.error(lineno, 'only the first client line of a step names targets (they apply to the step)')
                step.client.append(Line(kind, None, text, where))
                continue
            if kind not in ('S', 'S~', 'S&', 'S!', 'T', '+', 'CAP+', 'CAP-'):
                self.error(lineno, 'unknown line kind %s:' % kind)
            if step is None or step.kind not in ('send', 'await', 'connect'):
                self.error(lineno, '%s: belongs to a C:/R: step, connect or await' % kind)
            if kind == 'S&' and not any(e.kind in ('S', 'S~') for e in step.expect):
                self.error(lineno, 'S&: follows an S: or S~: line')
            if kind == 'T' and step.kind != 'send':
                self.error(lineno, 'T: belongs to a C:/R: step')
            step.expect.append(Line(kind, targets, text, where))
        if block is not None:
            self.error(len(lines), 'only block without end')
        for s in self.steps:
            if s.kind == 'send':
                kinds = {e.kind for e in s.expect}
                if 'nowait' in kinds and len(kinds) > 1:
                    raise ScriptError('%s: a nowait step has no expectations' % s.where)
                if not kinds & {'T', '+', 'closed', 'S', 'S~', 'nowait'}:
                    raise ScriptError('%s: a client step needs T:, +:, closed, nowait (or, for bytes without a tag, S:)' % s.where)
            if s.kind == 'await' and not {e.kind for e in s.expect} & {'S', 'S~', 'closed'}:
                raise ScriptError('%s: await needs S: or S~: lines' % s.where)


# --- the wire ------------------------------------------------------------------------------------

class Response:
    def __init__(self, data):
        self.data = data      # bytes, literals included, CRLF stripped from the end
        self.text = render(data)
        first = data.split(b' ', 1)[0]
        self.tag = None if first in (b'*', b'+') else first.decode('latin-1')
        self.kind = {b'*': 'untagged', b'+': 'cont'}.get(first, 'tagged')
        self.status = None
        self.rest = self.text   # the text after the tag
        if self.kind == 'tagged':
            self.rest = self.text[len(first) + 1:] if len(self.text) > len(first) else ''
            self.status = self.rest.split(' ', 1)[0].upper()
        elif self.kind == 'cont':
            self.rest = self.text[2:] if self.text.startswith('+ ') else self.text[1:]


class Conn:
    def __init__(self, name, args, log):
        self.name, self.args, self.log = name, args, log
        self.sock = None
        self.buf = b''
        self.eof = False
        self.pending = None   # the tag of a command that stopped at a continuation request
        self.cert = None      # the client certificate presented in TLS

    def open(self, mode, cert):
        port = self.args.imaps_port if mode == 'tls' else self.args.port
        if not port:
            raise StepFailure('connect %s: this target has no %s port' % (self.name, 'IMAPS' if mode == 'tls' else 'IMAP'))
        src = (self.args.source, 0) if self.args.source else None
        try:
            self.sock = socket.create_connection((self.args.host, port), timeout=self.args.timeout, source_address=src)
        except OSError as e:
            raise StepFailure('connect %s to %s:%d: %s' % (self.name, self.args.host, port, e))
        self.cert = cert
        if mode == 'tls':
            self.start_tls()

    def start_tls(self):
        if self.buf:
            # RFC 2595 §3.1: TLS starts right after the OK's CRLF; plaintext after it could be an
            # injected response (curl's CVE-2021-22947).
            raise StepFailure('the server sent %r after its STARTTLS reply, before TLS' % self.buf[:200])
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.args.ca:
            ctx.load_verify_locations(self.args.ca)
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert:
            if self.cert not in self.args.certs:
                raise StepFailure('no --cert %s=PEM,KEY for this target' % self.cert)
            pem, key = self.args.certs[self.cert]
            ctx.load_cert_chain(pem, key)
        try:
            self.sock = ctx.wrap_socket(self.sock, server_hostname=self.args.tls_name or self.args.host)
        except (ssl.SSLError, OSError) as e:
            raise StepFailure('TLS handshake on %s: %s' % (self.name, e))

    def send(self, data):
        self.log('C%s' % self.prefix(), data)
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise StepFailure('sending on %s: %s' % (self.name, e))

    def prefix(self):
        return '' if self.name == 'a' else '[%s]' % self.name

    def fill(self, deadline):
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return False
        except (ssl.SSLError, OSError) as e:
            self.log('S%s' % self.prefix(), ('<connection error: %s>' % e).encode())
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_response(self, deadline):
        """One response with its literals, or None at EOF or the deadline."""
        at = 0
        while True:
            nl = self.buf.find(b'\n', at)
            while nl < 0:
                if len(self.buf) > MAX_RESPONSE:
                    raise StepFailure('a response line longer than %d bytes' % MAX_RESPONSE)
                if not self.fill(deadline):
                    return None
                nl = self.buf.find(b'\n', at)
            m = re.search(rb'~?\{(\d+)\}\r?$', self.buf[at:nl])
            if m:
                n = int(m.group(1))
                if nl + 1 + n > MAX_RESPONSE:
                    raise StepFailure('a literal of %d bytes in a response' % n)
                while len(self.buf) < nl + 1 + n:
                    if not self.fill(deadline):
                        return None
                at = nl + 1 + n
                continue
            data = self.buf[:nl + 1]
            self.buf = self.buf[nl + 1:]
            data = data[:-2] if data.endswith(b'\r\n') else data[:-1]
            self.log('S%s' % self.prefix(), data)
            return Response(self.merge_literals(data))

    @staticmethod
    def merge_literals(data):
        # "{5}\r\nhello" becomes "{5}hello": one line to match, the literal's bytes kept exactly.
        out, at = b'', 0
        for m in re.finditer(rb'~?\{(\d+)\}\r\n', data):
            if m.start() < at:
                continue
            out += data[at:m.start()] + m.group(0)[:-2]
            at = m.end()
            n = int(m.group(1))
            out += data[at:at + n]
            at += n
        return out + data[at:]

    def drain_eof(self, deadline):
        """True when the server closes the connection before the deadline (whatever it sends first)."""
        lines = []
        while not self.eof:
            r = self.read_response(deadline)
            if r is None:
                break
            lines.append(r)
        return self.eof, lines

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None


# --- running -------------------------------------------------------------------------------------

class Runner:
    def __init__(self, script, args):
        self.script, self.args = script, args
        self.target = args.target
        self.env = {}
        self.conns = {}
        self.cur = None
        self.transcript = []

    def log(self, who, data):
        self.transcript.append('%-4s %s' % (who, render(data)))
        if self.args.verbose:
            text = render(data)
            print('    %-4s %s' % (who, text if self.args.verbose > 1 else text[:300]))

    def setup_env(self):
        run = secrets.token_hex(4)
        self.env.update({'run': run, 'box': 'Conf' + run, 'target': self.target})
        self.env.update(self.args.vars)
        for name, text in self.script.bodies.items():
            self.env[name] = text
            self.env[name + '.size'] = str(len(text.encode()))
            _, sep, body = text.partition('\r\n\r\n')
            self.env[name + '.text'] = body if sep else ''
            self.env[name + '.text.size'] = str(len(body.encode()) if sep else 0)
        for name, value in self.script.sets:
            self.env[name] = expand(value, self.env)

    def run(self):
        s = self.script
        if s.only and self.target not in s.only:
            print('SKIP %s [%s]: only %s -- %s' % (s.name, self.target, ','.join(sorted(s.only)), s.only_reason))
            return 0
        self.setup_env()
        timeout = float(s.headers.get('timeout', self.args.timeout))
        done = 0
        for step in s.steps:
            if not step.applies(self.target):
                continue
            self.step_log_start = len(self.transcript)
            try:
                self.do_step(step, timeout)
            except StepFailure as e:
                self.report_failure(step, str(e))
                return 1
            except ScriptError as e:
                print('ERROR %s [%s] %s: %s' % (s.name, self.target, step.where, e))
                return 2
            done += 1
            if self.args.verbose:
                print('ok   %s %s' % (step.where, step.title()))
        for c in self.conns.values():
            c.close()
        print('PASS %s [%s]: %d steps' % (s.name, self.target, done))
        return 0

    def report_failure(self, step, why):
        print('FAIL %s [%s] step at %s: %s' % (self.script.name, self.target, step.where, step.title()))
        for line in why.split('\n'):
            print('  ' + line)
        print('  this step on the wire (C: client, S: server):')
        for t in self.transcript[self.step_log_start:][-60:]:
            print('    ' + t[:2000])
        if self.args.transcript:
            print('  the whole session:')
            for t in self.transcript[:self.step_log_start]:
                print('    ' + t[:300])

    def conn(self):
        if self.cur is None:
            raise StepFailure('no connection: connect first')
        c = self.conns[self.cur]
        if c.sock is None:
            raise StepFailure('connection %s is closed' % self.cur)
        return c

    def do_step(self, step, timeout):
        deadline = time.monotonic() + timeout
        if step.kind == 'connect':
            return self.do_connect(step, deadline)
        if step.kind == 'on':
            if step.args[0] not in self.conns:
                raise StepFailure('no connection %s' % step.args[0])
            self.cur = step.args[0]
            return
        if step.kind == 'disconnect':
            c = self.conns.get(step.args[0])
            if c:
                c.close()
            return
        if step.kind == 'sleep':
            time.sleep(float(step.args[0]) if step.args else 0.5)
            return
        if step.kind == 'await':
            if step.args:
                deadline = time.monotonic() + float(step.args[0])
            return self.do_await(step, deadline)
        return self.do_send(step, deadline)

    def do_connect(self, step, deadline):
        name = step.args[0]
        mode, login, cert = 'plain', None, None
        for a in step.args[1:]:
            if a in ('plain', 'starttls', 'tls'):
                mode = a
            elif a in ('login', 'login2'):
                login = a
            elif a.startswith('cert='):
                cert = a[5:]
            else:
                raise ScriptError('connect: unknown option %s' % a)
        if name in self.conns:
            self.conns[name].close()
        c = Conn(name, self.args, self.log)
        self.conns[name] = c
        self.cur = name
        c.open(mode, cert)
        greeting = c.read_response(deadline)
        if greeting is None:
            raise StepFailure('no greeting from the server on %s' % name)
        if greeting.kind != 'untagged' or not re.match(r'\* (OK|PREAUTH|BYE)\b', greeting.text, re.I):
            raise StepFailure('the greeting is not * OK, * PREAUTH or * BYE: %s' % greeting.text)
        self.check(step, [greeting], None, c)
        if mode == 'starttls':
            self.simple(c, 'STARTTLS', deadline)
            c.start_tls()
        if login:
            n = '' if login == 'login' else '2'
            user, pw = self.env.get('user' + n), self.env.get('password' + n)
            if user is None or pw is None:
                raise StepFailure('connect ... %s: no --var user%s / password%s' % (login, n, n))
            self.simple(c, 'LOGIN %s %s' % (quote(user), quote(pw)), deadline)

    def simple(self, c, command, deadline):
        tag = 'x%s' % secrets.token_hex(2)
        c.send(('%s %s\r\n' % (tag, command)).encode())
        while True:
            r = c.read_response(deadline)
            if r is None:
                raise StepFailure('%s: no tagged reply (connection %s)' % (command.split()[0], 'closed' if c.eof else 'timed out'))
            if r.tag == tag:
                if r.status != 'OK':
                    raise StepFailure('%s: %s' % (command.split()[0], r.text))
                return

    def client_bytes(self, line):
        """A C: line as chunks to send; a chunk after a synchronising literal waits for '+'."""
        text = expand(line.text, self.env)
        if line.kind in ('R', 'R+'):
            return [unescape_bytes(text)]
        chunks, cur = [], b''
        at = 0
        for m in re.finditer(r'\{lit(8?)(\+?):((?:"(?:[^"\\]|\\.)*")|[A-Za-z0-9_.]+)\}', text):
            cur += text[at:m.start()].encode()
            at = m.end()
            eight, plus, what = m.groups()
            if what.startswith('"'):
                data = unescape_bytes(what[1:-1])
            else:
                if what not in self.env:
                    raise StepFailure('{lit:%s}: no body or variable %s' % (what, what))
                data = self.env[what].encode('utf-8', errors='surrogateescape')
            cur += b'%s{%d%s}\r\n' % (b'~' if eight else b'', len(data), b'+' if plus else b'')
            if not plus:
                chunks.append(cur)
                cur = b''
                chunks.append(None)   # wait for a continuation here
            cur += data
        cur += text[at:].encode() + b'\r\n'
        chunks.append(cur)
        return chunks

    def do_send(self, step, deadline):
        c = self.conn()
        tags = []
        got = []
        expects_cont = any(e.kind == '+' and e.applies(self.target) for e in step.expect)
        ended_by = None
        for idx, line in enumerate(step.client):
            chunks = self.client_bytes(line)
            data = b''.join(ch for ch in chunks if ch is not None)
            first = data.split(b' ', 1)[0].split(b'\r', 1)[0].decode('latin-1')
            if idx == 0 and c.pending:
                tags.append(c.pending)      # this line answers a continuation of that command
                c.pending = None
            elif line.kind == 'R+':
                pass                        # more bytes of the command above
            elif is_tag(data.split(b' ', 1)[0].split(b'\r', 1)[0]):
                tags.append(first)
            out = b''
            for ch in chunks:
                if ch is not None:
                    out += ch
                    continue
                c.send(out)
                out = b''
                # A synchronising literal (RFC 9051 §4.3): the server says '+' or refuses with a tagged reply.
                while True:
                    r = c.read_response(deadline)
                    if r is None:
                        raise StepFailure('waiting for "+" after a synchronising literal: %s' % (
                            'connection closed' if c.eof else 'timed out'))
                    got.append(r)
                    if r.kind == 'cont':
                        got.pop()
                        break
                    if r.kind == 'tagged' and r.tag in tags:
                        ended_by = r
                        break
                if ended_by:
                    break
            if ended_by:
                break
            if out:
                c.send(out)
        want_closed = any(e.kind == 'closed' and e.applies(self.target) for e in step.expect)
        if any(e.kind == 'nowait' for e in step.expect):
            return
        if not tags and not expects_cont:
            # Bytes with no tag to wait for (an empty line, garbage): what comes back is untagged
            # (RFC 9051 §7.1: BAD without a tag when none could be read), so read as await does.
            return self.await_lines(step, deadline, got, want_closed)
        final = ended_by
        cont = None
        open_tags = [t for t in tags if not (ended_by and ended_by.tag == t)]
        while final is None or (open_tags and final.tag != tags[-1]):
            r = c.read_response(deadline)
            if r is None:
                if c.eof and want_closed:
                    break
                raise StepFailure('%s waiting for the tagged reply to %s' % (
                    'connection closed' if c.eof else 'timed out (%ss)' % self.args.timeout, ' '.join(open_tags) or '?'))
            if r.kind == 'cont':
                if expects_cont:
                    cont = r
                    break
                got.append(r)
                raise StepFailure('unexpected continuation request "%s" (the step expects no +:)' % r.text)
            if r.kind == 'tagged' and r.tag in open_tags:
                open_tags.remove(r.tag)
                if not open_tags:
                    final = r
                    break
            got.append(r)
        if cont is not None:
            c.pending = tags[-1] if tags else None
        if want_closed and not c.eof:
            closed, more = c.drain_eof(deadline)
            got += more
            if not closed:
                raise StepFailure('the server did not close the connection')
        self.check(step, got, final, c, cont)
        # TLS starts after the OK to a STARTTLS: one sent alone (C:), or the first command of raw
        # bytes (R:) that pipeline more behind it, which a server must then drop (CVE-2011-0411).
        if final is not None and final.status == 'OK' and not c.eof and step.client and (
                (step.client[-1].kind == 'C' and re.match(r'\S+ STARTTLS\s*$', step.client[-1].text, re.I)) or
                (step.client[0].kind == 'R' and re.match(r'\S+ STARTTLS(\\r\\n|\r\n)', step.client[0].text, re.I))):
            c.start_tls()

    def do_await(self, step, deadline):
        return self.await_lines(step, deadline, [], any(e.kind == 'closed' and e.applies(self.target)
                                                        for e in step.expect))

    def await_lines(self, step, deadline, got, want_closed):
        c = self.conn()
        while True:
            if not want_closed:
                try:
                    self.check(step, got, None, c, quiet=True)
                    break
                except StepFailure:
                    pass
            r = c.read_response(deadline)
            if r is None:
                break
            got.append(r)
        if want_closed and not c.eof:
            raise StepFailure('the server did not close the connection')
        self.check(step, got, None, c)

    def check(self, step, got, final, c, cont=None, quiet=False):
        t = self.target
        exp = [e for e in step.expect if e.applies(t)]
        used = [False] * len(got)
        problems = []

        def match(e, r):
            p = compile_pattern(e.text, self.env)
            m = p.fullmatch(r.text)
            return m

        def keep(m):
            for k, v in m.groupdict().items():
                self.env[k] = v

        # S: lines in order, then S~: lines anywhere; an S&: line checks the response its S:/S~:
        # line matched. Each response satisfies one S:/S~: line.
        groups = []
        for e in exp:
            if e.kind in ('S', 'S~'):
                groups.append([e])
            elif e.kind == 'S&' and groups:
                groups[-1].append(e)
        pos, failed_order = 0, False
        for g in [g for g in groups if g[0].kind == 'S']:
            if failed_order:
                break
            for i in range(pos, len(got)):
                if not used[i] and got[i].kind != 'cont':
                    ms = [match(e, got[i]) for e in g]
                    if all(ms):
                        used[i] = True
                        pos = i + 1
                        for m in ms:
                            keep(m)
                        break
            else:
                problems.append('expected (S:, in order, %s): %s' % (g[0].where, ' and also '.join(e.text for e in g)))
                failed_order = True
        for g in [g for g in groups if g[0].kind == 'S~']:
            for i in range(len(got)):
                if not used[i] and got[i].kind != 'cont':
                    ms = [match(e, got[i]) for e in g]
                    if all(ms):
                        used[i] = True
                        for m in ms:
                            keep(m)
                        break
            else:
                problems.append('expected (S~:, any order, %s): %s' % (g[0].where, ' and also '.join(e.text for e in g)))
        if quiet:
            if problems:
                raise StepFailure('')
        for e in [e for e in exp if e.kind == 'S!']:
            for i in range(len(got)):
                if not used[i] and match(e, got[i]):
                    problems.append('must not appear (S!:, %s): %s\n  but the server sent: %s' % (e.where, e.text, got[i].text))
                    break
        for e in [e for e in exp if e.kind == 'T']:
            if final is None:
                problems.append('expected the tagged reply (T:, %s): %s' % (e.where, e.text))
                continue
            m = compile_pattern(e.text, self.env).fullmatch(final.rest)
            if not m:
                problems.append('expected the tagged reply (T:, %s): %s\n  but the server sent: %s' % (
                    e.where, e.text, final.text))
            else:
                keep(m)
        for e in [e for e in exp if e.kind == '+']:
            if cont is None:
                problems.append('expected a continuation request (+:, %s): + %s' % (e.where, e.text))
                continue
            m = compile_pattern(e.text, self.env).fullmatch(cont.rest)
            if not m:
                problems.append('expected the continuation (+:, %s): + %s\n  but the server sent: %s' % (
                    e.where, e.text, cont.text))
            else:
                keep(m)
        caps = [e for e in exp if e.kind in ('CAP+', 'CAP-')]
        if caps:
            seen = None
            for r in list(got) + ([final] if final else []):
                m = re.match(r'\* CAPABILITY (.*)$', r.text, re.I) or re.search(r'\[CAPABILITY ([^\]]*)\]', r.text, re.I)
                if m:
                    seen = m.group(1).upper().split()
            if seen is None:
                problems.append('no capability list (* CAPABILITY or [CAPABILITY ...]) in this step, for %s' % caps[0].where)
            else:
                for e in caps:
                    for tok in expand(e.text, self.env).upper().split():
                        if e.kind == 'CAP+' and tok not in seen:
                            problems.append('capability %s missing (CAP+:, %s); the server listed: %s' % (
                                tok, e.where, ' '.join(seen)))
                        if e.kind == 'CAP-' and tok in seen:
                            problems.append('capability %s must not be listed here (CAP-:, %s); the server listed: %s' % (
                                tok, e.where, ' '.join(seen)))
        if problems and not self.args.no_check:
            raise StepFailure('\n'.join(problems))


def is_tag(word):
    # RFC 9051 §9: tag = 1*<any ASTRING-CHAR except "+">: printable ASCII without atom-specials.
    return bool(word) and all(0x21 <= b <= 0x7e and chr(b) not in '(){%*"\\+' for b in word)


def quote(s):
    return '"%s"' % s.replace('\\', '\\\\').replace('"', '\\"')


def main():
    ap = argparse.ArgumentParser(description='Run IMAP conformance scripts against one server (README.md).')
    ap.add_argument('scripts', nargs='+')
    ap.add_argument('--target', default='dovecot', help='the name that selects [name] lines (dovecot, postern)')
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0, help='IMAP port (plaintext, STARTTLS)')
    ap.add_argument('--imaps-port', type=int, default=0, help='IMAPS port (implicit TLS)')
    ap.add_argument('--ca', help='CA file to verify the server certificate (without it, TLS is not verified)')
    ap.add_argument('--tls-name', help='the name to verify in the server certificate (default: --host)')
    ap.add_argument('--source', help='local address to connect from')
    ap.add_argument('--cert', action='append', default=[], metavar='NAME=PEM,KEY',
                    help='a client certificate that connect ... cert=NAME presents')
    ap.add_argument('--var', action='append', default=[], metavar='NAME=VALUE', help='user, password, user2, ...')
    ap.add_argument('--timeout', type=float, default=10.0, help='seconds per step')
    ap.add_argument('--check', action='store_true', help='parse the scripts only')
    ap.add_argument('--no-check', action='store_true',
                    help='send and read every step but check nothing (with -v: to see what a server says while writing a script)')
    ap.add_argument('--transcript', action='store_true', help='print the whole session on failure')
    ap.add_argument('-v', '--verbose', action='count', default=0, help='print the lines on the wire (-vv: whole)')
    args = ap.parse_args()
    args.vars = dict(v.split('=', 1) for v in args.var)
    args.certs = {}
    for c in args.cert:
        name, _, files = c.partition('=')
        pem, _, key = files.partition(',')
        args.certs[name] = (pem, key or pem)
    rc = 0
    for path in args.scripts:
        try:
            script = Script(path)
        except (ScriptError, OSError) as e:
            print('ERROR %s' % e)
            rc = max(rc, 2)
            continue
        if args.check:
            print('OK %s: %d steps' % (script.name, len(script.steps)))
            continue
        rc = max(rc, Runner(script, args).run())
    sys.exit(rc)


if __name__ == '__main__':
    main()
