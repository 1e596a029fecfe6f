#!/usr/bin/env python3
"""Connections that never say hello (issue 15, item 13) against `omni node` on loopback.
Usage: OMNI SHARED_DIR

The node runs with --hello-timeout 2 --connection-idle-timeout 3 --max-connections-per-ip 8
--max-connections 32.
1. Plain TCP connections that never start TLS are closed at the TLS deadline (2 s).
2. TLS connections that never send hello are closed --hello-timeout after TLS.
3. Connections that say hello and then stay silent, holding no session, are closed after
   --connection-idle-timeout.
4. A 9th connection from one address is told "connections from your address" (an Abort after TLS)
   and closed at once, while a legitimate client from another address is served.
5. With 32 connections open in all, the next is told the node's total limit; once the silent ones
   are gone a legitimate client is served again.
Accepted sockets have TCP keepalive on (checked with `ss` when it is installed). Peak memory stays
small throughout.
"""
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_net_lib import (Node, Workdir, client_identity, fail, greet, ok, read_until_closed,  # noqa: E402
                          run_client, tcp_connect, tls_connect)

OMNI, SHARED = sys.argv[1], sys.argv[2]


def closed_within(socks, bound_s, since=None):
    """Waits up to bound_s for the node to close every socket; returns (the latest close, counted from
    `since`, default now; how many stayed open)."""
    started, worst = since or time.monotonic(), [0.0]
    errors = []

    def wait(s):
        _, closed = read_until_closed(s, bound_s)
        if not closed:
            errors.append(s)
        worst[0] = max(worst[0], time.monotonic() - started)

    threads = [threading.Thread(target=wait, args=(s,)) for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in socks:
        s.close()
    return worst[0], len(errors)


with Workdir() as work:
    identity = client_identity(work)
    with Node(OMNI, SHARED, work, "--hello-timeout", "2", "--connection-idle-timeout", "3",
              "--max-connections-per-ip", "8", "--max-connections", "32") as node:
        run_client(OMNI, SHARED, work, node.addr, 10.0, "before the attack")

        # --- 1 + 2 + 3 at once: silent TCP, TLS without hello, hello then idle ------------------------
        since = {"tcp": time.monotonic()}
        tcp = [tcp_connect(node.port, "127.0.0.2") for _ in range(8)]
        since["tls"] = time.monotonic()
        tls = [tls_connect(node.port, identity, "127.0.0.3") for _ in range(8)]
        idle = [tls_connect(node.port, identity, "127.0.0.4") for _ in range(4)]
        for s in idle:
            greet(s)
        since["idle"] = time.monotonic()
        if shutil.which("ss"):
            out = subprocess.run(["ss", "-tno", "state", "established", "( sport = :%d )" % node.port],
                                 stdout=subprocess.PIPE, universal_newlines=True).stdout
            if "keepalive" not in out:
                fail("accepted sockets have no TCP keepalive timer: " + out[:800])
            ok("accepted sockets have TCP keepalive on")
        results = {}
        for name, socks, bound in (("tcp", tcp, 5.0), ("tls", tls, 7.0), ("idle", idle, 7.0)):
            t = threading.Thread(target=lambda n=name, s=socks, b=bound:
                                 results.__setitem__(n, closed_within(s, b, since[n])))
            t.start()
            results[name + "_thread"] = t
        took = run_client(OMNI, SHARED, work, node.addr, 10.0, "while silent connections are open")
        for name in ("tcp", "tls", "idle"):
            results[name + "_thread"].join()
        # Closed no sooner than their deadline (2 s from accept; 2 s from TLS; 3 s from hello), less
        # 0.2 s for when the clock started here.
        for name, what, low in (("tcp", "plain TCP connections without TLS", 1.8),
                                ("tls", "TLS connections without hello", 1.8),
                                ("idle", "connections idle after hello", 2.8)):
            worst, open_left = results[name]
            if open_left:
                fail("%d %s stayed open" % (open_left, what))
            if worst < low:
                fail("%s were closed after %.2f s, before their deadline" % (what, worst))
            ok("%s closed after at most %.2f s" % (what, worst))
        for text in ("TLS handshake timed out after 2 s", "no hello within 2 s", "idle for 3 s with no open session"):
            if text not in node.log_text():
                fail("not logged: " + text + "\n" + node.log_text()[-800:])
        ok("a legitimate client was served in %.2f s meanwhile" % took)

        # --- 4: per-address limit ----------------------------------------------------------------------
        held = [tls_connect(node.port, identity, "127.0.0.5") for _ in range(8)]
        extra = tls_connect(node.port, identity, "127.0.0.5")
        data, closed = read_until_closed(extra, 3.0)
        extra.close()
        if not closed or b"connections from your address" not in data:
            fail("a 9th connection from one address was not refused clearly: %r" % data[:300])
        took = run_client(OMNI, SHARED, work, node.addr, 10.0, "while one address is at its limit")
        ok("9th connection from one address refused with its reason; another address served in %.2f s" % took)

        # --- 5: total limit ------------------------------------------------------------------------------
        for i in range(3):
            held += [tls_connect(node.port, identity, "127.0.0.%d" % (6 + i)) for _ in range(8)]
        extra = tls_connect(node.port, identity, "127.0.0.20")
        data, closed = read_until_closed(extra, 3.0)
        extra.close()
        if not closed or b"connections, its limit" not in data:
            fail("the 33rd connection was not refused clearly: %r" % data[:300])
        worst, open_left = closed_within(held, 8.0)
        if open_left:
            fail("%d held connections stayed open" % open_left)
        took = run_client(OMNI, SHARED, work, node.addr, 10.0, "after the node was full")
        if node.vmhwm_mb() > 150:
            fail("peak memory %.0f MB" % node.vmhwm_mb())
        ok("33rd connection refused with its reason; served in %.2f s once the silent ones were closed; peak %.0f MB"
           % (took, node.vmhwm_mb()))
print("PASS")
