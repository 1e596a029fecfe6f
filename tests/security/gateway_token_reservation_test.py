#!/usr/bin/env python3
"""--rate-tokens is a reservation, not an after-the-fact charge (issue 15, item 9) against
`omni gateway`. Usage: OMNI SHARED_DIR

Before, the tokens bucket was charged as tokens came out, so one request could take the context's
whole room (1500 tokens with --rate-tokens 100). Now a request reserves max_tokens (or, without
one, what its allowance holds) before it runs and gets back what it did not use:
  - max_tokens over a minute's allowance: 429 at once that says so, without Retry-After;
  - a burst of requests without max_tokens: together they generate no more than the allowance
    plus what refilled meanwhile, each capped (finish_reason "length"), the rest 429;
  - then a max_tokens that does not fit in what is left: 429 with Retry-After, and the unused
    part of a reservation comes back (a request that fits the computed balance is served);
  - /health is served meanwhile.
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_net_lib import Gateway, fail, get, model_id, ok, post_json, timed  # noqa: E402

OMNI, SHARED = sys.argv[1], sys.argv[2]
RATE = 100  # generated tokens per minute per client
BURST = 6

with Gateway(OMNI, SHARED, "--rate-tokens", str(RATE), "--ctx-size", "2048", "--max-sessions", "2") as gw:
    model = model_id(gw.port)
    started = time.monotonic()

    r = post_json(gw.port, "/v1/completions", {"model": model, "prompt": "hello", "max_tokens": 1500})
    err = r.json().get("error", {}) if r.status != 200 else {}
    if r.status != 429 or err.get("code") != "rate_limit_exceeded" or "retry-after" in r.headers:
        fail("max_tokens 1500 with --rate-tokens %d got %d %r" % (RATE, r.status, r.body[:300]))
    if "at most %d" % RATE not in err.get("message", ""):
        fail("the refusal does not say what fits: %r" % err)
    ok("max_tokens 1500 over --rate-tokens %d: 429 without Retry-After (%s)" % (RATE, err["message"]))

    results = [None] * BURST

    def one(i):
        results[i] = post_json(gw.port, "/v1/completions", {"model": model, "prompt": "hello %d" % i}, timeout=60)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(BURST)]
    for t in threads:
        t.start()
    h, htook = timed(get, gw.port, "/health")
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - started
    if h.status != 200 or htook > 3:
        fail("/health got %d in %.2f s during the burst" % (h.status, htook))
    used, served, refused = 0, 0, 0
    for r in results:
        if r is None:
            fail("a request of the burst got no answer")
        if r.status == 200:
            body = r.json()
            n = body["usage"]["completion_tokens"]
            used += n
            served += 1
            if n > RATE:
                fail("one request generated %d tokens with --rate-tokens %d" % (n, RATE))
        elif r.status == 429:
            refused += 1
            if "retry-after" not in r.headers:
                fail("a 429 of the burst has no Retry-After: %r" % r.headers)
        else:
            fail("a request of the burst got %d %r" % (r.status, r.body[:300]))
    allowed = RATE + elapsed * RATE / 60.0 + 1
    if used > allowed:
        fail("the burst generated %d tokens; the allowance was %.0f" % (used, allowed))
    if served == 0 or refused == 0:
        fail("a burst of %d without max_tokens: %d served, %d refused (expected some of each)" % (BURST, served, refused))
    ok("%d requests without max_tokens at once: %d served with %d tokens in all (allowance %.0f), %d got 429"
       % (BURST, served, used, allowed, refused))

    # What is left now, computed from what was used: a request past it is 429, one within it served.
    balance = RATE - used + (time.monotonic() - started) * RATE / 60.0
    if balance < 40:
        r = post_json(gw.port, "/v1/completions", {"model": model, "prompt": "hi", "max_tokens": 60})
        if r.status != 429 or int(r.headers.get("retry-after", "0")) < 1:
            fail("max_tokens 60 with about %.0f tokens left got %d %r" % (balance, r.status, r.body[:200]))
        ok("max_tokens 60 with about %.0f tokens left: 429, Retry-After %s s" % (balance, r.headers["retry-after"]))
    # The unused part comes back: a request without max_tokens reserves all that is left; once it
    # stops early (at a stop string), what it did not generate is available again at once.
    time.sleep(max(0.0, (40 - balance) * 60.0 / RATE) + 0.5)
    r = post_json(gw.port, "/v1/completions", {"model": model, "prompt": "hi", "stop": ["e", "a", "o", "i"]})
    if r.status != 200:
        fail("a request without max_tokens after refilling got %d %r" % (r.status, r.body[:200]))
    first_used = r.json()["usage"]["completion_tokens"]
    if first_used > 15:
        fail("the stop strings did not stop the request early (%d tokens)" % first_used)
    r = post_json(gw.port, "/v1/completions", {"model": model, "prompt": "hi", "max_tokens": 20})
    if r.status != 200:
        fail("after a request that reserved the whole allowance and used %d, max_tokens 20 got %d %r"
             % (first_used, r.status, r.body[:200]))
    ok("a request that reserved the whole allowance and used %d gave the rest back (max_tokens 20 served next)"
       % first_used)
