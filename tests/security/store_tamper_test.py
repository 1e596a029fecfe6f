#!/usr/bin/env python3
"""A store whose blobs were changed on disk, and a chunk size no peer serves (issue 15 items 19 and
20; docs/security.md "Store"). Before, a tampered shard loaded silently and was served to peers
(only `omni shard --verify` noticed), and `omni shard --chunk-kib 8192` made a model no peer could
serve.
  - nodes A and C share the model; a shard in A's store is tampered: A refuses to serve it (logged,
    naming the CID) and keeps serving runs; `omni fetch` from A and C gets every blob, verified;
  - a node started from the CID with a tampered shard in its store and no peers: refused, the
    error (Corruption) naming the CID; with --peers: the shard is fetched again and the node
    serves a run;
  - `omni shard --chunk-kib 8192`: refused, naming the 4096 KiB limit; 4096 works.
Usage: store_tamper_test.py OMNI SHARED_DIR"""

import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from process_lib import Omni, fail, model_path, ok, run  # noqa: E402


def largest_blob(store):
    blobs = os.path.join(store, "blobs")
    name = max(os.listdir(blobs), key=lambda n: os.path.getsize(os.path.join(blobs, n)))
    return name, os.path.join(blobs, name)


def tamper(path):
    time.sleep(0.05)  # the modification time moves on, as it does for any later edit
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x5A]))


def node_addr(node):
    return "%s@%s" % node.wait_for(r"^omni node: peer (\S+) listening on ([^,]+),").groups()


def client_run(omni, model, peers, work, what):
    rc, out, err, took = run(omni, "run", "-m", model, "-p", "hello", "-n", "4", "-t", "1", "--temp", "0", "--peers",
                             peers, "--data-dir", os.path.join(work, "client"), timeout=40)
    if rc != 0 or took > 30:
        fail("%s: a run was not served (rc %d, %.1f s): %s" % (what, rc, took, err))
    return out, took


def main():
    omni, shared = sys.argv[1], sys.argv[2]
    model = model_path(shared)
    work = tempfile.mkdtemp(prefix="omni-store-tamper.")
    try:
        rc, local, err, _ = run(omni, "run", "-m", model, "-p", "hello", "-n", "4", "-t", "1", "--temp", "0")
        if rc != 0:
            fail("local run: " + err)
        share = lambda name: Omni(omni, "node", "-m", model, "--blocks", "0:4", "--share", "--store",  # noqa: E731
                                  os.path.join(work, "store." + name), "--listen", "127.0.0.1:0", "--data-dir",
                                  os.path.join(work, name), "-t", "1")
        with share("a") as a, share("c") as c:
            addr_a, addr_c = node_addr(a), node_addr(c)
            cid = a.wait_for(r"^omni node: sharing model (\S+) ").group(1)
            name, path = largest_blob(os.path.join(work, "store.a"))
            tamper(path)

            # 1. Fetch from A and C: A does not serve the tampered blob, C does.
            rc, out, err, took = run(omni, "fetch", cid, "--peers", addr_a + "," + addr_c, "--store",
                                     os.path.join(work, "store.b"), "--data-dir", os.path.join(work, "b"), timeout=50)
            if rc != 0:
                fail("fetch from A (tampered) and C: %s\nA: %s" % (err, a.text()))
            rc, out, verr, _ = run(omni, "shard", "--verify", cid, "--store", os.path.join(work, "store.b"))
            if rc != 0:
                fail("the fetched blobs do not verify: " + verr)
            a.wait_for(r"not serving blob %s in store \S+ does not match its CID" % name, timeout=10)
            if os.path.exists(path):
                fail("A still holds the tampered blob")
            out, took = client_run(omni, model, addr_a, work, "node A after the tampering")
            if out != local:
                fail("node A's run differs from the local run")
            ok("a shard tampered in A's store: A refused to serve it (%s), a fetch from A and C got every blob "
               "(%s); A kept serving a run (%.2f s)" %
               (re.search(r"not serving blob \S+", a.text()).group(0),
                err.strip().splitlines()[-1] if err.strip() else "-", took))

            # 2. A node from the CID whose store holds a tampered shard.
            store_d = os.path.join(work, "store.d")
            shutil.copytree(os.path.join(work, "store.b"), store_d, ignore=shutil.ignore_patterns("lock"))
            name_d, path_d = largest_blob(store_d)
            tamper(path_d)
            rc, out, err, took = run(omni, "node", "-m", cid, "--blocks", "0:4", "--store", store_d, "--listen",
                                     "127.0.0.1:0", "--data-dir", os.path.join(work, "d"), "-t", "1", timeout=30)
            if rc == 0 or "listening on" in out:
                fail("a node loaded a tampered shard: %s%s" % (out, err))
            if "blob %s in store %s does not match its CID" % (name_d, store_d) not in err or took > 10:
                fail("a tampered shard without peers: unclear error or slow (%.1f s): %s" % (took, err))
            ok("a node from the CID with a tampered shard and no peers: refused in %.2f s: %s" %
               (took, err.strip().splitlines()[-1]))
            tamper_again = os.path.join(store_d, "blobs", name_d)
            if not os.path.exists(tamper_again):
                shutil.copy(os.path.join(work, "store.b", "blobs", name_d), tamper_again)
                tamper(tamper_again)
            with Omni(omni, "node", "-m", cid, "--blocks", "0:4", "--store", store_d, "--peers", addr_c, "--listen",
                      "127.0.0.1:0", "--data-dir", os.path.join(work, "d"), "-t", "1") as d:
                addr_d = node_addr(d)
                d.wait_for(r"blob %s in store \S+ does not match its CID" % name_d, timeout=5)
                out, took = client_run(omni, model, addr_d, work, "node D after fetching the shard again")
                if out != local:
                    fail("node D's run differs from the local run")
                ok("with --peers the tampered shard was fetched again and the node served a run (%.2f s), output "
                   "identical to local" % took)
            for n in (a, c):
                if n.vmhwm_mb() > 1024:
                    fail("a node peaked at %.0f MB" % n.vmhwm_mb())

        # 3. Chunks above what a peer serves in one read.
        rc, out, err, took = run(omni, "shard", model, "--store", os.path.join(work, "store.e"), "--chunk-kib", "8192")
        if rc == 0 or "4096 KiB in one read" not in err or "--chunk-kib 4096 or less" not in err:
            fail("shard --chunk-kib 8192: rc %d: %s" % (rc, err))
        ok("shard --chunk-kib 8192 refused: " + err.strip().splitlines()[-1])
        rc, out, err, took = run(omni, "shard", model, "--store", os.path.join(work, "store.e"), "--chunk-kib", "4096")
        if rc != 0:
            fail("shard --chunk-kib 4096: " + err)
        ok("shard --chunk-kib 4096 works")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()
