#!/usr/bin/env bash
# Nodes that start from a model CID: node A serves blocks 0:2 from the GGUF file and shares it
# (--share: sharded into its store, served over the node transport); nodes B (0:2) and C (2:4) start
# with the CID only, fetch exactly the shards of their blocks from A (B: manifest, embeddings,
# blocks 0-1; C: manifest, blocks 2-3; nobody the head), and serve. A client running the file
# through B,C and through A,C gets exactly the local greedy output (F32 hidden states).
set -euo pipefail
omni=$1 shared=$2
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
trap 'cleanup_nodes; rm -rf "$tmp"' EXIT
model="$shared/models/synth-llama-q8_0.gguf"

start_node a "$model" 0:2 --share --store "$tmp/store.a"
addr_a=$NODE_ADDR
cid=$(sed -n 's/^omni node: sharing model \([a-z0-9]*\) .*/\1/p' "$tmp/a.log")
[[ $cid == bafkrei* ]] || fail "node a did not print the model CID: $(cat "$tmp/a.log")"

start_node b "$cid" 0:2 --store "$tmp/store.b" --peers "$addr_a"
addr_b=$NODE_ADDR
start_node c "$cid" 2:4 --store "$tmp/store.c" --peers "$addr_a"
addr_c=$NODE_ADDR

# Exactly the shards each range needs: the manifest plus embeddings and blocks 0, 1 for b, the
# manifest plus blocks 2, 3 for c.
[ "$(ls "$tmp/store.b/blobs" | wc -l)" = 4 ] || fail "node b holds $(ls "$tmp/store.b/blobs" | wc -l) blobs, expected 4"
[ "$(ls "$tmp/store.c/blobs" | wc -l)" = 3 ] || fail "node c holds $(ls "$tmp/store.c/blobs" | wc -l) blobs, expected 3"
grep -q "fetched .* chunks" "$tmp/b.log" || fail "node b did not report its fetch: $(cat "$tmp/b.log")"
python3 - "$tmp/store.a/blobs" "$tmp/store.b/blobs" "$tmp/store.c/blobs" <<'PY' || fail "fetched shards differ from the source's"
import filecmp, os, sys
a = sys.argv[1]
for d in sys.argv[2:]:
    for n in os.listdir(d):
        assert filecmp.cmp(os.path.join(a, n), os.path.join(d, n), shallow=False), n
PY

args=(-p "Once upon a time" -n 12 --temp 0 --json --data-dir "$tmp/client")
"$omni" run -m "$model" "${args[@]}" >"$tmp/local.json" 2>"$tmp/local.err" || fail "local run: $(cat "$tmp/local.err")"
for list in "$addr_b,$addr_c" "$addr_a,$addr_c"; do
  "$omni" run -m "$model" "${args[@]}" --peers "$list" --hidden-format f32 >"$tmp/remote.json" 2>"$tmp/remote.err" \
    || fail "run through $list: $(cat "$tmp/remote.err")"
  cmp -s "$tmp/local.json" "$tmp/remote.json" || fail "run through $list differs from the local run:
$(diff "$tmp/local.json" "$tmp/remote.json" | head -5)"
done

# A node given a CID it cannot fetch: a clear error, no hang.
"$omni" node -m "$cid" --blocks 0:1 --store "$tmp/store.d" --data-dir "$tmp/d" --listen 127.0.0.1:0 \
  --peers 127.0.0.1:1 >"$tmp/d.out" 2>"$tmp/d.err" && fail "a node without its shards started"
grep -q "no reachable peer" "$tmp/d.err" || fail "unfetchable CID: $(cat "$tmp/d.err")"
"$omni" node -m "$cid" --blocks 0:1 --store "$tmp/store.e" --data-dir "$tmp/e" --listen 127.0.0.1:0 \
  >"$tmp/e.out" 2>"$tmp/e.err" && fail "a node without shards or peers started"
grep -q "give --peers" "$tmp/e.err" || fail "no-peers CID: $(cat "$tmp/e.err")"
echo "store node: OK ($cid)"
