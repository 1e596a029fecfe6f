#!/usr/bin/env bash
# A node serving a tampered copy of a model is never used for the original (issue 16). The copy
# has one norm weight multiplied by 1.05 and its header untouched: the old identity (a hash of the
# header and the size) could not tell them apart. In a loopback swarm, honest nodes h1 (0:2) and
# h2 (2:4) serve the original file, node t serves all of the tampered copy (one hop: the cheapest
# route if it counted as the same model). Checks:
# - the copy's identity is its own CID: `omni swarm status` lists two models, and the original's
#   CID is the one `omni shard` gives for the original file (file nodes and shard nodes agree);
# - 5 runs of the original through the swarm never route through t and print the local output;
# - a run of the tampered copy routes through t only and prints the copy's own local output;
# - a client told to use t for the original (--peers) is refused: t serves another model.
set -euo pipefail
omni=$1 shared=$2
model=$shared/models/synth-llama-q8_0.gguf
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
trap 'cleanup_nodes; rm -rf "$tmp"' EXIT

tampered=$tmp/tampered.gguf
cp "$model" "$tampered"
python3 - "$tampered" blk.1.ffn_norm.weight 1.05 <<'PY' || fail "could not tamper with the copy"
# Minimal GGUF reader: finds an F32 tensor's data and scales its first value, in place.
import struct, sys
path, name, factor = sys.argv[1], sys.argv[2].encode(), float(sys.argv[3])
f = open(path, "r+b")
def u32(): return struct.unpack("<I", f.read(4))[0]
def u64(): return struct.unpack("<Q", f.read(8))[0]
def string(): return f.read(u64())
SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def skip(t):
    if t == 8: string()
    elif t == 9:
        et, n = u32(), u64()
        for _ in range(n): skip(et)
    else: f.read(SIZES[t])
assert f.read(4) == b"GGUF" and u32() == 3
n_tensors, n_kv = u64(), u64()
alignment = 32
for _ in range(n_kv):
    key, t = string(), u32()
    if key == b"general.alignment": alignment = u32()
    else: skip(t)
found = None
for _ in range(n_tensors):
    tname, nd = string(), u32()
    for _ in range(nd): u64()
    ttype, offset = u32(), u64()
    if tname == name: found = (ttype, offset)
assert found and found[0] == 0, "no F32 tensor %s" % name
data = (f.tell() + alignment - 1) // alignment * alignment
f.seek(data + found[1]); v = struct.unpack("<f", f.read(4))[0]
f.seek(data + found[1]); f.write(struct.pack("<f", v * factor))
print("tampered: %s[0] %.6f -> %.6f" % (name.decode(), v, v * factor))
PY
head_bytes=$(python3 -c "import sys; print(open(sys.argv[1],'rb').read(4096) == open(sys.argv[2],'rb').read(4096))" "$model" "$tampered")
[ "$head_bytes" = True ] || fail "the tampered copy's header differs"
cmp -s "$model" "$tampered" && fail "the copy was not changed"

cid=$("$omni" shard "$model" --store "$tmp/store" 2>"$tmp/shard.err") || fail "shard: $(cat "$tmp/shard.err")"

start_bootstrap
swarm=(--bootstrap "$BOOT_ADDR" --announce-interval 5 --record-ttl 30 --max-kv-mib 64)
start_node h1 "$model" 0:2 "${swarm[@]}"
start_node h2 "$model" 2:4 "${swarm[@]}"
start_node t "$tampered" 0:4 "${swarm[@]}"
addr_t=$NODE_ADDR
host_t=${addr_t#*@}
grep -q "content hashed" "$tmp/t.log" || fail "node t did not log its identity: $(cat "$tmp/t.log")"

# The directory holds two models; the original's CID is the one omni shard computes.
ok=
for _ in $(seq 1 50); do
  "$omni" swarm status --bootstrap "$BOOT_ADDR" --json --wait-ms 300 >"$tmp/status.json" 2>/dev/null || true
  if python3 - "$tmp/status.json" "$cid" <<'PY'; then ok=1; break; fi
import json, sys
s = json.load(open(sys.argv[1]))
cids = sorted(m["cid"] for m in s["models"])
sys.exit(0 if len(s["nodes"]) == 3 and len(cids) == 2 and sys.argv[2] in cids and cids[0] != cids[1] else 1)
PY
  sleep 0.2
done
[ -n "$ok" ] || fail "swarm status does not show the original ($cid) and the copy as two models: $(cat "$tmp/status.json")"
echo "swarm status: two models, the original is $cid (as omni shard computes it)"

prompt="Once upon a time, in a small village"
args=(-p "$prompt" -n 16 --temp 0 --json -t 1)
"$omni" run -m "$model" "${args[@]}" >"$tmp/local.json" 2>"$tmp/local.err" || fail "local: $(cat "$tmp/local.err")"
"$omni" run -m "$tampered" "${args[@]}" >"$tmp/local-t.json" 2>"$tmp/local-t.err" || fail "local t: $(cat "$tmp/local-t.err")"
cmp -s "$tmp/local.json" "$tmp/local-t.json" && fail "the tampered copy writes the same text; the test would prove nothing"

for i in 1 2 3 4 5; do
  "$omni" run -m "$model" "${args[@]}" --bootstrap "$BOOT_ADDR" --hidden-format f32 --data-dir "$tmp/client" \
    >"$tmp/swarm$i.json" 2>"$tmp/swarm$i.err" || fail "swarm run $i: $(cat "$tmp/swarm$i.err")"
  route=$(grep -m1 'route:' "$tmp/swarm$i.err") || fail "run $i printed no route: $(cat "$tmp/swarm$i.err")"
  case $route in *"$host_t"*) fail "run $i of the original routed through the tampered node: $route" ;; esac
  cmp -s "$tmp/local.json" "$tmp/swarm$i.json" ||
    fail "run $i differs from the local run: $(compare_runs "$tmp/local.json" "$tmp/swarm$i.json")"
done
echo "original: 5 of 5 routes avoid the tampered node; output identical to local"

"$omni" run -m "$tampered" "${args[@]}" --bootstrap "$BOOT_ADDR" --hidden-format f32 --data-dir "$tmp/client-t" \
  >"$tmp/swarm-t.json" 2>"$tmp/swarm-t.err" || fail "tampered swarm run: $(cat "$tmp/swarm-t.err")"
route=$(grep -m1 'route:' "$tmp/swarm-t.err")
[ "$route" != "${route/$host_t/}" ] || fail "the copy's run did not route through t: $route"
cmp -s "$tmp/local-t.json" "$tmp/swarm-t.json" || fail "the copy's swarm run differs from its local run"
echo "copy: routed through t only ($route); output identical to the copy's local run"

if "$omni" run -m "$model" "${args[@]}" --peers "$addr_t" --hidden-format f32 --data-dir "$tmp/client" \
  >/dev/null 2>"$tmp/direct.err"; then
  fail "a client of the original accepted the tampered node"
fi
grep -qi "model" "$tmp/direct.err" || fail "the refusal does not say why: $(cat "$tmp/direct.err")"
echo "direct: refused ($(grep -m1 -i model "$tmp/direct.err" | cut -c1-160))"
echo "PASS"
