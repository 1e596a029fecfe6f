#!/usr/bin/env bash
# omni shard / fetch end to end: shard names match python's CIDs of the shard bytes, shards are GGUFs
# omni inspect reads, a model moves between stores over the node transport (TLS, peer ids checked)
# from `omni node` processes serving their stores: a corrupted peer is dropped and the fetch
# completes from the other, a wrong peer id is refused, a fetch killed with SIGKILL resumes without
# fetching verified chunks again, a full store is a clear error with nothing partial visible, and a
# model runs from its CID.
set -euo pipefail
omni=$1 shared=$2
linkemu=$(dirname "$omni")/../../src/linkemu/omni-linkemu
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

# Two serving peers; b's copies of the shards have one bit flipped in every chunk, so b lies on
# the first chunk it is asked for, whichever it is (the store holds the files read-only; as root we
# can still write them). An honest node verifies its blobs before it loads or serves them
# (security_store_tamper), so b lies as a modified node would: its verification records
# (verified/<cid>: device, inode, size, mtime in ns) are forged to match the flipped files.
cp -r "$tmp/a" "$tmp/b"
rm -f "$tmp/b/lock"
python3 - "$tmp/b/blobs" "$cid" <<'PY'
import os, struct, sys
# One flipped bit per 256 KiB chunk, inside the tensor data where the chunk has any, so that b's
# own block shard still loads (a flip in a GGUF header could rename a tensor).
def data_offset(b):
    o = 8
    nt, nkv = struct.unpack_from('<QQ', b, o); o += 16
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    align = 32
    def skip(t, o):
        if t == 8: return o + 8 + struct.unpack_from('<Q', b, o)[0]
        if t == 9:
            at, n = struct.unpack_from('<IQ', b, o); o += 12
            for _ in range(n): o = skip(at, o)
            return o
        return o + sizes[t]
    for _ in range(nkv):
        n, = struct.unpack_from('<Q', b, o); key = b[o + 8:o + 8 + n]; o += 8 + n
        t, = struct.unpack_from('<I', b, o); o += 4
        if key == b'general.alignment': align, = struct.unpack_from('<I', b, o)
        o = skip(t, o)
    for _ in range(nt):
        n, = struct.unpack_from('<Q', b, o); o += 8 + n
        nd, = struct.unpack_from('<I', b, o); o += 4 + 8 * nd + 12
    return (o + align - 1) // align * align
d = sys.argv[1]
for n in os.listdir(d):
    if n == sys.argv[2]: continue  # the manifest stays intact: b lies about shard bytes only
    p = os.path.join(d, n)
    data = bytearray(open(p, 'rb').read())
    start = data_offset(bytes(data))
    for chunk in range(0, len(data), 262144):
        off = max(chunk, start) + 1000
        if off >= min(chunk + 262144, len(data)): off = chunk + 1000  # a chunk of header only
        data[off] ^= 1
    open(p, 'wb').write(data)
    st = os.stat(p)
    with open(os.path.join(d, '..', 'verified', n), 'w') as f:
        f.write('omni-verified-1 %d %d %d %d\n' % (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
PY
"$omni" shard --verify "$cid" --store "$tmp/b" >/dev/null 2>"$tmp/verify.txt" && fail "verify missed a flipped bit"
grep -q "block 0" "$tmp/verify.txt" || fail "verify did not name block 0: $(cat "$tmp/verify.txt")"
start_node() {  # model (CID or file), store dir, blocks, name -> sets addr, id (it serves its store's blobs)
  "$omni" node --model "$1" --store "$2" --blocks "$3" --listen 127.0.0.1:0 --data-dir "$tmp/id.$4" -t 1 \
    >"$tmp/node.$4" 2>"$tmp/node.$4.err" &
  pids+=($!)
  for _ in $(seq 100); do grep -q listening "$tmp/node.$4" 2>/dev/null && break; sleep 0.1; done
  addr=$(sed -n 's/.*listening on \([^,]*\),.*/\1/p' "$tmp/node.$4")
  id=$(sed -n 's/.*peer \([a-z0-9]*\) listening.*/\1/p' "$tmp/node.$4")
  [ -n "$addr" ] || fail "node $4 did not start: $(cat "$tmp/node.$4.err")"
}
start_node "$cid" "$tmp/a" 0:1 a; addr_a=$addr id_a=$id
start_node "$cid" "$tmp/b" 1:2 b; addr_b=$addr id_b=$id

"$omni" fetch "$cid" --peers "$id_b@$addr_b,$id_a@$addr_a" --store "$tmp/c" --window 4 >"$tmp/fetch.out" 2>"$tmp/fetch.err" \
  || fail "fetch: $(cat "$tmp/fetch.err")"
grep -q "dropped peer $id_b@$addr_b: .*fail verification" "$tmp/fetch.err" || fail "the lying peer was not dropped: $(cat "$tmp/fetch.err")"
[ "$(ls "$tmp/c/blobs" | wc -l)" = "$n_blobs" ] || fail "fetched $(ls "$tmp/c/blobs" | wc -l) blobs, expected $n_blobs"
"$omni" shard --verify "$cid" --store "$tmp/c" >/dev/null || fail "fetched model does not verify"
[ -z "$(ls "$tmp/c/partial")" ] || fail "partial files left after a complete fetch"

# Only the corrupted peer: an error, and block 0 is not visible.
"$omni" fetch "$cid" --peers "$addr_b" --store "$tmp/d" 2>"$tmp/bad.err" >/dev/null && fail "fetch from a liar succeeded"
grep -q "fail verification" "$tmp/bad.err" || fail "no verification message: $(cat "$tmp/bad.err")"
grep -q "presented id $id_b" "$tmp/bad.err" || fail "trust on first use did not report the id: $(cat "$tmp/bad.err")"
[ ! -e "$tmp/d/blobs/$block0" ] || fail "a corrupt shard became visible"

# A wrong peer id: refused before any request.
"$omni" fetch "$cid" --peers "$id_b@$addr_a" --store "$tmp/w" 2>"$tmp/wrong.err" >/dev/null && fail "wrong peer id accepted"
grep -q "peer id mismatch" "$tmp/wrong.err" || fail "no id mismatch message: $(cat "$tmp/wrong.err")"
grep -q "no reachable peer" "$tmp/wrong.err" || fail "wrong id: $(cat "$tmp/wrong.err")"

# A store too small for the model: a clear error, nothing partial visible.
"$omni" fetch "$cid" --peers "$addr_a" --store "$tmp/e" --limit-mib 8 2>"$tmp/full.err" >/dev/null && fail "fetch into a full store succeeded"
grep -q "is full" "$tmp/full.err" || fail "no 'full' message: $(cat "$tmp/full.err")"
[ -z "$(ls "$tmp/e/tmp")" ] || fail "temp files left"

# Resume: a fetch through a slow link (4 Mbit/s) killed with SIGKILL after a few seconds, then
# finished directly: the verified chunks are not requested again.
if [ -x "$linkemu" ]; then
  "$linkemu" --listen 127.0.0.1:0 --target "$addr_a" --delay-ms 5 --rate-mbit 4 >"$tmp/link" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 50); do grep -q listening "$tmp/link" 2>/dev/null && break; sleep 0.1; done
  link=$(awk '/listening/ {print $2}' "$tmp/link")
  "$omni" fetch "$cid" --peers "$id_a@$link" --store "$tmp/r" --window 2 >/dev/null 2>"$tmp/killed.err" &
  fetch_pid=$!
  sleep 4
  kill -9 "$fetch_pid" 2>/dev/null || fail "the slow fetch ended before it was killed: $(cat "$tmp/killed.err")"
  wait "$fetch_pid" 2>/dev/null || true
  [ -n "$(ls "$tmp/r/partial" 2>/dev/null)" ] || fail "no partial blob after the kill"
  rm -f "$tmp/r/lock"  # flock is released by the kernel anyway; the file may stay
  "$omni" fetch "$cid" --peers "$id_a@$addr_a" --store "$tmp/r" >/dev/null 2>"$tmp/resume.err" || fail "resume: $(cat "$tmp/resume.err")"
  read -r fetched resumed < <(sed -n 's/.*fetched \([0-9]*\) chunks.* \([0-9]*\) chunks resumed.*/\1 \2/p' "$tmp/resume.err")
  [ "${resumed:-0}" -gt 0 ] || fail "nothing resumed: $(cat "$tmp/resume.err")"
  "$omni" shard --verify "$cid" --store "$tmp/r" >/dev/null || fail "resumed model does not verify"
  # Every chunk of every shard exactly once over both runs' verified chunks: fetched + resumed +
  # shards completed before the kill = all; the second run fetched fewer than all.
  all=$(python3 - "$tmp/a/blobs" "$cid" <<'PY'
import os, sys
d = sys.argv[1]; print(sum((os.path.getsize(os.path.join(d, n)) + 262143) // 262144 for n in os.listdir(d) if n != sys.argv[2]))
PY
)
  [ "$fetched" -lt "$all" ] || fail "the resumed fetch fetched $fetched of $all chunks again"
  echo "resume: $resumed chunks resumed, $fetched fetched of $all"
else
  echo "resume: skipped ($linkemu not built)"
fi

# Bad input.
"$omni" fetch bafynotacid --peers 127.0.0.1:1 --store "$tmp/f" 2>/dev/null && fail "bad CID accepted"
"$omni" fetch "$cid" --peers 127.0.0.1:1 --store "$tmp/f" 2>"$tmp/unreach.err" && fail "unreachable peer accepted"
grep -q "no reachable peer" "$tmp/unreach.err" || fail "unreachable: $(cat "$tmp/unreach.err")"
"$omni" fetch "$cid" --peers "nonsense" --store "$tmp/f" 2>"$tmp/badaddr.err" && fail "bad address accepted"
echo "store CLI: OK ($cid)"
