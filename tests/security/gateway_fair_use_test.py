#!/usr/bin/env python3
"""Fair use in `omni gateway` (issue 16 item 4): keys bound to a node (--api-key KEY=NODEID) and
what a client that forges or guesses one gets. Usage: OMNI SHARED_DIR

  - Node keys alone leave the gateway open: an anonymous request is served (the free tier), and so
    is a request with the node's key.
  - A forged key (a near miss of the node's key, the whole KEY=NODEID entry, another peer id's
    binding) is 401 invalid_api_key, never served as anonymous.
  - A request rate limit (--rate-requests 20): the node's key, which has contributed nothing
    to this gateway (a local model: no swarm work), is the free tier like anyone, charged to its
    address, and over the limit gets 429.
  - 300 forged-key requests from 30 threads: all refused 401 while an anonymous client is served
    within a latency bound, and the gateway's VmHWM stays bounded.
"""
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_net_lib import Gateway, exchange, fail, model_id, ok, timed  # noqa: E402

OMNI, SHARED = sys.argv[1], sys.argv[2]
GROWTH_BOUND_MB = 32
LATENCY_BOUND_S = 2.0
# Any 55-character base32 text starting "ci" is a peer id's form (net/peer_id.h).
NODE = "ci" + "a" * 53
OTHER = "ci" + "b" * 53
KEY = "node-key-1"


def request(port, method, path, headers=None, body=b"", source="127.0.0.1"):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1:%d" % port, "Connection: close"]
    lines += ["%s: %s" % kv for kv in (headers or {}).items()]
    if body or method == "POST":
        lines += ["Content-Type: application/json", "Content-Length: %d" % len(body)]
    return exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body, source=source)


def expect(r, status, code=None, what=""):
    if r.status != status:
        fail("%s: got %d, not %d: %r" % (what, r.status, status, r.body[:200]))
    if code is not None and r.json()["error"]["code"] != code:
        fail("%s: error code %r, not %r" % (what, r.json()["error"]["code"], code))


def completion(model):
    return ('{"model": "%s", "prompt": "hi", "max_tokens": 2}' % model).encode()


with Gateway(OMNI, SHARED, "--api-key", KEY + "=" + NODE, "--rate-requests", "20") as gw:
    port = gw.port
    model = model_id(port)
    expect(request(port, "POST", "/v1/completions", body=completion(model)), 200, None, "anonymous")
    expect(request(port, "POST", "/v1/completions", headers={"Authorization": "Bearer " + KEY}, body=completion(model)),
           200, None, "the node's key")
    ok("node keys alone: an anonymous request and the node's key are both served")

    for bad in ("Bearer " + KEY + "x", "Bearer " + KEY + "=" + NODE, "Bearer node-key-", "Bearer " + NODE):
        r = request(port, "POST", "/v1/completions", headers={"Authorization": bad}, body=completion(model))
        expect(r, 401, "invalid_api_key", "forged key %r" % bad)
    ok("forged node keys are 401 invalid_api_key, not the free tier")

    # The rate: 20 a minute per client; the two above and the 4 forged ones (refused before the
    # limiter) leave 18 for this address, node key or not.
    statuses = [request(port, "POST", "/v1/completions", headers={"Authorization": "Bearer " + KEY},
                        body=completion(model)).status for _ in range(25)]
    if statuses.count(429) == 0 or statuses[0] != 200:
        fail("the node key without contribution was not limited like the free tier: %r" % statuses)
    served_node = statuses.count(200)
    r = request(port, "POST", "/v1/completions", body=completion(model), source="127.0.0.2")
    expect(r, 200, None, "another address, anonymous, while the first is limited")
    ok("a node key with no contribution is the free tier: %d served then 429; another address still served"
       % served_node)

    baseline = gw.vmhwm_mb()
    refused = [0]
    lock = threading.Lock()

    def hostile(i):
        for j in range(10):
            forged = "Bearer %s%d" % (KEY, i * 10 + j) if j % 2 else "Bearer k%d=%s" % (j, OTHER)
            r = request(port, "POST", "/v1/completions", headers={"Authorization": forged}, body=completion(model))
            if r.status == 401:
                with lock:
                    refused[0] += 1

    threads = [threading.Thread(target=hostile, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    worst = 0.0
    for k in range(5):
        r, took = timed(request, port, "POST", "/v1/completions", body=completion(model), source="127.0.0.3")
        expect(r, 200, None, "the legitimate client during the flood")
        worst = max(worst, took)
    for t in threads:
        t.join(timeout=50)
    peak = gw.vmhwm_mb()
    if refused[0] != 300:
        fail("%d of 300 forged-key requests were refused with 401" % refused[0])
    if worst > LATENCY_BOUND_S:
        fail("the legitimate client waited %.2f s during the flood (bound %.1f s)" % (worst, LATENCY_BOUND_S))
    if peak - baseline > GROWTH_BOUND_MB:
        fail("VmHWM went from %.0f to %.0f MB during the flood" % (baseline, peak))
    ok("300 forged-key requests refused 401 while an anonymous client was served (worst %.2f s); VmHWM %.0f -> %.0f MB"
       % (worst, baseline, peak))
