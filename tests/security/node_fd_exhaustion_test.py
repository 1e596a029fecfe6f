#!/usr/bin/env python3
"""Out of file descriptors (issue 15, item 11) against `omni node` on loopback. Usage: OMNI SHARED_DIR

The node runs with `ulimit -n 64` (soft and hard, so raising the soft limit cannot help) and
--hello-timeout 3. 70 plain TCP connections that never start TLS take every descriptor: accept()
fails with EMFILE. The node must stay up (it used to exit), log the condition once, and serve a
legitimate `omni run` as soon as the silent connections' TLS deadline frees descriptors; once they
are gone it serves at once again and logs that it accepts again. Peak memory stays small.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_net_lib import Node, Workdir, fail, ok, run_client, tcp_connect  # noqa: E402

OMNI, SHARED = sys.argv[1], sys.argv[2]
SILENT = 70

with Workdir() as work:
    with Node(OMNI, SHARED, work, "--hello-timeout", "3", "--max-connections-per-ip", "1000", nofile=64) as node:
        run_client(OMNI, SHARED, work, node.addr, 10.0, "before the attack")
        socks = []
        for _ in range(SILENT):
            try:
                socks.append(tcp_connect(node.port, "127.0.0.2", timeout=5))
            except OSError as e:
                fail("connection %d could not even be queued: %r" % (len(socks), e))
        if not node.wait_log("cannot accept connections", 5.0):
            fail("the node did not run out of descriptors (or did not say so): " + node.log_text()[-500:])
        time.sleep(0.5)
        if not node.alive():
            fail("the node died out of descriptors: " + node.log_text()[-800:])
        if node.log_text().count("cannot accept connections") != 1:
            fail("the condition was logged more than once: " + node.log_text()[-800:])
        ok("%d silent connections: accept() fails (%s), the node is up with %d descriptors open"
           % (SILENT, node.log_text().split("cannot accept connections (")[1].split(":")[0], node.open_fds()))
        # Queued behind the silent ones, served once their TLS deadline (3 s) frees descriptors.
        took = run_client(OMNI, SHARED, work, node.addr, 15.0, "while descriptors run out")
        ok("a legitimate client was served in %.2f s while %d silent connections came and went" % (took, SILENT))
        for s in socks:
            s.close()
        time.sleep(4)  # the last silent ones reach their deadline
        took = run_client(OMNI, SHARED, work, node.addr, 10.0, "after the attack")
        if "accepting connections again" not in node.log_text():
            fail("recovery not logged: " + node.log_text()[-500:])
        if node.vmhwm_mb() > 150:
            fail("peak memory %.0f MB" % node.vmhwm_mb())
        ok("after the attack: served in %.2f s, recovery logged, peak %.0f MB" % (took, node.vmhwm_mb()))
print("PASS")
