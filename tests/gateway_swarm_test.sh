#!/usr/bin/env bash
# `omni gateway` on a loopback swarm, with no model file: bootstrap + 3 nodes started from the
# model's CID (a: blocks 0:2 from a store holding the sharded model; b and c: 2:4, their shards from
# the providers in the DHT) and `omni gateway --bootstrap ... --hidden-format f32` without --model.
# The official `openai` npm client, streamed and whole, gets exactly the greedy text `omni run`
# writes on the local file; /v1/models lists the model with its CID; /v1/swarm shows the 3 nodes
# and full coverage; a second model that one node serves only in part (blocks 0:2 of 3) gets a 503
# naming block 2; killing the node of the chain during a stream is survived (the stream completes,
# its text still equal to omni run's). Usage: OMNI SHARED_DIR
set -euo pipefail
omni=$1 shared=$2
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/gateway_lib.sh"
require_node_modules
model=$shared/models/synth-llama-q8_0.gguf
gap_model=$shared/models/synth-qwen2-q8_0.gguf
tmp=$(mktemp -d)
source "$here/pipeline_lib.sh"
trap 'stop_gateway; cleanup_nodes; rm -rf "$tmp"' EXIT

start_bootstrap
boot=$BOOT_ADDR
cid=$("$omni" shard "$model" --store "$tmp/store.a" 2>"$tmp/shard.err") || fail "shard: $(cat "$tmp/shard.err")"
gap_cid=$("$omni" shard "$gap_model" --store "$tmp/store.q" 2>"$tmp/shard.err") || fail "shard: $(cat "$tmp/shard.err")"
swarm=(--bootstrap "$boot" --announce-interval 2 --record-ttl 15 --max-kv-mib 64)
declare -A pid_of addr_of
start_node a "$cid" 0:2 --store "$tmp/store.a" "${swarm[@]}"
addr_a=$NODE_ADDR
start_node b "$cid" 2:4 --store "$tmp/store.b" "${swarm[@]}"
pid_of[${NODE_ADDR#*@}]=$NODE_PID
addr_of[${NODE_ADDR#*@}]=$NODE_ADDR
start_node c "$cid" 2:4 --store "$tmp/store.c" "${swarm[@]}"
pid_of[${NODE_ADDR#*@}]=$NODE_PID
addr_of[${NODE_ADDR#*@}]=$NODE_ADDR
start_node q "$gap_cid" 0:2 --store "$tmp/store.q" "${swarm[@]}"

N=24
LONG=160
chat_prompt="Tell me about the ocean."
text_prompt="Once upon a time"
"$omni" run -m "$model" -p "$chat_prompt" --chat --chat-template chatml -n $N --temp 0 -t 1 >"$tmp/chat.txt" 2>/dev/null
"$omni" run -m "$model" -p "$text_prompt" -n $N --temp 0 -t 1 >"$tmp/text.txt" 2>/dev/null
"$omni" run -m "$model" -p "$text_prompt" -n $LONG --temp 0 -t 1 >"$tmp/long.txt" 2>/dev/null

# The gateway, with no model: it serves what the swarm covers.
GATEWAY_LOG=$tmp/gateway.log
"$omni" gateway --bootstrap "$boot" --hidden-format f32 --route direct --timeout 10 --listen 127.0.0.1:0 \
  --data-dir "$tmp/gw" -t 1 --web-dir "$WEB_DIR/dist" 2>"$GATEWAY_LOG" &
GATEWAY_PID=$!
port=
for _ in $(seq 1 600); do
  port="$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$GATEWAY_LOG")"
  [ -n "$port" ] && break
  kill -0 "$GATEWAY_PID" 2>/dev/null || fail "the gateway exited: $(cat "$GATEWAY_LOG")"
  sleep 0.05
done
[ -n "$port" ] || fail "the gateway did not start in 30 s: $(cat "$GATEWAY_LOG")"
url="http://127.0.0.1:$port"
# The gateway's own store holds only the client's shards: manifest, embeddings, head.
[ "$(ls "$tmp/gw/store/blobs" | wc -l)" = 3 ] || fail "the gateway holds $(ls "$tmp/gw/store/blobs" | wc -l) blobs"

# The whole directory: 3 live nodes of the model with full coverage, the other model with a gap.
for _ in $(seq 1 50); do
  curl -s "$url/v1/swarm" >"$tmp/swarm.json"
  python3 - "$tmp/swarm.json" <<'PY' && break
import json, sys
s = json.load(open(sys.argv[1]))
llama = [n for n in s["nodes"] if n["model"] == "synth-llama" and n["alive"]]
m = {x["name"]: x for x in s["models"]}
ok = len(llama) == 3 and m.get("synth-qwen2", {}).get("missing") == [2]
sys.exit(0 if ok else 1)
PY
  sleep 0.2
done
python3 - "$tmp/swarm.json" "$cid" "$gap_cid" <<'PY' || fail "/v1/swarm: $(cat "$tmp/swarm.json")"
import json, sys
s = json.load(open(sys.argv[1]))
cid, gap_cid = sys.argv[2], sys.argv[3]
llama = [n for n in s["nodes"] if n["model"] == "synth-llama"]
assert len(llama) == 3 and all(n["alive"] and n["route"] == "direct" for n in llama), llama
assert sorted(tuple(n["blocks"]) for n in llama) == [(0, 2), (2, 4), (2, 4)], llama
assert all(n["max_sessions"] > 0 for n in llama), llama
m = {x["name"]: x for x in s["models"]}
assert m["synth-llama"]["coverage"] == [1, 1, 2, 2] and m["synth-llama"]["missing"] == [], m
assert m["synth-llama"]["cid"] == cid, m
assert m["synth-qwen2"]["coverage"] == [1, 1, 0] and m["synth-qwen2"]["cid"] == gap_cid, m
print("ok   /v1/swarm: 3 live nodes of synth-llama, coverage", m["synth-llama"]["coverage"],
      "; synth-qwen2 missing", m["synth-qwen2"]["missing"])
PY

# The dashboard in chromium, where there is one (and the web UI is built).
chromium_bin="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
if [ -n "$chromium_bin" ] && [ -d "$WEB_DIR/node_modules/playwright-core" ] && [ -f "$WEB_DIR/dist/index.html" ]; then
  node "$here/gateway_swarm_browser.mjs" "$url" "$WEB_DIR" "$chromium_bin" "${OMNI_SCREENSHOT_DIR:-$tmp}/swarm-gateway.png" ||
    fail "the dashboard check failed"
else
  echo "note: no chromium, playwright-core or built web UI: the dashboard is not checked in a browser"
fi

# The model with a gap: 503 naming the missing block, before any session.
code=$(curl -s -o "$tmp/gap.json" -w '%{http_code}' "$url/v1/chat/completions" \
  -d '{"model":"synth-qwen2","messages":[{"role":"user","content":"hi"}],"max_tokens":4}')
[ "$code" = 503 ] || fail "the model with a gap got $code: $(cat "$tmp/gap.json")"
grep -q 'block 2 of its 3' "$tmp/gap.json" || fail "the 503 does not name block 2: $(cat "$tmp/gap.json")"
echo "ok   a model with a gap: 503 $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["error"]["message"])' "$tmp/gap.json")"

node "$here/gateway_swarm_test.mjs" "$url" "$tmp" "$WEB_DIR" "$chat_prompt" "$text_prompt" "$N" "$LONG" "$cid" &
client=$!
# Kill the node that serves blocks 2:4 in the long stream's chain once it has begun.
victim=
for _ in $(seq 1 600); do
  if [ -s "$tmp/long.started" ]; then
    victim=$(sed -n 's/.*route: .*\[2,4)@\([0-9.:]*\).*/\1/p' "$GATEWAY_LOG" | tail -1)
    break
  fi
  sleep 0.05
done
[ -n "$victim" ] || fail "no route through blocks 2:4 in the gateway's log: $(cat "$GATEWAY_LOG")"
kill -9 "${pid_of[$victim]}"
echo "killed the node at $victim during the stream"
wait "$client" || fail "the openai client checks failed; gateway log: $(tail -20 "$GATEWAY_LOG")"
grep -q "failover 1: recovered" "$GATEWAY_LOG" && echo "ok   $(grep -m1 'failover 1' "$GATEWAY_LOG" | sed 's/^omni gateway: //')"
stop_gateway

# --peers: the same model by CID on a fixed list of nodes (the two still alive), no directory.
survivor=
for a in "${!addr_of[@]}"; do [ "$a" != "$victim" ] && survivor=${addr_of[$a]}; done
GATEWAY_LOG=$tmp/gateway-peers.log
"$omni" gateway --peers "$addr_a,$survivor" --model "$cid" --hidden-format f32 --listen 127.0.0.1:0 \
  --data-dir "$tmp/gw-peers" -t 1 2>"$GATEWAY_LOG" &
GATEWAY_PID=$!
port=
for _ in $(seq 1 600); do
  port="$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$GATEWAY_LOG")"
  [ -n "$port" ] && break
  kill -0 "$GATEWAY_PID" 2>/dev/null || fail "the --peers gateway exited: $(cat "$GATEWAY_LOG")"
  sleep 0.05
done
[ -n "$port" ] || fail "the --peers gateway did not start: $(cat "$GATEWAY_LOG")"
code=$(curl -s -o "$tmp/peers.json" -w '%{http_code}' "http://127.0.0.1:$port/v1/completions" \
  -d "{\"model\":\"synth-llama\",\"prompt\":\"$text_prompt\",\"max_tokens\":$N,\"temperature\":0}")
[ "$code" = 200 ] || fail "--peers gateway: $code $(cat "$tmp/peers.json")"
python3 - "$tmp/peers.json" "$tmp/text.txt" <<'PY' || fail "--peers gateway: $(cat "$tmp/peers.json")"
import json, sys
got = json.load(open(sys.argv[1]))["choices"][0]["text"]
want = open(sys.argv[2]).read()[:-1]
assert got == want, (got, want)
PY
curl -s "http://127.0.0.1:$port/v1/swarm" >"$tmp/swarm-peers.json"
python3 - "$tmp/swarm-peers.json" <<'PY' || fail "--peers /v1/swarm: $(cat "$tmp/swarm-peers.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert len(s["nodes"]) == 2 and all(n["alive"] for n in s["nodes"]), s["nodes"]
assert s["models"][0]["coverage"] == [1, 1, 1, 1], s["models"]
PY
echo "ok   --peers: the same text on a fixed list of 2 nodes; /v1/swarm shows them and full coverage"
echo "PASS"
