#!/usr/bin/env python3
"""Hidden states past F16's range (issue 15, item 16) through `omni node` on loopback.
Usage: OMNI SHARED_DIR

A copy of the small test model whose first FFN norm weights are 300 (the file's are ~1) drives the
residual stream past 65504 within the first block. Before, a session in the f16 hidden-state format
sent those values on as infinity, and the client printed garbage with exit 0. Now the node refuses
to encode them: the client fails with an error that names f16's range and the f32 format; the same
node serves the same model in f32 (identical text to a local run), and the untouched model in f16,
meanwhile and after; its memory stays bounded.
"""
import json
import os
import shutil
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_net_lib import Node, Workdir, fail, model_path, ok, run_client  # noqa: E402

OMNI, SHARED = sys.argv[1], sys.argv[2]
PROMPT = "Once upon a time"


def loud_copy(source, target):
    """`source` with blk.0.ffn_norm.weight (F32) set to 300 everywhere, found through `omni inspect`."""
    info = json.loads(subprocess.check_output([OMNI, "inspect", source, "--json"]))
    tensor = next(t for t in info["tensors"] if t["name"] == "blk.0.ffn_norm.weight")
    if tensor["type"] != "f32":
        fail("the test model's norm is %s, not f32" % tensor["type"])
    shutil.copyfile(source, target)
    n = tensor["shape"][0]
    with open(target, "r+b") as f:
        f.seek(info["data_offset"] + tensor["offset"])
        original = struct.unpack("<%df" % n, f.read(4 * n))
        if not all(0.5 < abs(v) < 2.0 for v in original):
            fail("blk.0.ffn_norm.weight is not where `omni inspect` says: %r" % (original[:4],))
        f.seek(info["data_offset"] + tensor["offset"])
        f.write(struct.pack("<%df" % n, *([300.0] * n)))


def run(model, peers, fmt, workdir, name):
    return subprocess.run([OMNI, "run", "-m", model, "-p", PROMPT, "-n", "6", "--temp", "0", "--ignore-eos", "-t", "1",
                           "--hidden-format", fmt, "--data-dir", os.path.join(workdir, name),
                           *(["--peers", peers] if peers else [])],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)


with Workdir() as work:
    loud = os.path.join(work, "loud.gguf")
    loud_copy(model_path(SHARED), loud)
    local = run(loud, None, "f32", work, "local")
    if local.returncode != 0:
        fail("the loud model does not run locally: " + local.stderr.decode(errors="replace")[-400:])

    with Node(OMNI, SHARED, work, name="loud", model=loud) as node, Node(OMNI, SHARED, work, name="plain") as plain:
        refused = run(loud, node.addr, "f16", work, "f16-client")
        err = refused.stderr.decode(errors="replace")
        if refused.returncode == 0:
            fail("an f16 session through overflowing hidden states exited 0: " +
                 refused.stdout.decode(errors="replace")[-200:])
        if "beyond f16's range" not in err or "f32" not in err:
            fail("the error does not name f16's range and the f32 format: " + err[-500:])
        ok("the f16 session is refused: " + err.strip().splitlines()[-1][-160:])

        served = run(loud, node.addr, "f32", work, "f32-client")
        if served.returncode != 0:
            fail("the node did not serve the same model in f32 after the refusal: " +
                 served.stderr.decode(errors="replace")[-400:])
        if served.stdout != local.stdout:
            fail("f32 through the node differs from the local run: %r vs %r" % (served.stdout, local.stdout))
        ok("the node then serves the same model in f32, text identical to the local run")
        took = run_client(OMNI, SHARED, work, plain.addr, 10.0, "the untouched model in f16",
                          extra=("--hidden-format", "f16"))
        ok("a legitimate f16 client of the untouched model is served in %.2f s" % took)
        if not node.alive():
            fail("the node died")
        if node.vmhwm_mb() > 200:
            fail("peak memory %.0f MB" % node.vmhwm_mb())
print("PASS")
