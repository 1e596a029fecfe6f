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
      Prints "median mean count p10 p90" in ms of the gaps between chunks, after dropping the first
      SKIP gaps (prompt processing and warm-up).
  measure.py compute ERR
      Prints "nodes head": the medians per generated token of the nodes' compute (summed over the
      hops) and of the client's head, from the summary line `omni run` ends with on stderr.
  measure.py model-shape MODEL OMNI
      Prints "n_layer n_embd" from `OMNI inspect --json`.
  measure.py report RESULTS
      Prints the results table (RESULTS: one "key value" per line, and one
      "run ROUTE K MEDIAN MEAN P10 P90 NODES HEAD" line per omni run, written by run.sh).
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
        print("nan nan 0 nan nan")
        return 1
    print(f"{statistics.median(deltas):.2f} {statistics.mean(deltas):.2f} {len(deltas)} "
          f"{percentile(deltas, 10):.2f} {percentile(deltas, 90):.2f}")
    return 0


def percentile(values, p):
    v = sorted(values)
    k = (len(v) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def compute(path):
    pattern = re.compile(r"per token: nodes ([0-9.]+) ms \(.*\), head ([0-9.]+) ms")
    for line in open(path, errors="replace"):
        m = pattern.search(line)
        if m:
            print(m.group(1), m.group(2))
            return 0
    print("nan nan")
    return 1


def model_shape(model, omni):
    out = subprocess.run([omni, "inspect", model, "--json", "--no-tensors"], check=True, capture_output=True, text=True)
    meta = {item["key"]: item["value"] for item in json.loads(out.stdout)["metadata"]}
    arch = meta["general.architecture"]
    print(meta[f"{arch}.block_count"], meta[f"{arch}.embedding_length"])
    return 0


def report(path):
    r, runs = {}, {}
    for line in open(path):
        parts = line.split()
        if parts and parts[0] == "run" and len(parts) == 9:
            route = parts[1]
            median, mean, p10, p90, nodes, head = map(float, parts[3:9])
            runs.setdefault(route, []).append(dict(median=median, mean=mean, p10=p10, p90=p90, nodes=nodes, head=head))
        elif len(parts) >= 2:
            r[parts[0]] = line.split(None, 1)[1].strip()

    def num(key):
        try:
            return float(r[key])
        except (KeyError, ValueError):
            return float("nan")

    rate = num("rate_mbit") * 1e6
    hidden = num("hidden_bytes")
    ser_ms = lambda count, nbytes: count * nbytes * 8 / rate * 1e3
    d = {k: num(k) for k in ("d_c1", "d_12", "d_23", "d_c2", "d_c3")}
    # Propagation and hidden-state transfers per token (the token id sent to node 1 is negligible):
    #   ring:   c->n1, n1->n2, n2->n3, n3->c; transfers n1->n2, n2->n3, n3->c
    #   chain:  there and back along c-n1-n2-n3; transfers n1->n2, n2->n3, n3->n2, n2->n1, n1->c
    #   direct: c-n1, c-n2, c-n3 there and back; transfers n1->c, c->n2, n2->c, c->n3, n3->c
    routes = {
        "ring": (d["d_c1"] + d["d_12"] + d["d_23"] + d["d_c3"], ser_ms(3, hidden)),
        "chain": (2 * (d["d_c1"] + d["d_12"] + d["d_23"]), ser_ms(5, hidden)),
        "direct": (2 * (d["d_c1"] + d["d_c2"] + d["d_c3"]), ser_ms(5, hidden)),
    }
    fmt = lambda x, spec: ("n/a" if x != x else format(x, spec))
    print(f"links: one-way client-n1 {d['d_c1']:g} ms, n1-n2 {d['d_12']:g} ms, n2-n3 {d['d_23']:g} ms, "
          f"client-n2 {d['d_c2']:g} ms, client-n3 {d['d_c3']:g} ms; {num('rate_mbit'):g} Mbit/s per direction; "
          f"model {r.get('model', '?')}, split {r.get('split', '?')} blocks, {r.get('threads', '?')} threads; "
          f"{r.get('tokens', '?')} tokens per run")
    print(f"compute per token on one machine (all blocks, median): omni {fmt(num('omni_local'), '.1f')} ms, "
          f"llama.cpp {fmt(num('llama_compute'), '.1f')} ms")
    print("limit = compute measured in the same run (nodes' computeMicros summed over the hops + the client's head)"
          " + propagation around the route + serialization of the hidden states at the link rate")
    llama = num("llama_rpc_median")
    header = (f"{'system':<6} {'route':<6} {'runs':>4}  {'ms/token: median (range)':<26} {'p10-p90':<13} "
              f"{'limit = nodes + head + prop + ser':<36} {'measured/limit (range)':<24} {'vs llama.cpp':>12}")
    print(header)
    print("-" * len(header))
    for route, (prop, ser) in routes.items():
        rs = runs.get(route, [])
        if not rs:
            continue
        medians = [x["median"] for x in rs]
        ratios = [x["median"] / (x["nodes"] + x["head"] + prop + ser) for x in rs]
        nodes = statistics.median(x["nodes"] for x in rs)
        head = statistics.median(x["head"] for x in rs)
        limit = nodes + head + prop + ser
        m = statistics.median(medians)
        spread = f"{statistics.median(x['p10'] for x in rs):.1f}-{statistics.median(x['p90'] for x in rs):.1f}"
        vs = m / llama if llama == llama else float("nan")
        print(f"{'omni':<6} {route:<6} {len(rs):>4}  {f'{m:.1f} ({min(medians):.1f}-{max(medians):.1f})':<26} "
              f"{spread:<13} {f'{limit:.1f} = {nodes:.1f} + {head:.1f} + {prop:.0f} + {ser:.1f}':<36} "
              f"{f'{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})':<24} {fmt(vs, '12.2f')}")
    if llama == llama:
        prop, ser = routes["direct"][0], ser_ms(5, hidden * 2)  # f32 activations through the client
        compute = num("llama_compute")
        limit = compute + prop + ser
        spread = "-"  # llama-cli's stdout chunks are not one per token: only the median means something
        print(f"{'llama':<6} {'rpc':<6} {1:>4}  {f'{llama:.1f}':<26} {spread:<13} "
              f"{f'{limit:.1f} = {compute:.1f} (local) + {prop:.0f} + {ser:.1f}':<36} {f'{llama / limit:.3f}':<24}")
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
    if cmd == "compute":
        return compute(*args)
    if cmd == "model-shape":
        return model_shape(*args)
    if cmd == "report":
        return report(*args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
