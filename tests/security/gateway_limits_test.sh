#!/usr/bin/env bash
# `omni gateway` against hostile or careless clients on loopback (issue 15): a second gateway on a
# port in use is refused, numbers out of range are 400, a wrong method is 405 with Allow, a request
# head over the cap is 431. Needs only curl. Usage: OMNI SHARED_DIR
set -euo pipefail
OMNI="$1"; SHARED="$2"
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../gateway_lib.sh"
MODEL="$SHARED/models/synth-llama-q8_0.gguf"
WORK="$(mktemp -d)"; trap 'stop_gateway; rm -rf "$WORK"' EXIT

start_gateway "$OMNI" "$MODEL" --threads 1
ADDR="${GATEWAY_URL#http://}"

# A second gateway on the same address must fail at start, naming it, not share the port.
set +e
timeout 20 "$OMNI" gateway --model "$MODEL" --listen "$ADDR" --threads 1 >"$WORK/second.out" 2>"$WORK/second.err"
rc=$?
set -e
[ "$rc" = 1 ] || { echo "FAIL: a second gateway on $ADDR exited $rc, not 1"; cat "$WORK/second.err"; exit 1; }
grep -q "$ADDR" "$WORK/second.err" || { echo "FAIL: the error does not name $ADDR:"; cat "$WORK/second.err"; exit 1; }
grep -q "in use" "$WORK/second.err" || { echo "FAIL: the error does not say the address is in use:"; cat "$WORK/second.err"; exit 1; }
echo "ok   a second gateway on $ADDR is refused: $(head -1 "$WORK/second.err")"

# Numbers beyond a double's range: 400 naming the field, not 500.
for field in max_tokens temperature top_p seed; do
  code="$(curl -s -o "$WORK/body" -w '%{http_code}' "$GATEWAY_URL/v1/completions" \
    -d "{\"model\":\"m\",\"prompt\":\"hi\",\"$field\":1e400}")"
  [ "$code" = 400 ] || { echo "FAIL: $field 1e400 got $code: $(cat "$WORK/body")"; exit 1; }
  grep -q "\"param\":\"$field\"" "$WORK/body" || { echo "FAIL: $field 1e400: $(cat "$WORK/body")"; exit 1; }
done
echo "ok   numbers out of range are 400 naming the field"

# A known path with another method: 405 with Allow; an unknown path stays 404.
code="$(curl -s -D "$WORK/headers" -o /dev/null -w '%{http_code}' "$GATEWAY_URL/v1/chat/completions")"
[ "$code" = 405 ] || { echo "FAIL: GET /v1/chat/completions got $code, not 405"; exit 1; }
grep -qi '^Allow: POST' "$WORK/headers" || { echo "FAIL: 405 without Allow: POST"; cat "$WORK/headers"; exit 1; }
code="$(curl -s -D "$WORK/headers" -o /dev/null -w '%{http_code}' -d '{}' "$GATEWAY_URL/v1/models")"
[ "$code" = 405 ] || { echo "FAIL: POST /v1/models got $code, not 405"; exit 1; }
grep -qi '^Allow: GET, HEAD' "$WORK/headers" || { echo "FAIL: 405 without Allow: GET, HEAD"; cat "$WORK/headers"; exit 1; }
code="$(curl -s -o /dev/null -w '%{http_code}' -d '{}' "$GATEWAY_URL/v1/nothing")"
[ "$code" = 404 ] || { echo "FAIL: POST /v1/nothing got $code, not 404"; exit 1; }
echo "ok   a wrong method is 405 with Allow, an unknown path 404"

# 200 extra headers (over the cap of 100 lines): 431, and the gateway still serves.
headers=()
for i in $(seq 1 200); do headers+=(-H "X-Filler-$i: v"); done
code="$(curl -s -o "$WORK/body" -w '%{http_code}' "${headers[@]}" "$GATEWAY_URL/health")"
[ "$code" = 431 ] || { echo "FAIL: 200 headers got $code, not 431: $(cat "$WORK/body")"; exit 1; }
code="$(curl -s -o /dev/null -w '%{http_code}' "$GATEWAY_URL/health")"
[ "$code" = 200 ] || { echo "FAIL: /health after the 431 got $code"; exit 1; }
echo "ok   a request head over the cap is 431"
