#!/usr/bin/env python3
"""Slow headers (issue 15, item 1) against `omni gateway` on loopback. Usage: OMNI SHARED_DIR

1. 100 connections send a request head one line every 2 s (more than the 84 threads a default
   gateway answers with): /health and a small completion must keep answering within a few seconds
   all along, and the slow connections must not cost a thread each.
2. With --max-connections-per-ip 16 and --head-timeout 3: 20 slow connections from 127.0.0.1, of
   which the 4 over the cap get 503 at once; another address (127.0.0.2) is served meanwhile; the
   slow ones get 408 at their deadline and are closed, after which 127.0.0.1 is served again.
3. With --max-connections 8: 8 slow connections, and a ninth from another address gets 503 at
   once; closing one gives its place back.
"""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_net_lib import (Gateway, Reader, can_bind, completion_request, connect, exchange, fail, get,  # noqa: E402
                             model_id, ok, timed)

OMNI, SHARED = sys.argv[1], sys.argv[2]
SLOW = 100
HEALTH_BOUND_S = 3.0
COMPLETION_BOUND_S = 15.0


def open_slow(port, count, source="127.0.0.1"):
    socks = []
    for _ in range(count):
        s = connect(port, source)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        socks.append(s)
    return socks


def drip(socks, stop, period):
    """One more header line on every connection each period, until `stop`; returns nothing."""
    i = 0
    while not stop.wait(period):
        i += 1
        for s in socks:
            try:
                s.sendall(b"X-Slow-%d: v\r\n" % i)
            except OSError:
                pass


# --- 1: a hundred slow heads do not starve anyone ---------------------------------------------
with Gateway(OMNI, SHARED, "--max-connections-per-ip", "200", "--head-timeout", "60") as gw:
    model = model_id(gw.port)
    threads_before = gw.threads()
    socks = open_slow(gw.port, SLOW)
    stop = threading.Event()
    dripper = threading.Thread(target=drip, args=(socks, stop, 2.0))
    dripper.start()
    try:
        time.sleep(1.0)
        worst_health = 0.0
        end = time.monotonic() + 10
        completions = 0
        while time.monotonic() < end:
            try:
                r, took = timed(get, gw.port, "/health", timeout=HEALTH_BOUND_S * 3)
            except OSError as e:
                fail("/health failed while %d heads trickle in: %r" % (SLOW, e))
            if r.status != 200 or took > HEALTH_BOUND_S:
                fail("/health got %d in %.2f s while %d heads trickle in (bound %.0f s)" % (r.status, took, SLOW,
                                                                                           HEALTH_BOUND_S))
            worst_health = max(worst_health, took)
            if completions < 2:
                try:
                    r, took = timed(exchange, gw.port, completion_request(model), timeout=COMPLETION_BOUND_S * 2)
                except OSError as e:
                    fail("a completion failed while %d heads trickle in: %r" % (SLOW, e))
                if r.status != 200 or took > COMPLETION_BOUND_S:
                    fail("a completion got %d in %.2f s while %d heads trickle in" % (r.status, took, SLOW))
                completions += 1
            time.sleep(0.5)
        threads_during = gw.threads()
    finally:
        stop.set()
        dripper.join()
    # The slow connections are all still open (none was refused or dropped): each gets its answer
    # once its head is complete.
    answered = 0
    for s in socks:
        try:
            s.sendall(b"Connection: close\r\n\r\n")
            if Reader(s).response().status == 200:
                answered += 1
        except (OSError, EOFError):
            pass
        s.close()
    if answered != SLOW:
        fail("only %d of the %d slow heads were answered once complete" % (answered, SLOW))
    if threads_during > threads_before + 8:
        fail("the gateway went from %d to %d threads with %d slow heads" % (threads_before, threads_during, SLOW))
    ok("%d slow heads: /health took at most %.2f s, completions answered, threads %d -> %d, all %d answered"
       % (SLOW, worst_health, threads_before, threads_during, SLOW))

# --- 2: per-IP cap and head deadline -----------------------------------------------------------
if not can_bind("127.0.0.2"):
    print("SKIP: cannot bind 127.0.0.2 (part 2 needs a second loopback address)")
    sys.exit(77)
CAP, HEAD_TIMEOUT_S = 16, 3.0
with Gateway(OMNI, SHARED, "--max-connections-per-ip", str(CAP), "--head-timeout", str(HEAD_TIMEOUT_S)) as gw:
    started = time.monotonic()
    socks = open_slow(gw.port, CAP)
    # Over the cap: 503 at once, then closed.
    for _ in range(4):
        s = connect(gw.port)
        try:
            r, took = timed(Reader(s).response)
        except (OSError, EOFError) as e:
            fail("a connection over the per-IP cap got no 503: %r" % (e,))
        if r.status != 503 or took > 2.0 or r.json()["error"]["code"] != "too_many_connections":
            fail("a connection over the per-IP cap got %d in %.2f s: %r" % (r.status, took, r.body))
        s.close()
    r, took = timed(get, gw.port, "/health", source="127.0.0.2")
    if r.status != 200 or took > HEALTH_BOUND_S:
        fail("/health from 127.0.0.2 got %d in %.2f s while 127.0.0.1 is at its cap" % (r.status, took))
    ok("over %d connections from one address: 503 at once; another address is served in %.2f s" % (CAP, took))
    # Past the head deadline each slow connection is answered 408 and closed.
    for s in socks:
        s.settimeout(HEAD_TIMEOUT_S + 5)
        try:
            r = Reader(s).response()
        except (OSError, EOFError) as e:
            fail("a slow head got no 408: %r" % (e,))
        if r.status != 408:
            fail("a slow head got %d, not 408" % r.status)
        s.close()
    waited = time.monotonic() - started
    if waited < HEAD_TIMEOUT_S - 0.5 or waited > HEAD_TIMEOUT_S + 4:
        fail("the slow heads were answered 408 after %.2f s, not about %.0f s" % (waited, HEAD_TIMEOUT_S))
    # The gateway frees a place when it reads the client's close, which its reader thread may do a
    # moment after the close() above on a loaded machine: the places must be free within 3 s.
    freed_by = time.monotonic() + 3.0
    r, took = timed(get, gw.port, "/health")
    while r.status == 503 and time.monotonic() < freed_by:
        time.sleep(0.1)
        r, took = timed(get, gw.port, "/health")
    if r.status != 200:
        fail("/health from 127.0.0.1 got %d 3 s after its slow connections were closed" % r.status)
    ok("slow heads get 408 after %.2f s (--head-timeout %.0f) and free their places" % (waited, HEAD_TIMEOUT_S))

# --- 3: the cap on all connections -------------------------------------------------------------
TOTAL = 8
with Gateway(OMNI, SHARED, "--max-connections", str(TOTAL)) as gw:
    socks = open_slow(gw.port, TOTAL)
    s = connect(gw.port, source="127.0.0.2")
    try:
        r, took = timed(Reader(s).response)
    except (OSError, EOFError) as e:
        fail("a connection over --max-connections got no 503: %r" % (e,))
    s.close()
    if r.status != 503 or took > 2.0:
        fail("a connection over --max-connections %d got %d in %.2f s" % (TOTAL, r.status, took))
    socks.pop().close()
    deadline = time.monotonic() + 5
    while True:  # the freed place is given back once the gateway sees the close
        r = get(gw.port, "/health", source="127.0.0.2")
        if r.status == 200:
            break
        if time.monotonic() > deadline:
            fail("a place freed under --max-connections was not given back within 5 s")
        time.sleep(0.1)
    for s in socks:
        s.close()
    ok("over --max-connections %d: 503 at once, from any address; a closed connection frees its place" % TOTAL)
