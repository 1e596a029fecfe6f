#!/usr/bin/env python3
"""A burst of connects to `omni gateway` (issue 15, item 10). Usage: OMNI SHARED_DIR

Before, the listen backlog was httplib's 5: a burst of connects while the gateway was busy left
all but ~6 of them retrying their SYN (1 s, 3 s, 7 s later). Here the gateway is paused (SIGSTOP,
so it accepts nothing) while 60 clients connect: with a real backlog the kernel completes every
handshake at once. Resumed, the gateway answers all 60 (`/health`) promptly, and the paused
gateway did not grow (VmHWM bound).
"""
import errno
import os
import select
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_net_lib import Gateway, Reader, fail, get, ok  # noqa: E402

OMNI, SHARED = sys.argv[1], sys.argv[2]
CLIENTS = 60  # under the per-address connection cap (64), so every one must be served

with Gateway(OMNI, SHARED) as gw:
    if get(gw.port, "/health").status != 200:
        fail("the gateway does not answer /health")
    socks = []
    os.kill(gw.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        for _ in range(CLIENTS):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex(("127.0.0.1", gw.port))
            if rc not in (0, errno.EINPROGRESS):
                fail("connect failed at once: %s" % os.strerror(rc))
            socks.append(s)
        # A handshake the kernel completes makes the socket writable; one whose SYN was dropped
        # (a full backlog) stays pending until its retry, a second or more later.
        pending = set(socks)
        deadline = started + 0.8
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], list(pending), [], max(0.0, deadline - time.monotonic()))
            for s in writable:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    fail("a connect failed while the gateway was paused")
                pending.discard(s)
        if pending:
            fail("%d of %d connects did not complete within 0.8 s while the gateway was not accepting "
                 "(a short listen backlog)" % (len(pending), CLIENTS))
        ok("%d connects completed in %.2f s while the gateway accepted nothing" %
           (CLIENTS, time.monotonic() - started))
    finally:
        os.kill(gw.proc.pid, signal.SIGCONT)

    started = time.monotonic()
    for s in socks:
        s.setblocking(True)
        s.settimeout(10)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    for s in socks:
        try:
            r = Reader(s).response()
        except (OSError, EOFError) as e:
            fail("a queued client got no answer: %s" % e)
        if r.status != 200:
            fail("a queued client got %d" % r.status)
        s.close()
    took = time.monotonic() - started
    if took > 5:
        fail("the %d queued clients took %.2f s to be answered" % (CLIENTS, took))
    ok("all %d queued clients answered in %.2f s once the gateway resumed" % (CLIENTS, took))
    if gw.vmhwm_mb() > 200:
        fail("peak memory %.0f MB" % gw.vmhwm_mb())
print("PASS")
