#!/usr/bin/env python3
# parse_dsn.py: an independent reading of a DSN file with python's email package; prints what the
# C++ test checks, one "key=value" per line.
import sys
from email import policy
from email.parser import BytesParser

with open(sys.argv[1], "rb") as f:
    msg = BytesParser(policy=policy.compat32).parse(f)
print("defects=%d" % len(msg.defects))
print("content_type=%s" % msg.get_content_type())
print("report_type=%s" % msg.get_param("report-type"))
print("to=%s" % msg["To"])
print("from=%s" % msg["From"])
print("auto_submitted=%s" % msg["Auto-Submitted"])
parts = msg.get_payload()
print("parts=%d" % len(parts))
for i, part in enumerate(parts):
    print("part%d=%s" % (i, part.get_content_type()))
    if part.defects:
        print("part%d_defects=%d" % (i, len(part.defects)))
status = parts[1]
# message/delivery-status: the payload is a list of header blocks, per-message first.
groups = status.get_payload()
print("groups=%d" % len(groups))
for k, v in groups[0].items():
    print("msg.%s=%s" % (k, v))
for n, g in enumerate(groups[1:]):
    for k, v in g.items():
        print("rcpt%d.%s=%s" % (n, k, v))
third = parts[2]
if third.get_content_type() == "message/rfc822":
    inner = third.get_payload()[0]
    print("inner_subject=%s" % inner["Subject"])
    print("inner_body=%s" % inner.get_payload().strip())
else:
    payload = third.get_payload()
    print("headers_has_subject=%s" % ("Subject: hello" in payload))
    print("headers_has_body=%s" % ("body line" in payload))
