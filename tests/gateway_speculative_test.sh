#!/usr/bin/env bash
# `omni gateway --peers` (three `omni node`s on 127.0.0.1 serving an F16 model) decodes
# speculatively without changing greedy output: with --lookup off, with prompt lookup (--lookup on)
# and with the model's Q8_0 copy as the draft (--draft), /v1/completions at temperature 0 returns
# exactly the text of a local `omni run` that decodes one token per call. Each drafting gateway
# must have verified drafts (its log's "sequence closed: drafts ... over N rounds" line), so the
# comparison is not between two plain runs. A sampled request with the draft (the rejection rule)
# completes with max_tokens tokens. Usage: OMNI SHARED_DIR
set -euo pipefail
omni=$1 shared=$2
here="$(cd "$(dirname "$0")" && pwd)"
tmp=$(mktemp -d)
source "$here/pipeline_lib.sh"
source "$here/gateway_lib.sh"
trap 'stop_gateway; cleanup_nodes; rm -rf "$tmp"' EXIT

target="$shared/models/synth-llama-f16.gguf"
draft="$shared/models/synth-llama-q8_0.gguf"
[ -f "$target" ] && [ -f "$draft" ] || { echo "SKIP: shared models missing"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl is missing"; exit 77; }
prompt="one two three four five one two three four five one two three"
N=120  # the random-weight model's greedy text repeats a few tokens by then (lookup finds them)

"$omni" run -m "$target" -p "$prompt" -n $N --temp 0 -t 1 --lookup off >"$tmp/local.txt" 2>"$tmp/local.err" ||
  fail "local run: $(cat "$tmp/local.err")"

peers=()
i=0
for blocks in $(splits 4); do
  start_node "node-$i" "$target" "$blocks"
  peers+=("$NODE_ADDR")
  i=$((i + 1))
done
list=$(IFS=,; echo "${peers[*]}")

# complete TEMPERATURE OUT: a /v1/completions request's text into OUT, its usage into OUT.usage.
complete() {
  local body
  body=$(python3 -c 'import json, sys; print(json.dumps({"model": "synth-llama-f16", "prompt": sys.argv[1],
    "max_tokens": int(sys.argv[2]), "temperature": float(sys.argv[3]), "seed": 7}))' "$prompt" $N "$1")
  curl -s --max-time 120 "$GATEWAY_URL/v1/completions" -H 'Content-Type: application/json' -d "$body" >"$2.json" ||
    fail "request to $GATEWAY_URL failed"
  python3 - "$2.json" "$2" <<'PY' || fail "bad response: $(cat "$2.json")"
import json, sys
r = json.load(open(sys.argv[1]))
open(sys.argv[2], "w").write(r["choices"][0]["text"])
open(sys.argv[2] + ".usage", "w").write(str(r["usage"]["completion_tokens"]))
PY
}

for mode in plain lookup draft; do
  case $mode in
    plain) extra=(--lookup off) ;;
    lookup) extra=(--lookup on --draft-fixed) ;;
    draft) extra=(--draft "$draft" --draft-fixed) ;;
  esac
  start_gateway "$omni" "$target" --peers "$list" --data-dir "$tmp/gw-$mode" -t 1 "${extra[@]}"
  trap 'stop_gateway; cleanup_nodes; rm -rf "$tmp"' EXIT
  complete 0 "$tmp/$mode.txt"
  [ "$(cat "$tmp/$mode.txt")" = "$(cat "$tmp/local.txt")" ] ||
    fail "$mode: the gateway's text differs from omni run's:
gateway: $(cat "$tmp/$mode.txt")
omni run: $(cat "$tmp/local.txt")"
  if [ $mode = draft ]; then
    complete 0.8 "$tmp/sampled.txt"
    [ "$(cat "$tmp/sampled.txt.usage")" = $N ] || fail "sampled with the draft: $(cat "$tmp/sampled.txt.json")"
  fi
  stop_gateway
  summary=$(grep -o "sequence closed: drafts.*" "$GATEWAY_LOG" | head -1 || true)
  if [ $mode = plain ]; then
    [ -z "$summary" ] || fail "plain: the gateway drafted: $summary"
  else
    grep -q "sequence closed: drafts .* over [1-9][0-9]* rounds" "$GATEWAY_LOG" ||
      fail "$mode: no drafts were verified: $(tail -5 "$GATEWAY_LOG")"
  fi
  echo "ok   $mode: identical to omni run${summary:+; $summary}"
  rm -f "$GATEWAY_LOG"
done
echo "PASS"
