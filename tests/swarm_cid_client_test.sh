#!/usr/bin/env bash
# Clients and nodes that know only the model's CID, in a loopback swarm. Node a serves blocks 0:2
# from a store holding the whole sharded model (omni shard); nodes b (2:3) and c (3:4) start from
# the CID with empty stores and no --peers: they find their shards through the provider records in
# the DHT. Then `omni run -m CID --bootstrap` from an empty data directory fetches exactly the
# shards the client computes itself (manifest, embeddings, head: the set `omni fetch --blocks 0:0`
# gives) and prints the same greedy output as `omni run` on the local file (F32 hidden states:
# byte-identical); so does `omni run -m CID --peers ...`. A CID nobody provides fails with a clear
# error, in bounded time.
set -euo pipefail
omni=$1 shared=$2
model=$shared/models/synth-llama-q8_0.gguf
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
trap 'cleanup_nodes; rm -rf "$tmp"' EXIT

start_bootstrap
boot=$BOOT_ADDR
cid=$("$omni" shard "$model" --store "$tmp/store.a" 2>"$tmp/shard.err") || fail "shard: $(cat "$tmp/shard.err")"
[[ $cid == bafkrei* ]] || fail "omni shard printed '$cid'"
swarm=(--bootstrap "$boot" --announce-interval 5 --record-ttl 15 --max-kv-mib 64)

start_node a "$cid" 0:2 --store "$tmp/store.a" "${swarm[@]}"
addr_a=$NODE_ADDR
start_node b "$cid" 2:3 --store "$tmp/store.b" "${swarm[@]}"
addr_b=$NODE_ADDR
start_node c "$cid" 3:4 --store "$tmp/store.c" "${swarm[@]}"
addr_c=$NODE_ADDR
# b and c fetched only their block's shard and the manifest, from the providers in the DHT.
for n in b c; do
  count=$(ls "$tmp/store.$n/blobs" | wc -l)
  [ "$count" = 2 ] || fail "node $n holds $count blobs, expected 2 (manifest, its block)"
  grep -q "from 1 provider" "$tmp/$n.log" || fail "node $n did not fetch from a provider: $(cat "$tmp/$n.log")"
done

# The shards a client computes with, as the existing fetch engine picks them (--blocks 0:0).
"$omni" fetch "$cid" --peers "$addr_a" --store "$tmp/expected" --blocks 0:0 >/dev/null 2>"$tmp/expected.err" ||
  fail "reference fetch: $(cat "$tmp/expected.err")"

prompt="Once upon a time, in a small village"
args=(-p "$prompt" -n 24 --temp 0 --json --top-logprobs 3 -t 1)
"$omni" run -m "$model" "${args[@]}" >"$tmp/local.json" 2>"$tmp/local.err" || fail "local: $(cat "$tmp/local.err")"
"$omni" run -m "$cid" "${args[@]}" --bootstrap "$boot" --hidden-format f32 --data-dir "$tmp/client" \
  >"$tmp/cid.json" 2>"$tmp/cid.err" || fail "CID run: $(cat "$tmp/cid.err")"
[ -s "$tmp/cid.json" ] || fail "the CID run printed nothing: $(cat "$tmp/cid.err")"
cmp -s "$tmp/local.json" "$tmp/cid.json" ||
  fail "the CID run differs from the local run: $(compare_runs "$tmp/local.json" "$tmp/cid.json")"
[ "$(ls "$tmp/client/store/blobs")" = "$(ls "$tmp/expected/blobs")" ] ||
  fail "the client fetched $(ls "$tmp/client/store/blobs" | tr '\n' ' '), expected $(ls "$tmp/expected/blobs" | tr '\n' ' ')"
[ "$(ls "$tmp/client/store/blobs" | wc -l)" = 3 ] || fail "the client holds $(ls "$tmp/client/store/blobs" | wc -l) blobs"
for f in "$tmp/client/store/blobs"/*; do
  cmp -s "$f" "$tmp/store.a/blobs/$(basename "$f")" || fail "client blob $(basename "$f") differs from the source's"
done
echo "CID run: $(grep -m1 'route:' "$tmp/cid.err" | sed 's/^omni run: //'); 3 blobs fetched; output identical to local"

# Again from the filled store: nothing is fetched, the output is the same.
"$omni" run -m "$cid" "${args[@]}" --bootstrap "$boot" --hidden-format f32 --data-dir "$tmp/client" \
  >"$tmp/cid2.json" 2>"$tmp/cid2.err" || fail "second CID run: $(cat "$tmp/cid2.err")"
cmp -s "$tmp/local.json" "$tmp/cid2.json" || fail "the second CID run differs from the local run"
if grep -q "fetching" "$tmp/cid2.err"; then fail "the second CID run fetched again: $(cat "$tmp/cid2.err")"; fi

# With --peers instead of the DHT: the shards come from those peers (b and c lack them and are
# dropped from the fetch; a serves them), the blocks run on them.
"$omni" run -m "$cid" "${args[@]}" --peers "$addr_a,$addr_b,$addr_c" --hidden-format f32 --data-dir "$tmp/client3" \
  >"$tmp/peers.json" 2>"$tmp/peers.err" || fail "CID run with --peers: $(cat "$tmp/peers.err")"
cmp -s "$tmp/local.json" "$tmp/peers.json" ||
  fail "the CID run with --peers differs from the local run: $(compare_runs "$tmp/local.json" "$tmp/peers.json")"
[ "$(ls "$tmp/client3/store/blobs")" = "$(ls "$tmp/expected/blobs")" ] || fail "the --peers client fetched other blobs"

# A CID with neither a store nor other nodes to fetch from: told so.
if "$omni" run -m "$cid" -p hi -n 1 --data-dir "$tmp/client4" >/dev/null 2>"$tmp/alone.err"; then
  fail "a CID run with nothing to fetch from succeeded"
fi
grep -q "is a CID: give --store" "$tmp/alone.err" || fail "CID alone: $(cat "$tmp/alone.err")"

# A CID no node provides: a clear error within the lookup wait (15 s), not a hang.
unknown=$(python3 -c 'import base64, hashlib
d = bytes([1, 0x55, 0x12, 0x20]) + hashlib.sha256(b"no such model").digest()
print("b" + base64.b32encode(d).decode().lower().rstrip("="))')
start=$SECONDS
if timeout 60 "$omni" run -m "$unknown" -p hi -n 1 --bootstrap "$boot" --data-dir "$tmp/client2" \
  >"$tmp/unknown.out" 2>"$tmp/unknown.err"; then
  fail "a run of a CID nobody provides succeeded"
fi
grep -q "no node in the swarm provides model" "$tmp/unknown.err" || fail "unknown CID: $(cat "$tmp/unknown.err")"
[ $((SECONDS - start)) -le 40 ] || fail "the unknown CID took $((SECONDS - start)) s to fail"
echo "swarm CID client: OK ($cid)"
