#!/usr/bin/env python3
"""Oversized messages (issue 15, item 12) against `omni node` on loopback. Usage: OMNI SHARED_DIR

1. --allow-peers: a client not on the list is refused right after TLS, before any RPC: it is told
   why (an Abort naming its peer id) and the connection closes, whatever it sends.
2. Before hello: one message with 1,000,000 capability-table entries (16 MB) is refused at its
   segment table (the limit before hello is 64 KiB): the connection closes, the node's peak memory
   stays near its baseline (it was ~1 GB), a legitimate client is served meanwhile.
3. After hello: the same 1,000,000-entry message (within the 128 MiB message limit) is refused for
   its capability table; peak memory stays bounded.
4. Parked partial messages: 6 connections each say hello, then send 60 MiB of a message they never
   finish. The node's receive budget (--max-receive-buffer-mib 128) refuses the ones past it, peak
   memory stays under baseline + budget + slack (6 x 60 MiB were held before), a legitimate client
   is served, and the parked ones are closed once they stall for --hello-timeout.
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_net_lib import (Node, Workdir, bootstrap, call, client_identity, fail, frame_header, greet,  # noqa: E402
                          ok, read_until_closed, run_client, tls_connect, GATE_INTERFACE_ID)

OMNI, SHARED = sys.argv[1], sys.argv[2]
RUN_BOUND_S = 10.0
CAPS = 1000000

with Workdir() as work:
    identity = client_identity(work)

    # --- 1: --allow-peers is checked at TLS accept ---------------------------------------------------
    allow = os.path.join(work, "allow.txt")
    with open(allow, "w") as f:
        f.write("# nobody the test connects as\n")
    with Node(OMNI, SHARED, work, "--allow-peers", allow, name="private") as node:
        s = tls_connect(node.port, identity)
        try:
            s.sendall(bootstrap(0) + call(1, 0, GATE_INTERFACE_ID, 0, caps=CAPS))
        except OSError:
            pass  # the node may already have closed
        data, closed = read_until_closed(s, 5.0)
        s.close()
        if not closed:
            fail("an unlisted client's connection stayed open")
        if b"access denied: peer " not in data or b"--allow-peers" not in data:
            fail("the unlisted client was not told why: %r" % data[:300])
        if not node.wait_log("refused peer"):
            fail("the node did not log the refusal: " + node.log_text()[-500:])
        if node.vmhwm_mb() > 150:
            fail("peak memory %.0f MB after an unlisted client's message" % node.vmhwm_mb())
        ok("unlisted client refused after TLS with its reason, nothing read (peak %.0f MB)" % node.vmhwm_mb())

    with Node(OMNI, SHARED, work, "--max-receive-buffer-mib", "128", "--hello-timeout", "4") as node:
        run_client(OMNI, SHARED, work, node.addr, RUN_BOUND_S, "warm-up")
        base = node.vmhwm_mb()

        # --- 2: before hello, a 16 MB message is refused at its segment table -------------------------
        s = tls_connect(node.port, identity)
        started = time.monotonic()
        try:
            s.sendall(bootstrap(0) + call(1, 0, GATE_INTERFACE_ID, 0, caps=CAPS))
        except OSError:
            pass
        _, closed = read_until_closed(s, 5.0)
        s.close()
        if not closed:
            fail("a 16 MB message before hello did not close the connection")
        if node.vmhwm_mb() > base + 20:
            fail("peak memory %.0f MB after a 16 MB message before hello (baseline %.0f MB)" % (node.vmhwm_mb(), base))
        if not node.wait_log("exceeds this connection's limit of 65536 bytes"):
            fail("no clear reason logged: " + node.log_text()[-500:])
        run_client(OMNI, SHARED, work, node.addr, RUN_BOUND_S, "after the pre-hello message")
        ok("1,000,000 capabilities before hello: refused at the segment table in %.2f s, peak %.0f MB (base %.0f)"
           % (time.monotonic() - started, node.vmhwm_mb(), base))

        # --- 3: after hello, the capability table is limited ------------------------------------------
        s = tls_connect(node.port, identity)
        greet(s)
        try:
            s.sendall(call(2, 0, GATE_INTERFACE_ID, 0, caps=CAPS))
        except OSError:
            pass
        _, closed = read_until_closed(s, 10.0)
        s.close()
        if not closed:
            fail("a 1,000,000-capability message after hello did not close the connection")
        if not node.wait_log("capabilities, more than this connection's limit of 64"):
            fail("no clear reason logged for the capability table: " + node.log_text()[-500:])
        # The 16 MB message itself is read (it is within the 128 MiB limit); its capabilities are not built.
        if node.vmhwm_mb() > base + 60:
            fail("peak memory %.0f MB after 1,000,000 capabilities (baseline %.0f MB)" % (node.vmhwm_mb(), base))
        ok("1,000,000 capabilities after hello: refused, peak %.0f MB (base %.0f)" % (node.vmhwm_mb(), base))

        # --- 4: parked partial messages against the receive budget ------------------------------------
        base = node.vmhwm_mb()
        PARKED, MIB = 6, 60
        chunk = bytes(1 << 20)
        results = [None] * PARKED
        socks = []

        def park(i):
            try:
                s = tls_connect(node.port, identity, source="127.0.0.%d" % (2 + i))
                socks.append(s)
                greet(s)
                s.sendall(frame_header((MIB << 20) // 8 + 1024))
                for _ in range(MIB):
                    s.sendall(chunk)
                results[i] = "parked"
            except OSError as e:
                results[i] = "refused (%s)" % type(e).__name__

        threads = [threading.Thread(target=park, args=(i,)) for i in range(PARKED)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
        parked = results.count("parked")
        if parked == PARKED:
            fail("all %d partial messages of %d MiB were taken with a 128 MiB budget" % (PARKED, MIB))
        if not node.wait_log("the node's receive buffers are full"):
            fail("no budget refusal logged: " + node.log_text()[-600:])
        took = run_client(OMNI, SHARED, work, node.addr, RUN_BOUND_S, "while partial messages are parked")
        peak = node.vmhwm_mb()
        if peak > base + 128 + 40:
            fail("peak memory %.0f MB with parked partial messages (baseline %.0f MB, budget 128 MiB)" % (peak, base))
        # Stalled for --hello-timeout (4 s): closed, and the budget is free again.
        if not node.wait_log("a message stopped arriving", 10.0, parked):
            fail("parked partial messages were not closed: " + node.log_text()[-600:])
        for s in socks:
            s.close()
        if not node.alive():
            fail("the node died")
        ok("%d of %d parked %d MiB messages refused by the budget, a client served in %.2f s, peak %.0f MB "
           "(base %.0f), the parked ones closed when they stalled" % (PARKED - parked, PARKED, MIB, took, peak, base))
print("PASS")
