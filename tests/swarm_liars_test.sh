#!/usr/bin/env bash
# Verified computation in a swarm (issue 16's done-when): 8 nodes on loopback, 6 honest and 2 liars
# of different kinds (src/swarm/tools/liar_node: one changes every output, one 1 call in 20), each
# block range served by 3 honest nodes and 1 liar. 20 concurrent greedy `omni run --bootstrap`
# generations with every call spot-checked (--verify-rate 1): all 20 outputs must equal the local
# run's, both liars must be excluded (by the clients whose checks met them), and a fault report of
# each must be confirmed by a third process (`omni swarm verify-fault` on the model file). Prints
# the median number of calls a client made until it excluded each liar.
#
#   swarm_liars_test.sh OMNI SHARED_DIR LIAR_NODE [CLIENTS]
set -euo pipefail
omni=$1 shared=$2 liar_node=$3 clients=${4:-20}
model=$shared/models/synth-llama-q8_0.gguf
[ -f "$model" ] || { echo "SKIP: $model is missing"; exit 77; }
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
trap 'cleanup_nodes; rm -rf "$tmp"' EXIT

start_bootstrap
boot=$BOOT_ADDR
swarm=(--bootstrap "$boot" --announce-interval 5 --record-ttl 30)
limits=(--max-sessions 256 --max-sessions-per-client 256 --max-connections-per-ip 256)
for i in 1 2 3; do
  # Every client comes from 127.0.0.1: the per-address limits must hold all 20 (and their checks).
  start_node "a$i" "$model" 0:2 "${swarm[@]}" "${limits[@]}"
  start_node "b$i" "$model" 2:4 "${swarm[@]}" "${limits[@]}"
done
start_liar() {  # NAME MODE BLOCKS: sets LIAR_ID
  : >"$tmp/$1.log"
  "$liar_node" --lie "$2" -m "$model" --blocks "$3" --listen 127.0.0.1:0 --data-dir "$tmp/$1" --bootstrap "$boot" \
    >"$tmp/$1.log" 2>&1 &
  node_pids+=($!)
  local addr=
  for _ in $(seq 1 200); do
    addr=$(sed -n 's/^liar_node: peer \([a-z2-7]*\) listening on .*/\1/p' "$tmp/$1.log")
    [ -n "$addr" ] && break
    sleep 0.05
  done
  [ -n "$addr" ] || fail "liar $1 did not start: $(cat "$tmp/$1.log")"
  LIAR_ID=$addr
}
# Not in $(...): the liar's pid must reach node_pids in this shell, for cleanup_nodes to kill it.
start_liar always always 0:2
always=$LIAR_ID
start_liar every20 every:20 2:4
one_in_20=$LIAR_ID
echo "liars: always $always (blocks 0:2), 1 in 20 $one_in_20 (blocks 2:4)"

prompt="Once upon a time, in a small village"
args=(-p "$prompt" -n 16 --temp 0 -t 1)
"$omni" run -m "$model" "${args[@]}" >"$tmp/local.txt" 2>"$tmp/local.err" || fail "local: $(cat "$tmp/local.err")"
# Let the directory show all 8 records before the clients route.
for _ in $(seq 1 60); do
  n=$("$omni" swarm status --bootstrap "$boot" --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["nodes"]))' || echo 0)
  [ "$n" -ge 8 ] && break
  sleep 0.5
done
[ "$n" -ge 8 ] || fail "the directory lists $n of 8 nodes"

started=$(date +%s.%N)
pids=()
for c in $(seq 1 "$clients"); do
  "$omni" run -m "$model" "${args[@]}" --bootstrap "$boot" --data-dir "$tmp/c$c" --verify-rate 1 \
    >"$tmp/c$c.txt" 2>"$tmp/c$c.err" &
  pids+=($!)
done
failed=0
for c in $(seq 1 "$clients"); do
  wait "${pids[$((c - 1))]}" || { echo "client $c failed: $(tail -3 "$tmp/c$c.err")"; failed=1; }
done
[ "$failed" = 0 ] || fail "clients failed"
elapsed=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
for c in $(seq 1 "$clients"); do
  cmp -s "$tmp/local.txt" "$tmp/c$c.txt" || fail "client $c's output differs from the local run:
$(diff "$tmp/local.txt" "$tmp/c$c.txt"; grep -i 'excluded\|spot' "$tmp/c$c.err" | head)"
done
echo "$clients clients: every output equals the local run ($elapsed s)"

python3 - "$tmp" "$clients" "$always" "$one_in_20" <<'PY' || fail "the liars were not excluded as expected"
import os, re, statistics, sys
tmp, clients, liars = sys.argv[1], int(sys.argv[2]), {"always": sys.argv[3], "1 in 20": sys.argv[4]}
calls = {name: [] for name in liars}
for c in range(1, clients + 1):
    for line in open(os.path.join(tmp, "c%d.err" % c)):
        m = re.search(r"node (\S+) excluded: .* after (\d+) calls", line)
        if not m:
            continue
        for name, peer in liars.items():
            if m.group(1) == peer:
                calls[name].append(int(m.group(2)))
        assert m.group(1) in liars.values(), "an honest node was excluded: " + line
ok = True
for name, got in calls.items():
    if not got:
        print("liar %s: excluded by no client" % name)
        ok = False
    else:
        print("liar %s: excluded by %d of %d clients, median %g calls until exclusion (min %d, max %d)"
              % (name, len(got), clients, statistics.median(got), min(got), max(got)))
sys.exit(0 if ok else 1)
PY

for liar in "$always" "$one_in_20"; do
  report=$(ls "$tmp"/c*/faults/fault-"$liar"-*.json 2>/dev/null | head -1)
  [ -n "$report" ] || fail "no fault report against $liar"
  "$omni" swarm verify-fault "$report" -m "$model" -t 1 >"$tmp/verify.out" 2>&1 ||
    fail "the report against $liar does not verify: $(cat "$tmp/verify.out")"
  grep -q "FAULT CONFIRMED: node $liar" "$tmp/verify.out" || fail "verify-fault: $(cat "$tmp/verify.out")"
done
# A report changed after signing proves nothing: the changed output digest breaks its signature.
python3 - "$report" "$tmp/forged.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
d = r["calls"][-1]["accused"]["output_sha256"]
r["calls"][-1]["accused"]["output_sha256"] = ("0" if d[0] != "0" else "1") + d[1:]
json.dump(r, open(sys.argv[2], "w"))
PY
if "$omni" swarm verify-fault "$tmp/forged.json" -m "$model" -t 1 >"$tmp/forged.out" 2>&1; then
  fail "a forged report verified: $(cat "$tmp/forged.out")"
fi
grep -q "does not carry its valid signature" "$tmp/forged.out" || fail "forged report: $(cat "$tmp/forged.out")"
echo "a third process confirmed a fault report against each liar"
echo PASS
