# imap_common.py: what the mmp daemon tests' imaplib scripts share: the options every one takes
# (--port --ca --user --password), the TLS context for the test CA, and an IMAPS login.
import argparse
import imaplib
import ssl


def arguments():
    """A parser with the common options; a script adds its own before parse_args()."""
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    return p


def tls_context(ca):
    context = ssl.create_default_context(cafile=ca)
    context.check_hostname = False  # the test certificates name 127.0.0.1 as an IP address
    return context


def login_imaps(args, timeout=20):
    m = imaplib.IMAP4_SSL("127.0.0.1", args.port, ssl_context=tls_context(args.ca), timeout=timeout)
    m.login(args.user, args.password)
    return m
