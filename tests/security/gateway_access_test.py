#!/usr/bin/env python3
"""Who may use `omni gateway`, and from where (issue 15, item 5). Usage: OMNI SHARED_DIR

Before, any web page the user visited could make a loopback gateway generate (no Origin check)
and read its answers through DNS rebinding (no Host check), and there were no API keys.
  - A loopback gateway by default: a rebound Host (attacker.example) is 403 on the API and the web
    UI; a foreign Origin is 403 without CORS headers, its preflight too; its own origin is served.
  - With keys (--api-key, --api-key-file, OMNI_API_KEY) and --allowed-origin: no key or a wrong
    one is 401 with WWW-Authenticate; each right key 200; /health open; an allowed origin's
    preflight is 204 with the CORS headers and its request carries Access-Control-Allow-Origin.
  - 300 refused requests (wrong keys, foreign origins, rebound hosts) from 30 threads: a legitimate
    client is served meanwhile within a latency bound, and memory (VmHWM) stays bounded.
"""
import os
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_net_lib import Gateway, exchange, fail, model_id, ok, timed  # noqa: E402

OMNI, SHARED = sys.argv[1], sys.argv[2]
GROWTH_BOUND_MB = 32
LATENCY_BOUND_S = 2.0


def request(port, method, path, host=None, headers=None, body=b""):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % (host or "127.0.0.1:%d" % port), "Connection: close"]
    lines += ["%s: %s" % kv for kv in (headers or {}).items()]
    if body or method == "POST":
        lines += ["Content-Type: application/json", "Content-Length: %d" % len(body)]
    return exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def expect(r, status, code=None, what=""):
    if r.status != status:
        fail("%s: got %d, not %d: %r" % (what, r.status, status, r.body[:200]))
    if code is not None and r.json()["error"]["code"] != code:
        fail("%s: error code %r, not %r" % (what, r.json()["error"]["code"], code))


def completion(model):
    return ('{"model": "%s", "prompt": "hi", "max_tokens": 2}' % model).encode()


with Gateway(OMNI, SHARED) as gw:
    port, model = gw.port, model_id(gw.port)
    for method, path, body in (("GET", "/v1/models", b""), ("GET", "/", b""), ("POST", "/v1/completions", completion(model))):
        r = request(port, method, path, host="attacker.example:%d" % port, body=body)
        expect(r, 403, "host_not_allowed", "a rebound Host on %s %s" % (method, path))
    expect(request(port, "GET", "/v1/models", host="localhost:%d" % port), 200, None, "Host localhost")
    ok("DNS rebinding: Host attacker.example is 403 on the API and the UI; localhost and 127.0.0.1 are served")

    for method, path, body in (("GET", "/v1/models", b""), ("POST", "/v1/completions", completion(model))):
        r = request(port, method, path, headers={"Origin": "https://evil.example"}, body=body)
        expect(r, 403, "origin_not_allowed", "a foreign Origin on %s %s" % (method, path))
        if any(h.startswith("access-control-") for h in r.headers):
            fail("a foreign origin got CORS headers: %r" % r.headers)
    r = request(port, "OPTIONS", "/v1/completions",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    expect(r, 403, "origin_not_allowed", "a foreign origin's preflight")
    if "access-control-allow-origin" in r.headers:
        fail("a foreign preflight got Access-Control-Allow-Origin")
    r = request(port, "POST", "/v1/completions", headers={"Origin": "http://127.0.0.1:%d" % port}, body=completion(model))
    expect(r, 200, None, "the gateway's own origin")
    ok("a foreign Origin is 403 without CORS headers (its preflight too); the gateway's own pages are served")

keys = tempfile.NamedTemporaryFile("w", prefix="omni-keys.", delete=False)
keys.write("# operators\nsk-from-file\n")
keys.close()
os.environ["OMNI_API_KEY"] = "sk-from-env"
APP = "http://app.example:3000"
try:
    with Gateway(OMNI, SHARED, "--api-key", "sk-from-flag", "--api-key-file", keys.name, "--allowed-origin", APP) as gw:
        port = gw.port
        r = request(port, "GET", "/v1/models")
        expect(r, 401, "invalid_api_key", "no key")
        if r.headers.get("www-authenticate", "").lower() != "bearer":
            fail("a 401 without WWW-Authenticate: Bearer: %r" % r.headers)
        for bad in ("Bearer sk-from-fil", "Bearer sk-from-file2", "sk-from-file", "Basic c2s6c2s="):
            expect(request(port, "GET", "/v1/models", headers={"Authorization": bad}), 401, "invalid_api_key", bad)
        expect(request(port, "GET", "/metrics"), 401, "invalid_api_key", "/metrics without a key")
        model = None
        for key in ("sk-from-flag", "sk-from-file", "sk-from-env"):
            r = request(port, "GET", "/v1/models", headers={"Authorization": "Bearer " + key})
            expect(r, 200, None, "key " + key)
            model = r.json()["data"][0]["id"]
        expect(request(port, "GET", "/health"), 200, None, "/health without a key")
        ok("no key or a wrong one: 401 with WWW-Authenticate; keys from the flag, the file and OMNI_API_KEY: 200; "
           "/health open")

        r = request(port, "OPTIONS", "/v1/chat/completions",
                    headers={"Origin": APP, "Access-Control-Request-Method": "POST",
                             "Access-Control-Request-Headers": "authorization, content-type"})
        if r.status != 204:
            fail("an allowed origin's preflight got %d %r" % (r.status, r.body[:200]))
        h = r.headers
        if (h.get("access-control-allow-origin") != APP or "POST" not in h.get("access-control-allow-methods", "")
                or "authorization" not in h.get("access-control-allow-headers", "").lower()
                or "origin" not in h.get("vary", "").lower()):
            fail("an allowed origin's preflight lacks CORS headers: %r" % h)
        r = request(port, "POST", "/v1/completions", headers={"Origin": APP, "Authorization": "Bearer sk-from-env"},
                    body=completion(model))
        expect(r, 200, None, "an allowed origin's request")
        if r.headers.get("access-control-allow-origin") != APP:
            fail("an allowed origin's answer lacks Access-Control-Allow-Origin: %r" % r.headers)
        ok("an allowed origin: preflight 204 with Allow-Origin/-Methods/-Headers and Vary; its request 200 with "
           "Allow-Origin")

        baseline = gw.vmhwm_mb()
        refused = [0]
        lock = threading.Lock()

        def hostile(i):
            for j in range(10):
                kind = (i + j) % 3
                if kind == 0:
                    r = request(port, "POST", "/v1/completions", headers={"Authorization": "Bearer wrong%d" % j},
                                body=completion(model))
                elif kind == 1:
                    r = request(port, "GET", "/v1/models", headers={"Origin": "https://evil%d.example" % j})
                else:
                    r = request(port, "GET", "/v1/models", host="rebound%d.example" % j)
                if r.status in (401, 403):
                    with lock:
                        refused[0] += 1

        threads = [threading.Thread(target=hostile, args=(i,)) for i in range(30)]
        for t in threads:
            t.start()
        worst = 0.0
        for _ in range(5):
            r, took = timed(request, port, "POST", "/v1/completions", headers={"Authorization": "Bearer sk-from-flag"},
                            body=completion(model))
            expect(r, 200, None, "the legitimate client during the flood")
            worst = max(worst, took)
        for t in threads:
            t.join(timeout=50)
        peak = gw.vmhwm_mb()
        if refused[0] != 300:
            fail("%d of 300 hostile requests were refused with 401/403" % refused[0])
        if worst > LATENCY_BOUND_S:
            fail("the legitimate client waited %.2f s during the flood (bound %.1f s)" % (worst, LATENCY_BOUND_S))
        if peak - baseline > GROWTH_BOUND_MB:
            fail("VmHWM went from %.0f to %.0f MB during the flood" % (baseline, peak))
        ok("300 hostile requests refused while the legitimate client was served (worst %.2f s); VmHWM %.0f -> %.0f MB"
           % (worst, baseline, peak))
finally:
    os.unlink(keys.name)
