#!/usr/bin/env bash
# The swarm on 127.0.0.1: a bootstrap DHT node and 6 `omni node`s with no --blocks (each picks its
# blocks from the directory, at most 2 of the model's blocks each), then `omni run --bootstrap`
# with no --peers, compared with a local `omni run` (F32 hidden states: byte-identical output).
# Then `omni swarm status --json`, and a node of the running chain killed mid-generation: the run
# must fail over and still print exactly the local output.
set -euo pipefail
omni=$1 shared=$2
model=$shared/models/synth-llama-q8_0.gguf
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
trap 'cleanup_nodes; rm -rf "$tmp"' EXIT

start_bootstrap
boot=$BOOT_ADDR

n_layer=$("$omni" inspect "$model" --no-tensors | awk '$2 ~ /\.block_count$/ {print $4}')
declare -A addr_of
for i in 1 2 3 4 5 6; do
  "$omni" node -m "$model" --listen 127.0.0.1:0 --data-dir "$tmp/n$i" -t 1 --bootstrap "$boot" --max-blocks 2 \
    --max-kv-mib 64 --announce-interval 5 --record-ttl 15 >"$tmp/n$i.log" 2>&1 &
  pid=$!
  node_pids+=("$pid")
  line=
  for _ in $(seq 1 200); do
    line=$(grep -m1 '^omni node: peer .* listening on' "$tmp/n$i.log" || true)
    [ -n "$line" ] && break
    kill -0 "$pid" 2>/dev/null || fail "node $i exited: $(cat "$tmp/n$i.log")"
    sleep 0.05
  done
  [ -n "$line" ] || fail "node $i did not start: $(cat "$tmp/n$i.log")"
  blocks=${line##*blocks }
  address=$(sed -n 's/.* listening on \([^,]*\),.*/\1/p' <<<"$line")
  addr_of[$address]=$pid
  echo "node $i: blocks $blocks ($address)"
  echo "$blocks" >>"$tmp/blocks"
done
# Every block is served, by the nodes' own choice (computed here from what they print).
python3 - "$n_layer" "$tmp/blocks" <<'PY' || fail "the nodes do not cover all $n_layer blocks: $(tr '\n' ' ' <"$tmp/blocks")"
import sys
n = int(sys.argv[1]); cover = [0] * n
for line in open(sys.argv[2]):
    a, b = map(int, line.split(":"))
    for i in range(a, b): cover[i] += 1
print("replicas per block:", cover)
sys.exit(0 if min(cover) > 0 else 1)
PY

"$omni" swarm status --bootstrap "$boot" --json >"$tmp/status.json" 2>"$tmp/status.err" || fail "swarm status: $(cat "$tmp/status.err")"
python3 - "$tmp/status.json" <<'PY' || fail "swarm status: $(cat "$tmp/status.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert len(s["nodes"]) == 6, len(s["nodes"])
assert len(s["models"]) == 1 and s["models"][0]["complete"], s["models"]
print("swarm status: 6 nodes, coverage", s["models"][0]["replicas"])
PY

prompt="Once upon a time, in a small village"
args=(-p "$prompt" -n 24 --temp 0 --json --top-logprobs 3 -t 1)
"$omni" run -m "$model" "${args[@]}" >"$tmp/local.json" 2>"$tmp/local.err" || fail "local: $(cat "$tmp/local.err")"
"$omni" run -m "$model" "${args[@]}" --bootstrap "$boot" --hidden-format f32 --data-dir "$tmp/client" \
  >"$tmp/swarm.json" 2>"$tmp/swarm.err" || fail "swarm run: $(cat "$tmp/swarm.err")"
cmp -s "$tmp/local.json" "$tmp/swarm.json" ||
  fail "swarm run differs from the local run: $(compare_runs "$tmp/local.json" "$tmp/swarm.json")"
echo "swarm run: $(grep -m1 'route:' "$tmp/swarm.err" | sed 's/^omni run: //'); output identical to local"

# Failover: kill a node of the chain while the run generates (direct route, so every hop is called
# from the client and the generation is long enough to be caught in the middle).
long=(-p "$prompt" -n 400 --ignore-eos --temp 0 --json -t 1)
"$omni" run -m "$model" "${long[@]}" >"$tmp/local-long.json" 2>/dev/null || fail "local long run"
: >"$tmp/swarm-long.err"; : >"$tmp/swarm-long.json"  # read below before the run may have opened them
"$omni" run -m "$model" "${long[@]}" --bootstrap "$boot" --hidden-format f32 --route direct --timeout 10 \
  --data-dir "$tmp/client" >"$tmp/swarm-long.json" 2>"$tmp/swarm-long.err" &
run_pid=$!
victim=
for _ in $(seq 1 200); do
  victim=$(sed -n 's/.*route: \[[0-9]*,[0-9]*)@\([^ ]*\).*/\1/p' "$tmp/swarm-long.err" | head -1)
  [ -n "$victim" ] && [ "$(wc -l <"$tmp/swarm-long.json")" -ge 20 ] && break
  sleep 0.02
done
[ -n "$victim" ] || fail "no route line: $(cat "$tmp/swarm-long.err")"
at=$(wc -l <"$tmp/swarm-long.json")
kill -9 "${addr_of[$victim]}"
wait "$run_pid" || fail "the run did not survive the loss of $victim: $(tail -5 "$tmp/swarm-long.err")"
cmp -s "$tmp/local-long.json" "$tmp/swarm-long.json" ||
  fail "after failover the output differs: $(compare_runs "$tmp/local-long.json" "$tmp/swarm-long.json")"
if grep -q "failover 1: recovered" "$tmp/swarm-long.err"; then
  echo "failover: killed $victim after $at of 400 tokens; $(grep -m1 'failover 1' "$tmp/swarm-long.err" | sed 's/^omni run: //'); output identical"
else
  echo "note: the run finished before the kill took effect (no failover exercised)"
fi
echo "PASS"
