#!/usr/bin/env python3
"""A chain's next hop pointed anywhere (issue 15, item 15) against `omni node` on loopback.
Usage: OMNI SHARED_DIR

Node A (blocks 0:2) and node B (2:4). Clients open chains through A whose next hop (--hop-addresses)
is given (by B's id) as: a closed port, an open port whose server sends an SSH-like banner, and the
address of node C (another node, another id), besides B itself. The first three must fail alike:
"next hop unreachable", no errno text, no banner, no id mismatch, and (A runs with
--fast-hop-failures 0) no sooner than the node's connect timeout (10 s), so that the answer's
text and timing tell nothing about what listens there; A's log keeps the details. The real chain
works, and a legitimate client is served by A meanwhile.

Node D (--fast-hop-failures 2) answers its first two unreachable hops at once (a client
re-routing around a node that just died is not held up) and the third only at the timeout.
"""
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_net_lib import Node, Workdir, fail, model_path, ok, run_client  # noqa: E402

OMNI, SHARED = sys.argv[1], sys.argv[2]
BANNER = b"SSH-2.0-OpenSSH_9.2p1 secret-banner-7f3a\r\n"
CONNECT_TIMEOUT_S = 10  # NodeOptions::connect_timeout_s


def banner_server():
    """A TCP server that greets every connection with BANNER and reads until it closes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            try:
                c.sendall(BANNER)
                c.settimeout(15)
                while c.recv(4096):
                    pass
            except OSError:
                pass
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


with Workdir() as work:
    with Node(OMNI, SHARED, work, "--fast-hop-failures", "0", blocks="0:2", name="a") as a, Node(OMNI, SHARED, work, blocks="2:4", name="b") as b, \
            Node(OMNI, SHARED, work, blocks="2:4", name="c") as c:
        srv = banner_server()
        cases = {
            "closed port": "%s@127.0.0.1:%d" % (b.peer_id, closed_port()),
            "banner port": "%s@127.0.0.1:%d" % (b.peer_id, srv.getsockname()[1]),
            "wrong id": "%s@%s" % (b.peer_id, c.addr.split("@")[1]),
        }
        procs = {}
        for name, hop in cases.items():
            started = time.monotonic()
            p = subprocess.Popen([OMNI, "run", "-m", model_path(SHARED), "-p", "hi", "-n", "2", "-t", "1", "--route",
                                  "chain", "--peers", a.addr + "," + b.addr, "--hop-addresses", hop,
                                  "--data-dir", os.path.join(work, "client-" + name.replace(" ", "-"))],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs[name] = (p, started)
        took = run_client(OMNI, SHARED, work, a.addr + "," + b.addr, 10.0, "while hops are probed")
        ok("the real chain served a legitimate client in %.2f s meanwhile" % took)
        messages, durations = {}, {}
        for name, (p, started) in procs.items():
            try:
                _, err = p.communicate(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
                fail(name + ": the client hung")
            durations[name] = time.monotonic() - started
            err = err.decode(errors="replace")
            if p.returncode == 0:
                fail(name + ": a chain through a bogus hop worked")
            if "next hop unreachable" not in err:
                fail(name + ": not the generic error: " + err[-500:])
            for leak in ("refused", "Connection", "SSH", "secret-banner", "mismatch", "TLS", "handshake", "timed out",
                         "errno", c.peer_id):
                if leak in err:
                    fail("%s: the error tells %r: %s" % (name, leak, err[-500:]))
            # The same sentence whatever the hop was, but for the address the caller gave.
            messages[name] = re.sub(r"127\.0\.0\.1:\d+", "ADDR", err.strip().splitlines()[-1])
        if len(set(messages.values())) != 1:
            fail("the errors differ: %r" % messages)
        for name, d in durations.items():
            if d < CONNECT_TIMEOUT_S - 0.5:
                fail("%s: failed after %.2f s, sooner than the connect timeout (%d s)" % (name, d, CONNECT_TIMEOUT_S))
        if max(durations.values()) - min(durations.values()) > 3:
            fail("failure times differ: %r" % durations)
        ok("closed port, banner port and wrong id all answer %r after %s s" %
           (messages["closed port"], ", ".join("%.1f" % durations[n] for n in cases)))
        log = a.log_text()
        if log.count("unreachable:") < 3:
            fail("node A did not log the details: " + log[-800:])
        srv.close()
        if a.vmhwm_mb() > 150:
            fail("peak memory %.0f MB" % a.vmhwm_mb())
        ok("node A logged each hop's real failure")

    with Node(OMNI, SHARED, work, "--fast-hop-failures", "2", blocks="0:2", name="d") as d, \
            Node(OMNI, SHARED, work, blocks="2:4", name="e") as e:
        taken = []
        for i in range(3):
            started = time.monotonic()
            p = subprocess.run([OMNI, "run", "-m", model_path(SHARED), "-p", "hi", "-n", "2", "-t", "1", "--route",
                                "chain", "--peers", d.addr + "," + e.addr, "--hop-addresses",
                                "%s@127.0.0.1:%d" % (e.peer_id, closed_port()),
                                "--data-dir", os.path.join(work, "client-d%d" % i)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=40)
            taken.append(time.monotonic() - started)
            err = p.stderr.decode(errors="replace")
            if p.returncode == 0 or "next hop unreachable" not in err:
                fail("fast budget, attempt %d: not the generic error: %s" % (i + 1, err[-500:]))
        if taken[0] > 5 or taken[1] > 5:
            fail("the first two unreachable hops were not answered at once: %r" % taken)
        if taken[2] < CONNECT_TIMEOUT_S - 0.5:
            fail("the third unreachable hop, past the budget, was answered after %.2f s" % taken[2])
        ok("with a budget of 2: answered after %s s" % ", ".join("%.1f" % t for t in taken))
print("PASS")
