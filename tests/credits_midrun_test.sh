#!/usr/bin/env bash
# Credits when nodes die mid-run (issue 16's done-when, "credits in the ledger match the work done
# within 1% after a run with node restarts"): a swarm of 4 nodes on 127.0.0.1, two replicas of each
# half of the model (0:2, 2:4), serves two long greedy generations. While each runs, the node of its
# route serving one half (2:4 in the first, 0:2 in the second) is killed with SIGKILL and started
# again on the same data directory; the client's failover re-routes to the other replica and replays
# the session there. The clients pay a receipt every 2 tokens per node (--receipt-every 2).
# Afterwards (every node killed with SIGKILL, so only what was committed counts) each node's ledger
# (`omni credits --json`) must hold at least the work its clients saw acknowledged and at most the
# work they received from it (a receipt committed just before the kill may not have been
# acknowledged), and the ledgers together must equal, within 1%, the work the clients counted
# (their per-node tallies, dropped pipelines included); and that work must be at least what the
# runs need from first principles (P + G - 1 positions through each of the 4 blocks; replays add).
set -euo pipefail
omni=$1 shared=$2
model=$shared/models/synth-llama-q8_0.gguf
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
trap 'cleanup_nodes; rm -rf "$tmp"' EXIT

start_bootstrap
boot=$BOOT_ADDR
node_args=(--bootstrap "$boot" --announce-interval 1 --record-ttl 30 --max-receipts-per-minute 1000000)
declare -A pid_of blocks_of id_of addr_of
start() {  # start NAME BLOCKS
  start_node "$1" "$model" "$2" "${node_args[@]}"
  pid_of[$1]=$NODE_PID
  blocks_of[$1]=$2
  id_of[$1]=${NODE_ADDR%@*}
  addr_of[$1]=${NODE_ADDR#*@}
}
start a 0:2
start a2 0:2
start b 2:4
start b2 2:4
# Let every record reach the directory before the first client reads it.
sleep 2

positions=0
: >"$tmp/tallies"
# run NAME TOKENS PROMPT HALF: a generation in the background; once it has printed some text, the
# node of its route serving HALF ("0" or "2", the first block) is killed and restarted.
run_with_kill() {
  local name=$1 n=$2 prompt=$3 half=$4
  "$omni" run -m "$model" -p "$prompt" -n "$n" --temp 0 --ignore-eos -t 1 --route ring --receipt-every 2 \
    --bootstrap "$boot" --data-dir "$tmp/client" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  local client=$!
  for _ in $(seq 1 600); do
    [ "$(wc -c <"$tmp/$name.out")" -ge 120 ] && break
    kill -0 "$client" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$client" 2>/dev/null || fail "run $name ended before the kill: $(cat "$tmp/$name.err")"
  local route victim=
  route=$(grep '^omni run: route:' "$tmp/$name.err" | tail -1)
  for node in "${!addr_of[@]}"; do
    if [ "${blocks_of[$node]%%:*}" = "$half" ] && [[ "$route" == *"@${addr_of[$node]}"* ]]; then victim=$node; fi
  done
  [ -n "$victim" ] || fail "run $name: no node of half $half in its route: $route"
  kill -9 "${pid_of[$victim]}"; wait "${pid_of[$victim]}" 2>/dev/null || true
  echo "run $name: killed $victim (blocks ${blocks_of[$victim]}) mid-run after $(wc -c <"$tmp/$name.out") bytes"
  start "$victim" "${blocks_of[$victim]}"
  wait "$client" || fail "run $name failed: $(cat "$tmp/$name.err")"
  grep -q 'failover\|recovered\|re-rout' "$tmp/$name.err" || echo "note: run $name's log names no failover"
  local p g
  read -r p g < <(sed -n 's/^omni run: prompt \([0-9]*\) tokens .*, generated \([0-9]*\) tokens .*/\1 \2/p' "$tmp/$name.err")
  [ -n "$p" ] && [ -n "$g" ] || fail "run $name: no summary line: $(cat "$tmp/$name.err")"
  [ "$g" = "$n" ] || fail "run $name generated $g tokens, not $n"
  positions=$((positions + p + g - 1))
  # The tallies ("credits: node ID blocks [B, E) work W acknowledged A"), one per node and pipeline
  # (the one the kill broke included); other credits lines say what a dead node did not take.
  grep -E '^omni run: credits: node [a-z2-7]+ blocks ' "$tmp/$name.err" >>"$tmp/tallies" || fail "run $name: no credits lines"
  grep '^omni run: credits: ' "$tmp/$name.err" | grep -vE 'credits: node [a-z2-7]+ blocks ' | sed 's/^/  /' || true
}

run_with_kill 1 400 "Once upon a time, in a small village" 2
run_with_kill 2 400 "The quick brown fox jumps over" 0

ledger_work() {
  "$omni" credits --data-dir "$tmp/$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["balance"]["work"])'
}
for n in a a2 b b2; do kill -9 "${pid_of[$n]}"; wait "${pid_of[$n]}" 2>/dev/null || true; done
args=()
for n in a a2 b b2; do args+=("$n" "${id_of[$n]}" "$(ledger_work "$n")"); done
python3 - "$tmp/tallies" "$positions" "${args[@]}" <<'PY' || fail "ledgers do not match the work done"
import sys
tallies, positions, rest = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
done, acked = {}, {}
for line in open(tallies):
    f = line.split()  # omni run: credits: node ID blocks [B, E) work W acknowledged A
    done[f[4]] = done.get(f[4], 0) + int(f[9])
    acked[f[4]] = acked.get(f[4], 0) + int(f[11])
ok = True
total_ledger = total_done = 0
for i in range(0, len(rest), 3):
    name, peer, ledger = rest[i], rest[i + 1], int(rest[i + 2])
    d, a = done.get(peer, 0), acked.get(peer, 0)
    print(f"node {name}: ledger {ledger}, acknowledged {a}, received by the clients {d}")
    ok &= a <= ledger <= d
    total_ledger += ledger
    total_done += d
expected = positions * 4
print(f"all nodes: ledgers {total_ledger}, work the clients counted {total_done} "
      f"({100.0 * (total_done - total_ledger) / max(total_done, 1):.2f}% unpaid), first principles >= {expected}")
ok &= abs(total_ledger - total_done) <= 0.01 * total_done
ok &= total_done >= expected > 0
sys.exit(0 if ok else 1)
PY
echo "PASS: ledgers match the work done within 1% after SIGKILLs mid-run"
