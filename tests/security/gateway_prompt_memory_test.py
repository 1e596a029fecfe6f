#!/usr/bin/env python3
"""Huge prompts cost bounded memory, and it is given back (issue 15, item 3). Usage: OMNI SHARED_DIR

Before, 8 concurrent 4 MB prompts took the gateway to a 1.8 GB peak and left ~400 MB held, and a
long-running gateway kept growing. Now a prompt that cannot fit the context by its size in bytes
is refused (400 context_length_exceeded) before it is tokenized, tokenizing stops once the context
is exceeded, and the memory of large requests goes back to the system.
  - 8 concurrent chat requests with a 4 MB message, then 8 completions with a 4 MB prompt, three
    rounds: every one 400 context_length_exceeded; /health served meanwhile (latency bound);
    VmHWM within a bound; resident memory back near its baseline after each round, and not growing
    from round to round.
  - A prompt under the byte bound but over the context (tokenized, then refused) is 400 too, and a
    small request is served.
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_net_lib import Gateway, fail, get, model_id, ok, post_json, timed  # noqa: E402

OMNI, SHARED = sys.argv[1], sys.argv[2]
CONCURRENT = 8
PROMPT_BYTES = 4_000_000           # under --max-body (4 MiB) with the JSON around it
PEAK_BOUND_MB = 300                # VmHWM, absolute; 8 bodies alone are 32 MB
GROWTH_BOUND_MB = 200              # VmHWM over the idle baseline
RETURNED_BOUND_MB = 48             # resident memory over the idle baseline once a round is over
ROUND_GROWTH_BOUND_MB = 16         # resident memory, last round over first
HEALTH_BOUND_S = 3.0


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def text_of(n):
    words = "the quick brown fox jumps over a lazy dog and keeps on running far away "
    return (words * (n // len(words) + 1))[:n]


with Gateway(OMNI, SHARED, "--ctx-size", "512") as gw:
    model = model_id(gw.port)
    big = text_of(PROMPT_BYTES)
    chat_body = json.dumps({"model": model, "messages": [{"role": "user", "content": big}], "max_tokens": 4}).encode()
    completion_body = json.dumps({"model": model, "prompt": big, "max_tokens": 4}).encode()

    r = post_json(gw.port, "/v1/completions", {"model": model, "prompt": "hello", "max_tokens": 2})
    if r.status != 200:
        fail("a small completion got %d %r" % (r.status, r.body[:200]))
    time.sleep(0.5)
    baseline_rss = rss_mb(gw.proc.pid)
    baseline_hwm = gw.vmhwm_mb()

    after_round = []
    worst_health = 0.0
    for round_no in range(3):
        for path, body in (("/v1/chat/completions", chat_body), ("/v1/completions", completion_body)):
            results = [None] * CONCURRENT

            def one(i):
                try:
                    results[i] = post_json(gw.port, path, body, timeout=60)
                except OSError as e:  # no answer in time: reported below
                    print("     request %d: %r" % (i, e))

            threads = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENT)]
            for t in threads:
                t.start()
            h, took = timed(get, gw.port, "/health")
            worst_health = max(worst_health, took)
            if h.status != 200 or took > HEALTH_BOUND_S:
                fail("/health got %d in %.2f s during the 4 MB prompts" % (h.status, took))
            for t in threads:
                t.join(timeout=60)
            for r in results:
                if r is None:
                    fail("a 4 MB prompt to %s got no answer in 60 s" % path)
                if r.status != 400 or r.json()["error"]["code"] != "context_length_exceeded":
                    fail("a 4 MB prompt to %s got %d %r" % (path, r.status, r.body[:300]))
        # Resident memory goes back near the baseline once the requests are answered (the answers
        # go out before the buffers are freed: wait for it to settle, at most 5 s).
        deadline = time.monotonic() + 5
        last = rss_mb(gw.proc.pid)
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = rss_mb(gw.proc.pid)
            if abs(now - last) < 1 and now - baseline_rss <= RETURNED_BOUND_MB:
                break
            last = now
        after_round.append(rss_mb(gw.proc.pid))
    peak = gw.vmhwm_mb()
    print("     VmHWM %.0f -> %.0f MB; VmRSS %.0f MB idle, %s after each round; /health worst %.2f s"
          % (baseline_hwm, peak, baseline_rss, ", ".join("%.0f" % x for x in after_round), worst_health))
    if peak > PEAK_BOUND_MB or peak - baseline_hwm > GROWTH_BOUND_MB:
        fail("VmHWM went from %.0f to %.0f MB (bounds: %d MB, +%d MB)" % (baseline_hwm, peak, PEAK_BOUND_MB, GROWTH_BOUND_MB))
    if after_round[-1] - baseline_rss > RETURNED_BOUND_MB:
        fail("resident memory stayed at %.0f MB after the prompts (idle: %.0f MB)" % (after_round[-1], baseline_rss))
    if after_round[-1] - after_round[0] > ROUND_GROWTH_BOUND_MB:
        fail("resident memory grew from round to round: %s MB" % after_round)
    ok("3 rounds of %d concurrent 4 MB chat and completion prompts: all 400 context_length_exceeded; VmHWM %.0f -> "
       "%.0f MB; resident %.0f MB idle, %.0f MB after the last round" % (CONCURRENT, baseline_hwm, peak, baseline_rss,
                                                                         after_round[-1]))

    # Under the byte bound but over a 512-token context: tokenized, then refused.
    r = post_json(gw.port, "/v1/chat/completions",
                  {"model": model, "messages": [{"role": "user", "content": text_of(5000)}], "max_tokens": 4})
    if r.status != 400 or r.json()["error"]["code"] != "context_length_exceeded":
        fail("a 5000-byte message with a 512-token context got %d %r" % (r.status, r.body[:300]))
    r = post_json(gw.port, "/v1/chat/completions",
                  {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2})
    if r.status != 200:
        fail("a small chat got %d %r" % (r.status, r.body[:200]))
    ok("a 5000-byte message over a 512-token context is 400 context_length_exceeded; a small chat is served")
