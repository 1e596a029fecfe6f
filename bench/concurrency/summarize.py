#!/usr/bin/env python3
"""Table of medians per server and level from run.sh's JSON lines, with the ratios omni / other."""
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
levels = sorted({r["result"]["clients"] for r in rows})
others = [s for s in ("baseline", "llama") if any(r["server"] == s for r in rows)]
servers = ["omni"] + others


def med(server, level, key):
    v = [r["result"][key] for r in rows if r["server"] == server and r["result"]["clients"] == level]
    return statistics.median(v) if v else float("nan")


head = "| clients |"
for s in servers:
    head += f" {s} tok/s | {s} TPOT p50 / p99 ms |"
for s in others:
    head += f" omni / {s} tok/s | omni / {s} p99 TPOT |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
for level in levels:
    line = f"| {level} |"
    for s in servers:
        line += f" {med(s, level, 'tok_s'):.2f} | {med(s, level, 'tpot_p50_ms'):.0f} / {med(s, level, 'tpot_p99_ms'):.0f} |"
    for s in others:
        line += f" {med('omni', level, 'tok_s') / med(s, level, 'tok_s'):.2f} |"
        line += f" {med('omni', level, 'tpot_p99_ms') / med(s, level, 'tpot_p99_ms'):.2f} |"
    print(line)
errors = sum(r["result"]["errors"] for r in rows)
reps = len({r["rep"] for r in rows})
print(f"\n{len(rows)} runs ({reps} per server and level, medians shown), {errors} failed requests; "
      f"load average during runs: {min(float(r['load']) for r in rows):.1f} .. {max(float(r['load']) for r in rows):.1f}")
