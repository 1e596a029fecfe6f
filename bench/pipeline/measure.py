#!/usr/bin/env python3
"""Helpers for bench/pipeline/run.sh (standard library only).

  measure.py wait-line FILE REGEX TIMEOUT_S
      Waits until a line of FILE matches REGEX; prints group 1 (or the whole match). Exit 1 on timeout.
  measure.py stamp --times OUT [--trigger REGEX --then CMD] -- COMMAND...
      Runs COMMAND, copying its stdout and stderr to ours while writing to OUT the arrival time (s)
      and size of every stdout chunk, one "t n" per line: generated tokens are streamed one write
      each, so the gaps between chunks are the per-token latencies. When a line of COMMAND's
      output (stdout or stderr) first matches REGEX, runs CMD with sh (used to switch the link
      emulators' shaping on once the weights are uploaded); OUT then starts at that moment.
  measure.py gaps TIMES SKIP
      Prints "median mean count" in ms of the gaps between chunks, after dropping the first SKIP
      gaps (prompt processing and warm-up).
  measure.py model-shape MODEL OMNI
      Prints "n_layer n_embd" from `OMNI inspect --json`.
  measure.py report RESULTS
      Prints the results table (RESULTS: one "key value" per line, written by run.sh).
"""
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time


def wait_line(path, pattern, timeout):
    deadline = time.monotonic() + float(timeout)
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    m = regex.search(line)
                    if m:
                        print(m.group(1) if m.groups() else m.group(0))
                        return 0
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    print(f"measure.py: no line matching {pattern!r} in {path} after {timeout} s", file=sys.stderr)
    return 1


def stamp(args):
    times_path, trigger, then = None, None, None
    while args and args[0] != "--":
        flag, value, args = args[0], args[1], args[2:]
        if flag == "--times":
            times_path = value
        elif flag == "--trigger":
            trigger = re.compile(value)
        elif flag == "--then":
            then = value
        else:
            raise SystemExit(f"measure.py stamp: unknown flag {flag}")
    command = args[1:]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    lock = threading.Lock()
    state = {"fired": trigger is None, "stamps": []}

    def check_trigger(text):
        with lock:
            if state["fired"] or not trigger.search(text):
                return
            state["fired"] = True
            state["stamps"].clear()
        subprocess.run(then, shell=True, check=False)

    def pump_stderr():
        pending = b""
        for chunk in iter(lambda: os.read(proc.stderr.fileno(), 65536), b""):
            sys.stderr.buffer.write(chunk)
            sys.stderr.buffer.flush()
            if trigger is not None and not state["fired"]:
                pending = (pending + chunk)[-4096:]
                check_trigger(pending.decode(errors="replace"))

    err_thread = threading.Thread(target=pump_stderr, daemon=True)
    err_thread.start()
    pending = b""
    while True:
        chunk = os.read(proc.stdout.fileno(), 65536)
        now = time.monotonic()
        if not chunk:
            break
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        if trigger is not None and not state["fired"]:
            pending = (pending + chunk)[-4096:]
            check_trigger(pending.decode(errors="replace"))
        with lock:
            if state["fired"]:
                state["stamps"].append((now, len(chunk)))
    rc = proc.wait()
    err_thread.join()
    with open(times_path, "w") as f:
        for t, n in state["stamps"]:
            f.write(f"{t:.6f} {n}\n")
    return rc


def gaps(path, skip):
    times = [float(line.split()[0]) for line in open(path) if line.strip()]
    deltas = [(b - a) * 1e3 for a, b in zip(times, times[1:])][int(skip):]
    if not deltas:
        print("nan nan 0")
        return 1
    print(f"{statistics.median(deltas):.2f} {statistics.mean(deltas):.2f} {len(deltas)}")
    return 0


def model_shape(model, omni):
    out = subprocess.run([omni, "inspect", model, "--json", "--no-tensors"], check=True, capture_output=True, text=True)
    meta = {item["key"]: item["value"] for item in json.loads(out.stdout)["metadata"]}
    arch = meta["general.architecture"]
    print(meta[f"{arch}.block_count"], meta[f"{arch}.embedding_length"])
    return 0


def report(path):
    r = {}
    for line in open(path):
        parts = line.split(None, 1)
        if len(parts) == 2:
            r[parts[0]] = parts[1].strip()

    def num(key):
        try:
            return float(r[key])
        except (KeyError, ValueError):
            return float("nan")

    rate = num("rate_mbit") * 1e6
    hidden = num("hidden_bytes")
    ser_ms = lambda count, nbytes: count * nbytes * 8 / rate * 1e3
    d = {k: num(k) for k in ("d_c1", "d_12", "d_23", "d_c2", "d_c3")}
    prop_chain = 2 * (d["d_c1"] + d["d_12"] + d["d_23"])
    prop_direct = 2 * (d["d_c1"] + d["d_c2"] + d["d_c3"])
    # Five hidden-state transfers per token either way: chain n1→n2→n3 and back n3→n2→n1→client;
    # direct n1→c, c→n2, n2→c, c→n3, n3→c. The token id sent to node 1 is negligible.
    rows = [
        ("omni", "chain", "omni_chain", "omni_compute", prop_chain, ser_ms(5, hidden)),
        ("omni", "direct", "omni_direct", "omni_compute", prop_direct, ser_ms(5, hidden)),
        # llama.cpp RPC moves f32 activations (4 bytes per value) through the client, like direct.
        ("llama.cpp RPC", "star (direct)", "llama_rpc", "llama_compute", prop_direct, ser_ms(5, hidden * 2)),
    ]
    print(f"links: one-way client-n1 {d['d_c1']:g} ms, n1-n2 {d['d_12']:g} ms, n2-n3 {d['d_23']:g} ms, "
          f"client-n2 {d['d_c2']:g} ms, client-n3 {d['d_c3']:g} ms; {num('rate_mbit'):g} Mbit/s per direction; "
          f"split {r.get('split', '?')} blocks; {r.get('tokens', '?')} tokens")
    print(f"compute per token on one machine (median): omni {num('omni_compute'):.1f} ms "
          f"(before {num('omni_compute_before'):.1f}, after {num('omni_compute_after'):.1f}), llama.cpp {num('llama_compute'):.1f} ms")
    header = f"{'system':<15} {'route':<14} {'median ms/tok':>13} {'mean':>8} {'limit':>8} {'= compute + prop + ser':>24} {'lat/limit':>9} {'vs llama.cpp':>12}"
    print(header)
    print("-" * len(header))
    llama = num("llama_rpc_median")
    for system, route, key, compute_key, prop, ser in rows:
        median, mean, compute = num(key + "_median"), num(key + "_mean"), num(compute_key)
        limit = compute + prop + ser
        parts = f"{compute:.1f} + {prop:.0f} + {ser:.1f}"
        ratio = median / limit if limit == limit else float("nan")
        vs = median / llama if llama == llama and key != "llama_rpc" else float("nan")
        fmt = lambda x, spec: ("n/a" if x != x else format(x, spec))
        print(f"{system:<15} {route:<14} {fmt(median, '13.1f')} {fmt(mean, '8.1f')} {fmt(limit, '8.1f')} {parts:>24} "
              f"{fmt(ratio, '9.2f')} {fmt(vs, '12.2f')}")
    return 0


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "wait-line":
        return wait_line(*args)
    if cmd == "stamp":
        return stamp(args)
    if cmd == "gaps":
        return gaps(*args)
    if cmd == "model-shape":
        return model_shape(*args)
    if cmd == "report":
        return report(*args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
