#!/usr/bin/env python3
"""Concurrent streaming clients against an OpenAI-compatible /v1/completions endpoint.

usage: load.py URL MODEL CLIENTS REQUESTS MAX_TOKENS [PROMPT]

CLIENTS threads each send requests one after another ("stream": true) until REQUESTS have been sent
in all. Prints one JSON line: aggregate output tokens/s (all completion tokens over the wall time
from the first request to the last answer), and the p50/p99 over requests of the time per output
token (first token to last, over tokens - 1) and of the time to the first token. Tokens are the
server's usage.completion_tokens where it reports them (stream_options.include_usage), else the
number of content events. Python standard library only.
"""
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse


def one_request(host, port, model, prompt, max_tokens):
    conn = http.client.HTTPConnection(host, port, timeout=600)
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}})
    start = time.monotonic()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    events, usage, first, last = 0, None, None, None
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        msg = json.loads(data)
        if msg.get("usage"):
            usage = msg["usage"].get("completion_tokens")
        for choice in msg.get("choices") or []:
            if choice.get("text"):
                now = time.monotonic()
                events += 1
                first = first if first is not None else now
                last = now
    conn.close()
    tokens = usage if usage else events
    return {"start": start, "first": first, "last": last, "tokens": tokens}


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main():
    url, model, clients, requests, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(
        sys.argv[5])
    prompt = sys.argv[6] if len(sys.argv) > 6 else "Once upon a time, in a land far away, there lived"
    u = urllib.parse.urlparse(url)
    results, errors = [], []
    lock = threading.Lock()
    sent = [0]

    def client(index):
        while True:
            with lock:
                if sent[0] >= requests:
                    return
                sent[0] += 1
                n = sent[0]
            try:
                # Each request its own prompt: no server may answer from a cache of another's.
                r = one_request(u.hostname, u.port, model, f"{prompt} {n}", max_tokens)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001 - reported, counted
                with lock:
                    errors.append(str(e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    tokens = sum(r["tokens"] for r in results)
    tpot = [(r["last"] - r["first"]) / (r["tokens"] - 1) for r in results if r["tokens"] > 1 and r["first"]]
    ttft = [r["first"] - r["start"] for r in results if r["first"]]
    print(json.dumps({
        "clients": clients, "requests": len(results), "errors": len(errors), "tokens": tokens,
        "wall_s": round(wall, 3), "tok_s": round(tokens / wall, 3),
        "tpot_p50_ms": round(1000 * percentile(tpot, 50), 2), "tpot_p99_ms": round(1000 * percentile(tpot, 99), 2),
        "ttft_p50_ms": round(1000 * percentile(ttft, 50), 1), "ttft_p99_ms": round(1000 * percentile(ttft, 99), 1),
        "first_error": errors[0] if errors else None,
    }))


if __name__ == "__main__":
    main()
