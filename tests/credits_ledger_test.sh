#!/usr/bin/env bash
# Credits after a run with node restarts (issue 16's done-when): a swarm of 3 nodes (blocks 0:1,
# 1:3, 3:4) on 127.0.0.1 serves 6 greedy generations from 3 clients (ring, chain and direct
# routes; long enough that receipts are also sent mid-session); between them one node is
# restarted cleanly and another killed with SIGKILL and started again on the same data directory.
# Afterwards (all nodes killed with SIGKILL, so only what was committed counts) each node's ledger
# (`omni credits --json`) must hold exactly the work its clients acknowledged and, within 1%, the
# work it did, counted two ways independently of the ledger: the clients' own per-node tallies, and
# from first principles: a run of P prompt tokens and G generated ones computes P + G - 1
# positions through each of the node's blocks.
set -euo pipefail
omni=$1 shared=$2
model=$shared/models/synth-llama-q8_0.gguf
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
trap 'cleanup_nodes; rm -rf "$tmp"' EXIT

start_bootstrap
boot=$BOOT_ADDR
swarm_args=(--bootstrap "$boot" --announce-interval 1 --record-ttl 30)
declare -A pid_of blocks_of id_of
start() {  # start NAME BLOCKS
  start_node "$1" "$model" "$2" "${swarm_args[@]}"
  pid_of[$1]=$NODE_PID
  blocks_of[$1]=$2
  id_of[$1]=${NODE_ADDR%@*}
}
start a 0:1
start b 1:3
start c 3:4

# Each run: its log, and the positions it computed (prompt + generated - 1), for every node.
positions=0
run() {  # run NAME CLIENT ROUTE TOKENS PROMPT
  local name=$1 client=$2 route=$3 n=$4 prompt=$5
  local ok=
  # The directory may still list a restarted node's old address for a moment: a failed lookup is
  # retried (the client's own failover covers a node that dies mid-run, which this test avoids).
  for _ in 1 2 3 4 5; do
    # --lookup off: drafted tokens the model rejects are work too, which positions do not count.
    if "$omni" run -m "$model" -p "$prompt" -n "$n" --temp 0 --ignore-eos -t 1 --route "$route" --lookup off \
      --bootstrap "$boot" --data-dir "$tmp/$client" >"$tmp/$name.out" 2>"$tmp/$name.err"; then
      ok=1
      break
    fi
    sleep 1
  done
  [ -n "$ok" ] || fail "run $name: $(cat "$tmp/$name.err")"
  local p g
  read -r p g < <(sed -n 's/^omni run: prompt \([0-9]*\) tokens .*, generated \([0-9]*\) tokens .*/\1 \2/p' "$tmp/$name.err")
  [ -n "$p" ] && [ -n "$g" ] || fail "run $name: no summary line: $(cat "$tmp/$name.err")"
  [ "$g" = "$n" ] || fail "run $name generated $g tokens, not $n"
  positions=$((positions + p + g - 1))
  grep '^omni run: credits: node ' "$tmp/$name.err" >>"$tmp/tallies" || fail "run $name: no credits lines: $(cat "$tmp/$name.err")"
  echo "run $name ($route, client $client): $p + $g tokens; $(grep -c '^omni run: credits: node ' "$tmp/$name.err") nodes paid"
}

# Work acknowledged to NAME so far by the clients' tallies.
acknowledged() {
  awk -v id="${id_of[$1]}" '$4 == "node" && $5 == id {s += $12} END {print s + 0}' "$tmp/tallies"
}
ledger_work() {
  "$omni" credits --data-dir "$tmp/$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["balance"]["work"])'
}

: >"$tmp/tallies"
run 1 alice ring 300 "Once upon a time, in a small village"
run 2 bob chain 40 "The quick brown fox"

# A clean restart of b (SIGTERM), on the same data directory.
kill "${pid_of[b]}"; wait "${pid_of[b]}" 2>/dev/null || true
start b 1:3
run 3 carol direct 280 "In the beginning"
run 4 alice ring 64 "Tell me a story about a dragon"

# c killed with SIGKILL: every receipt it acknowledged is still in its ledger.
before=$(acknowledged c)
kill -9 "${pid_of[c]}"; wait "${pid_of[c]}" 2>/dev/null || true
after_kill=$(ledger_work c)
[ "$after_kill" = "$before" ] || fail "node c's ledger holds $after_kill after SIGKILL, its clients had $before acknowledged"
echo "node c killed: its ledger still holds all $after_kill acknowledged credits"
start c 3:4
run 5 bob ring 300 "A long time ago"
run 6 carol chain 33 "Hello"

# The end: every node killed with SIGKILL, then the ledgers are read.
for n in a b c; do kill -9 "${pid_of[$n]}"; wait "${pid_of[$n]}" 2>/dev/null || true; done
python3 - "$tmp/tallies" "$positions" a "${id_of[a]}" "${blocks_of[a]}" "$(ledger_work a)" \
  b "${id_of[b]}" "${blocks_of[b]}" "$(ledger_work b)" c "${id_of[c]}" "${blocks_of[c]}" "$(ledger_work c)" <<'PY' ||
import sys
tallies, positions, rest = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
done, acked = {}, {}
for line in open(tallies):
    f = line.split()  # omni run: credits: node ID blocks [B, E) work W acknowledged A
    done[f[4]] = done.get(f[4], 0) + int(f[9])
    acked[f[4]] = acked.get(f[4], 0) + int(f[11])
ok = True
for i in range(0, len(rest), 4):
    name, peer, blocks, ledger = rest[i], rest[i + 1], rest[i + 2], int(rest[i + 3])
    b, e = map(int, blocks.split(":"))
    expected = positions * (e - b)  # first principles: every position through each of its blocks
    print(f"node {name} [{b}, {e}): ledger {ledger}, acknowledged {acked.get(peer, 0)}, "
          f"client tally {done.get(peer, 0)}, positions x blocks {expected}")
    ok &= ledger == acked.get(peer, 0)
    ok &= abs(ledger - done.get(peer, 0)) <= 0.01 * done.get(peer, 0)
    ok &= abs(ledger - expected) <= 0.01 * expected and expected > 0
sys.exit(0 if ok else 1)
PY
  fail "ledgers do not match the work done"
echo "PASS: every ledger matches the work done"
