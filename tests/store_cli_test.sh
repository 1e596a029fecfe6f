#!/usr/bin/env bash
# omni shard / fetch / serve-blobs end to end: shard names match python's CIDs of the shard bytes,
# shards are GGUFs omni inspect reads, a model moves between two stores over TCP (one serving peer
# corrupted: dropped, the fetch completes from the other), verification catches damage, a full
# store is a clear error with nothing partial visible, and a model runs from its CID.
set -euo pipefail
omni=$1 shared=$2
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
model="$shared/models/synth-llama-q8_0.gguf"

cid=$("$omni" shard "$model" --store "$tmp/a" --chunk-kib 256 2>"$tmp/shard.txt")
[[ $cid == bafkrei* ]] || fail "model CID '$cid'"
grep -q "block 0" "$tmp/shard.txt" || fail "shard listing: $(cat "$tmp/shard.txt")"
# Every stored blob is named by the CID python computes from its bytes.
python3 - "$tmp/a/blobs" <<'PY' || fail "CIDs differ from python's"
import base64, hashlib, os, sys
d = sys.argv[1]
for name in os.listdir(d):
    data = open(os.path.join(d, name), 'rb').read()
    cid = 'b' + base64.b32encode(bytes([1, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()).decode().lower().rstrip('=')
    if cid != name: sys.exit(f'{name}: python says {cid}')
PY
again=$("$omni" shard "$model" --store "$tmp/a" --chunk-kib 256 2>"$tmp/shard2.txt")
[ "$again" = "$cid" ] || fail "sharding twice gave $again, then $cid"
grep -q "(0.0 MiB new" "$tmp/shard2.txt" || fail "second sharding stored new bytes: $(tail -1 "$tmp/shard2.txt")"
n_blobs=$(ls "$tmp/a/blobs" | wc -l)
block0=$(grep "block 0 " "$tmp/shard.txt" | awk '{print $3}')
"$omni" inspect "$tmp/a/blobs/$block0" >"$tmp/inspect.txt" || fail "inspect of a shard"
grep -q "blk.0.attn_q.weight" "$tmp/inspect.txt" || fail "block 0 shard lacks blk.0.attn_q.weight"
if grep -q "blk.1." "$tmp/inspect.txt"; then fail "block 0 shard holds block 1 tensors"; fi
"$omni" shard --verify "$cid" --store "$tmp/a" >/dev/null || fail "verify"

# Run from the CID: the same greedy tokens as from the file.
"$omni" run -m "$model" -p "Once upon a time" -n 6 --temp 0 >"$tmp/file.txt" 2>/dev/null
"$omni" run -m "$cid" --store "$tmp/a" -p "Once upon a time" -n 6 --temp 0 >"$tmp/cid.txt" 2>/dev/null || fail "run --store"
cmp -s "$tmp/file.txt" "$tmp/cid.txt" || fail "run from the CID differs from the file"

# Two serving peers; b's copy of block 0 is corrupted (the store holds the file read-only, as root
# we can still write it).
cp -r "$tmp/a" "$tmp/b"
rm -f "$tmp/b/lock"
python3 -c "import sys; f=open(sys.argv[1],'r+b'); f.seek(1000); b=f.read(1); f.seek(1000); f.write(bytes([b[0]^1]))" "$tmp/b/blobs/$block0"
"$omni" shard --verify "$cid" --store "$tmp/b" >/dev/null 2>"$tmp/verify.txt" && fail "verify missed a flipped bit"
grep -q "block 0" "$tmp/verify.txt" || fail "verify did not name block 0: $(cat "$tmp/verify.txt")"
start_server() {  # store dir -> sets port
  "$omni" serve-blobs --store "$1" --listen 127.0.0.1:0 >"$tmp/port.$2" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 50); do [ -s "$tmp/port.$2" ] && break; sleep 0.1; done
  port=$(cat "$tmp/port.$2")
  [ -n "$port" ] || fail "serve-blobs did not start"
}
start_server "$tmp/a" a; port_a=$port
start_server "$tmp/b" b; port_b=$port

"$omni" fetch "$cid" --peers "127.0.0.1:$port_b,127.0.0.1:$port_a" --store "$tmp/c" --window 4 >"$tmp/fetch.out" 2>"$tmp/fetch.err" \
  || fail "fetch: $(cat "$tmp/fetch.err")"
grep -q "dropped peer 127.0.0.1:$port_b" "$tmp/fetch.err" || fail "the lying peer was not dropped: $(cat "$tmp/fetch.err")"
[ "$(ls "$tmp/c/blobs" | wc -l)" = "$n_blobs" ] || fail "fetched $(ls "$tmp/c/blobs" | wc -l) blobs, expected $n_blobs"
"$omni" shard --verify "$cid" --store "$tmp/c" >/dev/null || fail "fetched model does not verify"
[ -z "$(ls "$tmp/c/partial")" ] || fail "partial files left after a complete fetch"

# Only the corrupted peer: an error, and block 0 is not visible.
"$omni" fetch "$cid" --peers "127.0.0.1:$port_b" --store "$tmp/d" 2>"$tmp/bad.err" >/dev/null && fail "fetch from a liar succeeded"
grep -q "fail verification" "$tmp/bad.err" || fail "no verification message: $(cat "$tmp/bad.err")"
[ ! -e "$tmp/d/blobs/$block0" ] || fail "a corrupt shard became visible"

# A store too small for the model: a clear error, nothing partial visible.
"$omni" fetch "$cid" --peers "127.0.0.1:$port_a" --store "$tmp/e" --limit-mib 8 2>"$tmp/full.err" >/dev/null && fail "fetch into a full store succeeded"
grep -q "is full" "$tmp/full.err" || fail "no 'full' message: $(cat "$tmp/full.err")"
[ -z "$(ls "$tmp/e/tmp")" ] || fail "temp files left"

# Bad input.
"$omni" fetch bafynotacid --peers 127.0.0.1:1 --store "$tmp/f" 2>/dev/null && fail "bad CID accepted"
"$omni" fetch "$cid" --peers 127.0.0.1:1 --store "$tmp/f" 2>"$tmp/unreach.err" && fail "unreachable peer accepted"
grep -q "no reachable peer" "$tmp/unreach.err" || fail "unreachable: $(cat "$tmp/unreach.err")"
echo "store CLI: OK ($cid)"
