#!/usr/bin/env python3
"""One hostile client against `omni node` (issue 15, item 14) on loopback. Usage: OMNI SHARED_DIR

The hostile client is node_flood (src/net/tools/node_flood.cpp): from one address it makes a fresh
anonymous identity per connection (40 of them) and takes every session and ring sink the node
gives it.

1. Flood: it then sends full 512-token batches on all its sessions without pause. A legitimate
   `omni run --peers` from another address must still get a session and at least MIN_FRACTION of
   the throughput it has on the unloaded node, each run within RUN_BOUND_S. Measured in pairs, so
   that both runs of a pair see the same load on the shared machine: the flood is paused (SIGSTOP,
   its sessions kept, the node's queue left to drain), a run, the flood resumed, a run; the median
   of PAIRS pairs' ratios is what is bounded. The hostile client must hold no more than the per-client limit of sessions and
   sinks (half of --max-sessions: 8), refused with the designed error (ResourceExhausted, "too many
   sessions for one client"), and the node's peak memory (VmHWM) must stay bounded.
2. Keepalive: with --idle-timeout 2 it holds its sessions with refused calls only (a token id past
   the vocabulary, every 200 ms, for 5 s): every session must have expired, since only accepted
   work counts as use.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_net_lib  # noqa: E402
from gateway_net_lib import can_bind, fail, ok  # noqa: E402

OMNI, SHARED = sys.argv[1], sys.argv[2]
MODEL = os.path.join(SHARED, "models", "synth-llama-q8_0.gguf")
FLOOD = os.environ.get("OMNI_NODE_FLOOD") or os.path.join(
    os.path.dirname(OMNI), "..", "..", "src", "net", "node_flood")
MIN_FRACTION = 0.08   # of the unloaded tokens/s; before the fix a legitimate run got no session at all
RUN_BOUND_S = 15.0    # for 64 tokens under the flood
PAIRS = 3
HWM_GROWTH_MB = 200   # node's VmHWM during the flood, over its value before
PER_CLIENT = 8        # the default --max-sessions-per-client with --max-sessions 16

for what, path in (("the test model", MODEL), ("node_flood", FLOOD)):
    if not os.path.exists(path):
        print("SKIP: %s is missing (%s)" % (what, path))
        sys.exit(77)
for source in ("127.0.0.2", "127.0.0.3"):
    if not can_bind(source):
        print("SKIP: cannot bind %s (a second loopback address is needed)" % source)
        sys.exit(77)

tmp = tempfile.mkdtemp(prefix="omni-node-flood.")
floods = []  # killed before a node stops: a node's stop waits for its open sessions to end


class Node(node_net_lib.Node):
    """`omni node` serving every block on 127.0.0.1:0; the floods are killed first on stop (SIGTERM)."""

    def __init__(self, name, *args):
        super().__init__(OMNI, SHARED, tmp, *args, name=name, model=MODEL)
        self.address = self.addr

    def stop(self):
        for flood in floods:
            if flood.poll() is None:
                flood.kill()
                flood.wait()
        if not super().stop():
            fail("the node did not stop within 10 s of SIGTERM")


def legit_run(node, tokens=64):
    """A legitimate `omni run --peers` from 127.0.0.1: (tokens/s while generating, wall seconds)."""
    t0 = time.time()
    r = subprocess.run([OMNI, "run", "-m", MODEL, "--peers", node.address, "-p", "The quick brown fox jumps over",
                        "-n", str(tokens), "--temp", "0", "--ignore-eos", "-t", "1",
                        "--data-dir", os.path.join(tmp, "client")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60)
    wall = time.time() - t0
    if r.returncode != 0:
        fail("the legitimate run failed (exit %d): %s" % (r.returncode, r.stderr.strip()[-400:]))
    m = re.search(r"generated (\d+) tokens in [0-9.]+ s \(([0-9.]+) tok/s\)", r.stderr)
    if not m or int(m.group(1)) != tokens:
        fail("the legitimate run did not report %d generated tokens: %s" % (tokens, r.stderr[-400:]))
    return float(m.group(2)), wall


class Flood:
    """node_flood against `node` from `source`; its 'grabbed' line is read before the constructor returns."""

    def __init__(self, node, source, mode, seconds):
        self.proc = subprocess.Popen([FLOOD, node.address, source, mode, str(seconds), "40", "512"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        floods.append(self.proc)
        line = self.proc.stdout.readline()
        m = re.match(r"grabbed sessions=(\d+) sinks=(\d+)", line)
        if not m:
            self.proc.kill()
            fail("node_flood did not take its sessions: " + line + self.proc.stdout.read())
        self.sessions, self.sinks = int(m.group(1)), int(m.group(2))

    def result(self, timeout):
        """Ends the flood (its standard input closes) and returns its JSON summary."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            fail("node_flood did not finish in %d s" % timeout)
        if self.proc.returncode != 0:
            fail("node_flood failed: " + out)
        return json.loads(out.strip().splitlines()[-1])


# --- 1: a flood from one address does not take the node ----------------------------------------
with Node("flood") as node:
    hwm_before = node.vmhwm_mb()
    t0 = time.time()
    flood = Flood(node, "127.0.0.2", "flood", 50)
    if flood.sessions != PER_CLIENT or flood.sinks != PER_CLIENT:
        fail("the hostile client holds %d sessions and %d sinks from 40 identities; the per-client limit is %d"
             % (flood.sessions, flood.sinks, PER_CLIENT))
    ok("40 identities from 127.0.0.2 got %d sessions and %d sinks (the per-client limit) in %.1f s"
       % (flood.sessions, flood.sinks, time.time() - t0))
    pairs = []
    for _ in range(PAIRS):
        flood.proc.send_signal(signal.SIGSTOP)
        time.sleep(1.5)  # the node computes what was queued (at most 2048 tokens of this client)
        base, _ = legit_run(node)
        flood.proc.send_signal(signal.SIGCONT)
        time.sleep(0.5)  # the flood is under way again
        loaded, wall = legit_run(node)
        if flood.proc.poll() is not None:
            fail("the flood ended before the measurement did (its 50 s are too short here)")
        if wall > RUN_BOUND_S:
            fail("a legitimate run took %.1f s under the flood (bound %.0f s)" % (wall, RUN_BOUND_S))
        pairs.append((loaded / base, base, loaded, wall))
    pairs.sort()
    fraction, base, loaded, wall = pairs[len(pairs) // 2]
    shown = ", ".join("%.1f -> %.1f" % (p[1], p[2]) for p in pairs)
    if fraction < MIN_FRACTION:
        fail("under the flood the legitimate run got %.1f%% of its unloaded tok/s (median pair; bound %.0f%%): %s"
             % (100 * fraction, 100 * MIN_FRACTION, shown))
    ok("under the flood: %.1f%% of unloaded tok/s (median of %d pairs, bound %.0f%%; unloaded -> flooded: %s)"
       % (100 * fraction, PAIRS, 100 * MIN_FRACTION, shown))
    result = flood.result(20)
    if result["forwards"] == 0:
        fail("the hostile client's calls were never computed (the node shares, it does not starve): " + json.dumps(result))
    if result["refused"].get("ResourceExhausted", 0) == 0 or \
            "too many sessions for one client" not in result["refusal"]:
        fail("the hostile client was not refused with the per-client limit: " + json.dumps(result))
    growth = node.vmhwm_mb() - hwm_before
    if growth > HWM_GROWTH_MB:
        fail("the node's VmHWM grew by %.0f MB under the flood (bound %d MB)" % (growth, HWM_GROWTH_MB))
    ok("hostile: %d batches computed (%d tokens), refused %s ('%s'); node VmHWM +%.0f MB (bound %d)"
       % (result["forwards"], result["tokens"], json.dumps(result["refused"]), result["refusal"][:60], growth,
          HWM_GROWTH_MB))

# --- 2: refused calls do not keep sessions alive -----------------------------------------------
with Node("keepalive", "--idle-timeout", "2") as node:
    flood = Flood(node, "127.0.0.3", "keepalive", 5)
    result = flood.result(30)
    if flood.sessions == 0 or result["expired"] != flood.sessions:
        fail("after 5 s of refused calls with --idle-timeout 2, %d of %d sessions expired: %s"
             % (result["expired"], flood.sessions, json.dumps(result)))
    if result["refused"].get("InvalidArgument", 0) == 0:
        fail("the refused calls were not refused as InvalidArgument: " + json.dumps(result))
    ok("%d sessions kept with %d refused calls for 5 s all expired (--idle-timeout 2)"
       % (flood.sessions, result["refused"]["InvalidArgument"]))
    base, _ = legit_run(node, 16)
    ok("the node serves a legitimate run afterwards (%.1f tok/s)" % base)

print("PASS")
