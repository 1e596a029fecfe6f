#!/usr/bin/env python3
"""Table of medians per server and level from run.sh's (or swarm.sh's) JSON lines, with the ratios
first server / each other, and each server's throughput over its own 1-client figure.

usage: summarize.py RUNS.jsonl [FIRST OTHER...]   (default: omni baseline llama)"""
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
levels = sorted({r["result"]["clients"] for r in rows})
names = sys.argv[2:] or ["omni", "baseline", "llama"]
first = names[0]
others = [s for s in names[1:] if any(r["server"] == s for r in rows)]
servers = [first] + others


def med(server, level, key):
    v = [r["result"][key] for r in rows if r["server"] == server and r["result"]["clients"] == level]
    return statistics.median(v) if v else float("nan")


head = "| clients |"
for s in servers:
    head += f" {s} tok/s | {s} TPOT p50 / p99 ms |"
for s in others:
    head += f" {first} / {s} tok/s | {first} / {s} p99 TPOT |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
for level in levels:
    line = f"| {level} |"
    for s in servers:
        line += f" {med(s, level, 'tok_s'):.2f} | {med(s, level, 'tpot_p50_ms'):.0f} / {med(s, level, 'tpot_p99_ms'):.0f} |"
    for s in others:
        line += f" {med(first, level, 'tok_s') / med(s, level, 'tok_s'):.2f} |"
        line += f" {med(first, level, 'tpot_p99_ms') / med(s, level, 'tpot_p99_ms'):.2f} |"
    print(line)
if 1 in levels:
    print()
    for s in servers:
        scale = ", ".join(f"{level}: {med(s, level, 'tok_s') / med(s, 1, 'tok_s'):.2f}x" for level in levels if level != 1)
        print(f"{s} tok/s over its 1-client tok/s: {scale}")
errors = sum(r["result"]["errors"] for r in rows)
reps = len({r["rep"] for r in rows})
print(f"\n{len(rows)} runs ({reps} per server and level, medians shown), {errors} failed requests; "
      f"load average during runs: {min(float(r['load']) for r in rows):.1f} .. {max(float(r['load']) for r in rows):.1f}")
