#!/usr/bin/env python3
"""The DHT binds what --listen says (issue 15 item 18; docs/security.md "DHT"). Before, OpenDHT's
UDP socket took 0.0.0.0 and [::] whatever --listen said, so a node meant for loopback (or one
interface) answered DHT traffic on every address of the machine.

  - `omni node --bootstrap-only --listen 127.0.0.1:0`: every UDP socket is on 127.0.0.1;
  - a node with --listen 127.0.0.1:0 --bootstrap: its UDP and TCP listeners are all on 127.0.0.1,
    and a client that finds it through the DHT is served (within a time bound);
  - `--listen [::1]:0` (where the machine has IPv6 loopback): every UDP socket is on ::1 only.
Usage: dht_bind_test.py OMNI SHARED_DIR"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from process_lib import Omni, bound_sockets, fail, have_ipv6_loopback, model_path, ok, run  # noqa: E402


def only_on(what, sockets, host):
    if not sockets:
        fail("%s holds no socket of that kind" % what)
    wrong = [s for s in sockets if s[0] != host]
    if wrong:
        fail("%s is bound to %s, not only %s" % (what, wrong, host))
    ok("%s: bound to %s" % (what, ", ".join("%s:%d" % s for s in sockets)))


def main():
    omni, shared = sys.argv[1], sys.argv[2]
    model = model_path(shared)
    work = tempfile.mkdtemp(prefix="omni-dht-bind.")
    with Omni(omni, "node", "--bootstrap-only", "--listen", "127.0.0.1:0") as boot:
        boot_addr = boot.wait_for(r"^omni node: bootstrap DHT node listening on udp (\S+)$").group(1)
        only_on("bootstrap DHT node (udp)", bound_sockets(boot.pid, "udp"), "127.0.0.1")
        with Omni(omni, "node", "-m", model, "--blocks", "0:4", "--listen", "127.0.0.1:0", "--bootstrap", boot_addr,
                  "--data-dir", os.path.join(work, "node"), "-t", "1", "--announce-interval", "1") as node:
            node.wait_for(r"^omni node: peer \S+ listening on ")
            only_on("node DHT (udp)", bound_sockets(node.pid, "udp"), "127.0.0.1")
            only_on("node listener (tcp)", bound_sockets(node.pid, "tcp"), "127.0.0.1")
            rc, out, err, took = run(omni, "run", "-m", model, "-p", "hello", "-n", "4", "-t", "1", "--bootstrap",
                                     boot_addr, "--data-dir", os.path.join(work, "client"), timeout=50)
            if rc != 0:
                fail("a client through the DHT was not served (%d): %s\nnode: %s" % (rc, err, node.text()))
            if took > 40:
                fail("the client through the DHT took %.1f s" % took)
            if "127.0.0.1:" not in err:
                fail("the client did not say which node served it: " + err)
            ok("a client that found the node through the DHT was served in %.1f s: %s" % (took, err.strip().splitlines()[-1]))
            if node.vmhwm_mb() > 1024:
                fail("the node peaked at %.0f MB" % node.vmhwm_mb())
    if have_ipv6_loopback():
        with Omni(omni, "node", "--bootstrap-only", "--listen", "[::1]:0") as boot6:
            boot6.wait_for(r"^omni node: bootstrap DHT node listening on udp \[::1\]:\d+$")
            only_on("bootstrap DHT node on [::1] (udp)", bound_sockets(boot6.pid, "udp"), "::1")
    else:
        ok("no IPv6 loopback here: the [::1] case is left out")
    print("PASS")


if __name__ == "__main__":
    main()
