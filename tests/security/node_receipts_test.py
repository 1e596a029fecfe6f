#!/usr/bin/env python3
"""A hostile payer against `omni node`'s credit ledger (issue 16, item 4). Usage: OMNI SHARED_DIR

The hostile client is receipt_flood (src/net/tools/receipt_flood.cpp): 20 fresh anonymous identities
from 127.0.0.1, each sending full batches of 64 work receipts back to back for FLOOD_S seconds, in
turn valid ones signed by that identity (Sybil self-dealing), forged ones (the count raised after
signing) and stale ones (issued two days ago). The defence:
- forged batches are refused as PermissionDenied, stale ones as InvalidArgument, and nothing of
  them is stored (all or nothing);
- what the flood can make the node store and verify is bounded by the per-address rate
  (--max-receipts-per-minute, RATE here; every receipt presented counts, valid or not): the
  ledger's rows stay within RATE per started minute, refused beyond with ResourceExhausted naming
  the flag;
- a legitimate `omni run --peers` keeps being served within RUN_BOUND_S during the flood, and the
  node's peak memory (VmHWM) grows by at most HWM_GROWTH_MB.
"""
import json
import math
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_net_lib  # noqa: E402
from process_lib import fail, ok, skip  # noqa: E402

OMNI, SHARED = sys.argv[1], sys.argv[2]
FLOOD = os.environ.get("OMNI_RECEIPT_FLOOD") or os.path.join(
    os.path.dirname(OMNI), "..", "..", "src", "net", "receipt_flood")
FLOOD_S = 8
RATE = 20 * 64        # --max-receipts-per-minute: each identity's first batch (of each kind) fits
RUN_BOUND_S = 15.0    # for 16 tokens during the flood
HWM_GROWTH_MB = 100

if not os.path.exists(FLOOD):
    skip("receipt_flood is missing (%s)" % FLOOD)

with node_net_lib.Workdir() as tmp:
    with node_net_lib.Node(OMNI, SHARED, tmp, "--max-receipts-per-minute", str(RATE)) as node:
        hwm_before = node.vmhwm_mb()
        started = time.time()
        flood = subprocess.Popen([FLOOD, node.addr, str(FLOOD_S), "20"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        walls = []
        errors = []

        def legit():
            try:
                time.sleep(1)
                while flood.poll() is None and len(walls) < 3:
                    walls.append(node_net_lib.run_client(OMNI, SHARED, tmp, node.addr, RUN_BOUND_S,
                                                         "during the receipt flood", tokens=16))
            except SystemExit as e:
                errors.append(e)

        t = threading.Thread(target=legit)
        t.start()
        try:
            out, _ = flood.communicate(timeout=FLOOD_S + 40)
        except subprocess.TimeoutExpired:
            flood.kill()
            fail("receipt_flood did not finish in %d s" % (FLOOD_S + 40))
        t.join()
        if errors:
            sys.exit(1)
        if flood.returncode != 0:
            fail("receipt_flood failed: " + out)
        elapsed = time.time() - started
        result = json.loads(out.strip().splitlines()[-1])
        if not walls:
            fail("no legitimate run completed during the flood")
        ok("a legitimate client was served %d times during the flood (slowest %.1f s, bound %.0f s)"
           % (len(walls), max(walls), RUN_BOUND_S))
        refused, refusals = result["refused"], result["refusals"]
        if refused.get("PermissionDenied", 0) == 0 or "signature does not verify" not in refusals["PermissionDenied"]:
            fail("forged receipts were not refused as PermissionDenied: " + json.dumps(result))
        if refused.get("InvalidArgument", 0) == 0 or "outside this node's window" not in refusals["InvalidArgument"]:
            fail("stale receipts were not refused by their time: " + json.dumps(result))
        if refused.get("ResourceExhausted", 0) == 0 or "--max-receipts-per-minute" not in refusals["ResourceExhausted"]:
            fail("the flood was not held to the per-client rate: " + json.dumps(result))
        ok("flood: %d calls, %d receipts accepted; refused %s" % (result["calls"], result["accepted"], json.dumps(refused)))
        credits = subprocess.run([OMNI, "credits", "--data-dir", node.dir, "--json"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, timeout=30)
        if credits.returncode != 0:
            fail("omni credits failed: " + credits.stderr)
        balance = json.loads(credits.stdout)["balance"]
        # The flood and the legitimate client share 127.0.0.1's allowance; the flood spans at most
        # ceil(elapsed / 60) + 1 minute windows.
        bound = RATE * (math.ceil(elapsed / 60) + 1)
        if balance["receipts"] > bound:
            fail("the ledger holds %d receipts after %.0f s; the per-address rate allows %d"
                 % (balance["receipts"], elapsed, bound))
        if balance["receipts"] < result["accepted"]:
            fail("the node acknowledged %d receipts but its ledger holds %d" % (result["accepted"], balance["receipts"]))
        if balance["work"] < result["accepted"] * 1000:
            fail("the ledger's work %d is less than the accepted receipts' %d" % (balance["work"], result["accepted"] * 1000))
        growth = node.vmhwm_mb() - hwm_before
        if growth > HWM_GROWTH_MB:
            fail("the node's VmHWM grew by %.0f MB under the flood (bound %d MB)" % (growth, HWM_GROWTH_MB))
        ok("ledger: %d receipts (bound %d for %.0f s), work %d; node VmHWM +%.0f MB (bound %d)"
           % (balance["receipts"], bound, elapsed, balance["work"], growth, HWM_GROWTH_MB))

print("PASS")
