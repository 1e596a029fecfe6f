#!/usr/bin/env python3
"""Ambiguous request framing and pipelining (issue 15, item 8) against `omni gateway`, RFC 9112.
Usage: OMNI SHARED_DIR

Each ambiguous or malformed request gets its status (400, 501 or 505) and its connection is closed,
so nothing smuggled after it is ever answered as a request. Pipelined requests on one connection
are all answered, in order. Expect: 100-continue is honoured.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_net_lib import Gateway, Reader, completion_request, connect, fail, get, model_id, ok  # noqa: E402

OMNI, SHARED = sys.argv[1], sys.argv[2]

P = b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
G = b"GET /health HTTP/1.1\r\n"
SMUGGLED = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
CASES = [
    ("Content-Length and Transfer-Encoding", P + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("two Content-Length", P + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400),
    ("a Content-Length list", P + b"Content-Length: 2, 2\r\n\r\n{}", 400),
    ("a non-numeric Content-Length", P + b"Content-Length: 2x\r\n\r\n{}", 400),
    ("a negative Content-Length", P + b"Content-Length: -1\r\n\r\n", 400),
    ("an overflowing Content-Length", P + b"Content-Length: 18446744073709551617\r\n\r\n", 400),
    ("Transfer-Encoding: xchunked", P + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    ("Transfer-Encoding: chunked, gzip", P + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    ("Transfer-Encoding: gzip, chunked", P + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("Transfer-Encoding in HTTP/1.0", b"POST /v1/completions HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("whitespace before a colon", G + b"Host : 127.0.0.1\r\n\r\n", 400),
    ("an obs-fold line", G + b"Host: 127.0.0.1\r\nX-A: a\r\n  folded\r\n\r\n", 400),
    ("a bare CR", G + b"Host: 127.0.0.1\r\nX-A: a\rb\r\n\r\n", 400),
    ("a NUL in the head", G + b"Host: 127.0.0.1\r\nX-A: a\x00b\r\n\r\n", 400),
    ("HTTP/1.1 without Host", G + b"\r\n", 400),
    ("HTTP/1.1 with two Host", G + b"Host: 127.0.0.1\r\nHost: 127.0.0.2\r\n\r\n", 400),
    ("HTTP/2.0", b"GET /health HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", 505),
    ("HTTP/1.2", b"GET /health HTTP/1.2\r\nHost: 127.0.0.1\r\n\r\n", 505),
    ("bad chunk size", P + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", 400),
    ("a chunk longer than its size", P + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}}\r\n0\r\n\r\n", 400),
]

with Gateway(OMNI, SHARED) as gw:
    for name, raw, status in CASES:
        s = connect(gw.port, timeout=5)
        try:
            s.sendall(raw + SMUGGLED)  # a request smuggled behind the bad one must never be answered
            reader = Reader(s)
            try:
                r = reader.response()
            except (OSError, EOFError) as e:
                fail("%s: no response (%r)" % (name, e))
            if r.status != status:
                fail("%s: got %d, not %d: %r" % (name, r.status, status, r.body[:200]))
            if r.headers.get("connection", "").lower() != "close":
                fail("%s: the %d does not say Connection: close" % (name, status))
            if reader.buf or not reader.closed():
                fail("%s: the connection was not closed after the %d (something more was sent)" % (name, status))
        finally:
            s.close()
    if get(gw.port, "/health").status != 200:
        fail("/health after the malformed requests")
    ok("%d ambiguous or malformed requests get their status and close the connection" % len(CASES))

    # Pipelining: three requests in one write, answered in order on the one connection.
    model = model_id(gw.port)
    s = connect(gw.port, timeout=30)
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + completion_request(model, connection="keep-alive")
              + b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    reader = Reader(s)
    try:
        first, second, third = reader.response(), reader.response(), reader.response()
    except (OSError, EOFError) as e:
        fail("pipelined requests were not all answered: %r" % (e,))
    if first.status != 200 or "data" not in first.json():
        fail("pipelined 1 (/v1/models): %d %r" % (first.status, first.body[:200]))
    if second.status != 200 or "choices" not in second.json():
        fail("pipelined 2 (a completion): %d %r" % (second.status, second.body[:200]))
    if third.status != 200 or third.json().get("status") != "ok":
        fail("pipelined 3 (/health): %d %r" % (third.status, third.body[:200]))
    if not reader.closed():
        fail("the connection stayed open after Connection: close")
    s.close()
    ok("three pipelined requests are answered in order")

    # Expect: 100-continue: the client is invited to send its body, then answered.
    s = connect(gw.port, timeout=10)
    body = b'{"model":"%s","prompt":"hi","max_tokens":1}' % model.encode()
    s.sendall(P + b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
    interim = s.recv(64)
    if not interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
        fail("Expect: 100-continue got %r" % interim)
    s.sendall(body)
    r = Reader(s).response()
    if r.status != 200:
        fail("the body after 100 Continue got %d: %r" % (r.status, r.body[:200]))
    s.close()
    ok("Expect: 100-continue gets 100 Continue, then the answer")
