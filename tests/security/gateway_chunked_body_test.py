#!/usr/bin/env python3
"""Chunked bodies past --max-body (issue 15, item 2) against `omni gateway`. Usage: OMNI SHARED_DIR

A client streams a 200 MB chunked body at /v1/completions. The gateway must answer 413 as soon as
the decoded size passes --max-body (4 MiB by default), long before the client is through, without
holding the body: its peak memory (VmHWM) stays within a bound over its baseline. A declared
Content-Length over the limit is 413 before any body byte; a chunked body under it is served, and
other clients are served during the flood. A body that trickles in is 408 at --body-timeout.
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_net_lib import Gateway, Reader, connect, exchange, fail, get, model_id, ok, timed  # noqa: E402

OMNI, SHARED = sys.argv[1], sys.argv[2]
TOTAL = 200 << 20
CHUNK = 64 << 10
MAX_BODY = 4 << 20
GROWTH_BOUND_MB = 64      # over the baseline; the body alone would be 200 MB
ABSOLUTE_BOUND_MB = 300

BODY_TIMEOUT_S = 2.0

with Gateway(OMNI, SHARED, "--body-timeout", str(BODY_TIMEOUT_S)) as gw:
    model = model_id(gw.port)
    # A chunked request under the limit is decoded and served like any other.
    body = json.dumps({"model": model, "prompt": "hello", "max_tokens": 2}).encode()
    chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
    r = exchange(gw.port, b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                          b"Content-Type: application/json\r\nConnection: close\r\n\r\n" + chunked + b"0\r\n\r\n")
    if r.status != 200 or "choices" not in r.json():
        fail("a small chunked completion got %d: %r" % (r.status, r.body[:300]))
    ok("a chunked completion under the limit is served")

    # A declared length over the limit: 413 with nothing of the body sent.
    r, took = timed(exchange, gw.port, b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                       b"Content-Length: 209715200\r\n\r\n")
    if r.status != 413 or took > 3:
        fail("Content-Length: 200 MB got %d in %.2f s, not 413 at once" % (r.status, took))
    ok("Content-Length over --max-body is 413 before the body (%.2f s)" % took)

    baseline = gw.vmhwm_mb()
    s = connect(gw.port, timeout=30)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Type: application/json\r\n\r\n")
    sent = [0]
    send_error = [None]
    piece = b"%x\r\n%s\r\n" % (CHUNK, b"x" * CHUNK)

    def flood():
        try:
            while sent[0] < TOTAL:
                s.sendall(piece)
                sent[0] += CHUNK
            s.sendall(b"0\r\n\r\n")
        except OSError as e:  # the gateway closed after its 413: what should happen
            send_error[0] = e

    sender = threading.Thread(target=flood)
    started = time.monotonic()
    sender.start()
    try:
        r = Reader(s).response()
    except (OSError, EOFError) as e:
        fail("no response to a 200 MB chunked body: %r (the client sent %d MB)" % (e, sent[0] >> 20))
    took = time.monotonic() - started
    sent_at_answer = sent[0]
    # Another client is served meanwhile.
    h, htook = timed(get, gw.port, "/health")
    sender.join(timeout=60)
    s.close()
    if sender.is_alive():
        fail("the client could still send after the 413 for 60 s")
    if r.status != 413 or r.json()["error"]["code"] != "request_too_large":
        fail("a 200 MB chunked body got %d: %r" % (r.status, r.body[:300]))
    if sent_at_answer > 32 << 20:
        fail("the 413 came only after the client had sent %d MB (the limit is 4 MiB)" % (sent_at_answer >> 20))
    if send_error[0] is None:
        fail("the client sent all 200 MB: the gateway kept reading after its 413")
    if h.status != 200 or htook > 3:
        fail("/health got %d in %.2f s during the flood" % (h.status, htook))
    peak = gw.vmhwm_mb()
    if peak - baseline > GROWTH_BOUND_MB or peak > ABSOLUTE_BOUND_MB:
        fail("the gateway's VmHWM went from %.0f MB to %.0f MB (bounds: +%d MB, %d MB)"
             % (baseline, peak, GROWTH_BOUND_MB, ABSOLUTE_BOUND_MB))
    ok("200 MB chunked: 413 after %.2f s with %d MB sent, the client cut off (%s), VmHWM %.0f -> %.0f MB"
       % (took, sent_at_answer >> 20, type(send_error[0]).__name__, baseline, peak))

    # A body that does not arrive in time, plain or chunked: 408, then closed.
    for framing, start in (("Content-Length", b"Content-Length: 100\r\n\r\n{"),
                           ("chunked", b"Transfer-Encoding: chunked\r\n\r\n64\r\n{")):
        s = connect(gw.port, timeout=BODY_TIMEOUT_S + 10)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + start)
        try:
            r, took = timed(Reader(s).response)
        except (OSError, EOFError) as e:
            fail("a %s body that never arrives got no 408: %r" % (framing, e))
        s.close()
        if r.status != 408 or not BODY_TIMEOUT_S - 0.5 < took < BODY_TIMEOUT_S + 4:
            fail("a %s body that never arrives got %d after %.2f s (--body-timeout %.0f)"
                 % (framing, r.status, took, BODY_TIMEOUT_S))
    ok("bodies that do not arrive within --body-timeout get 408")
