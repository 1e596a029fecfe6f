#!/usr/bin/env bash
# Reputation end to end (issue 16 item 3): two nodes on 127.0.0.1 each serve the whole model; the
# client's data directory excludes one of them (`omni swarm exclude`, the same store a fault report
# feeds). Runs through the swarm never route through the excluded node and write the local greedy
# text; `omni swarm status --data-dir` shows it excluded with its reason and the other node's score
# and uptime from the runs' probes (the store persisted across the client processes). With the
# honest node killed, a run fails naming the exclusion rather than using the excluded node; after
# `omni swarm pardon` it runs through it. Usage: OMNI SHARED_DIR
set -euo pipefail
omni=$1 shared=$2
model=$shared/models/synth-llama-q8_0.gguf
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
trap 'cleanup_nodes; rm -rf "$tmp"' EXIT

start_bootstrap
boot=$BOOT_ADDR
start_node a "$model" 0:4 --bootstrap "$boot" --announce-interval 1 --record-ttl 30
pid_a=$NODE_PID addr_a=${NODE_ADDR#*@}
start_node b "$model" 0:4 --bootstrap "$boot" --announce-interval 1 --record-ttl 30
id_b=${NODE_ADDR%@*} addr_b=${NODE_ADDR#*@}
client=$tmp/client
"$omni" swarm exclude "$id_b" --reason "test: outvoted on a spot check" --data-dir "$client" >/dev/null

prompt="Once upon a time"
"$omni" run -m "$model" -p "$prompt" -n 12 --temp 0 -t 1 >"$tmp/local.txt" 2>/dev/null
swarm_run() {  # swarm_run NAME: a greedy run through the swarm (a first lookup may miss a record)
  for _ in 1 2 3 4 5; do
    "$omni" run -m "$model" -p "$prompt" -n 12 --temp 0 -t 1 --bootstrap "$boot" --data-dir "$client" \
      >"$tmp/$1.out" 2>"$tmp/$1.err" && return 0
    sleep 1
  done
  return 1
}
sleep 2  # both records in the directory
for i in 1 2 3 4; do
  swarm_run "run$i" || fail "run $i: $(cat "$tmp/run$i.err")"
  cmp -s "$tmp/local.txt" "$tmp/run$i.out" || fail "run $i wrote other text than the local run"
  grep -q "@$addr_b" <(grep '^omni run: route:' "$tmp/run$i.err") && fail "run $i was routed through the excluded node"
  grep -q "@$addr_a" <(grep '^omni run: route:' "$tmp/run$i.err") || fail "run $i: no route through a: $(cat "$tmp/run$i.err")"
done
echo "4 runs: every route through a, none through the excluded b; text equal to the local run"

"$omni" swarm status --bootstrap "$boot" --json --data-dir "$client" >"$tmp/status.json"
python3 - "$tmp/status.json" "$id_b" "$addr_a" <<'PY' || fail "swarm status: $(cat "$tmp/status.json")"
import json, sys
s, id_b, addr_a = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
nodes = {n["peer_id"]: n for n in s["nodes"]}
b = nodes[id_b]["reputation"]
assert b["excluded"] and b["excluded_reason"] == "test: outvoted on a spot check" and b["score"] == 0, b
assert [e["peer_id"] for e in s["excluded"]] == [id_b], s["excluded"]
a = [n for n in s["nodes"] if addr_a in n["addresses"]][0]["reputation"]
assert not a["excluded"] and a["answered"] >= 4 and a["uptime"] == 1 and a["served"] >= 4 and a["score"] > 0.9, a
print(f"ok   swarm status: b excluded ({b['excluded_reason']}); a score {a['score']:.2f}, "
      f"{a['answered']} probes answered, {a['served']} sessions served")
PY
"$omni" swarm status --bootstrap "$boot" --data-dir "$client" | grep -q "EXCLUDED" || fail "the table does not mark b excluded"

# Only the excluded node left: no route, and the error says why.
kill -9 "$pid_a"; wait "$pid_a" 2>/dev/null || true
if "$omni" run -m "$model" -p "$prompt" -n 4 --temp 0 -t 1 --bootstrap "$boot" --data-dir "$client" \
  >"$tmp/only_b.out" 2>"$tmp/only_b.err"; then
  fail "a run succeeded with only the excluded node alive: $(cat "$tmp/only_b.err")"
fi
grep -q "excluded" "$tmp/only_b.err" || fail "the failed run does not name the exclusion: $(cat "$tmp/only_b.err")"
echo "with a dead, the run fails naming the exclusion instead of using b"

"$omni" swarm pardon "$id_b" --data-dir "$client" >/dev/null
swarm_run pardoned || fail "after the pardon: $(cat "$tmp/pardoned.err")"
cmp -s "$tmp/local.txt" "$tmp/pardoned.out" || fail "the pardoned run wrote other text than the local run"
grep -q "@$addr_b" <(grep '^omni run: route:' "$tmp/pardoned.err") || fail "the pardoned run did not use b"
echo "PASS: excluded nodes are never routed to, status shows them, a pardon lifts it"
