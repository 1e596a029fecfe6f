#!/usr/bin/env bash
# Peak memory of a client that knows only the model's CID (`omni run -m CID --bootstrap`): it
# fetches the manifest, the embeddings shard (with the tokenizer) and the head shard, maps them,
# and runs the blocks on the swarm. Its peak RSS (VmHWM, read by GNU time as the kernel's
# ru_maxrss, which is the same high-water mark) is compared with what it holds: its shards + its
# KV cache (none: it runs no block) + 64 MiB for the code, threads, buffers of the fetch and of the
# RPC. For contrast, the same run by a client given the GGUF file (mapped whole; only the pages it
# touches count).
#
#   bench/cid_client_rss.sh BUILD_DIR [WORK_DIR] [TYPE] [RUNS]
#
# The model is the TinyLlama-1.1B shape (omni synth, TYPE default q8_0, ~1.1 GB), sharded into a
# store that one node serves all blocks from; a bootstrap DHT node on loopback. Each of RUNS
# (default 3) CID runs starts from an empty data directory (fetch included); then one more with
# the store filled (no fetch). Needs ~2.5 GB free in WORK_DIR (default: a temp dir, removed).
set -euo pipefail
build=$1
keep=${2:-}
work=${2:-$(mktemp -d)}
type=${3:-q8_0}
runs=${4:-3}
omni=$build/apps/omni/omni
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "$keep" ] || rm -rf "$work"; }
trap cleanup EXIT
mib() { echo "scale=1; $1 / 1048576" | bc; }

echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), load average $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$work"
model=$work/tinyllama-$type.gguf
[ -f "$model" ] || "$omni" synth --shape tinyllama-1.1b --type "$type" --seed 1 "$model" >/dev/null
cid=$("$omni" shard "$model" --store "$work/src" 2>/dev/null)
n_layer=$("$omni" inspect "$model" --no-tensors | awk '$2 ~ /\.block_count$/ {print $4}')
echo "model $cid: $(mib "$(stat -c %s "$model")") MiB, $n_layer blocks"

"$omni" node --bootstrap-only --listen 127.0.0.1:0 >"$work/boot.log" 2>&1 &
pids+=($!)
boot=
for _ in $(seq 100); do
  boot=$(sed -n 's/^omni node: bootstrap DHT node listening on udp \(.*\)$/\1/p' "$work/boot.log")
  [ -n "$boot" ] && break
  sleep 0.05
done
[ -n "$boot" ] || { echo "bootstrap node did not start"; exit 1; }
"$omni" node --model "$cid" --store "$work/src" --blocks "0:$n_layer" --listen 127.0.0.1:0 --data-dir "$work/node" \
  --bootstrap "$boot" --max-kv-mib 256 >"$work/node.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do grep -q listening "$work/node.log" && break; sleep 0.1; done
grep -q listening "$work/node.log" || { echo "node did not start: $(cat "$work/node.log")"; exit 1; }

prompt="Once upon a time, in a small village"
args=(-p "$prompt" -n 32 -c 512 --temp 0 --bootstrap "$boot")
# peak_kib OUT ERR -- COMMAND...: runs it, prints its peak RSS in KiB.
peak_kib() {
  local out=$1 err=$2
  shift 3
  /usr/bin/time -f "peak_kib %M" -o "$work/time" "$@" >"$out" 2>"$err" || { echo "failed: $(cat "$err")" >&2; exit 1; }
  sed -n 's/^peak_kib //p' "$work/time"
}
report() {  # report LABEL PEAK_KIB
  local shards budget
  shards=$(du -sb "$work/client/store/blobs" | cut -f1)
  budget=$((shards + 64 * 1048576))
  printf "%-28s peak RSS %7s MiB; shards %s MiB + KV 0 + 64 MiB = %s MiB: %s\n" "$1" "$(mib $(($2 * 1024)))" \
    "$(mib "$shards")" "$(mib "$budget")" "$([ $(($2 * 1024)) -le "$budget" ] && echo within || echo OVER)"
}
for i in $(seq "$runs"); do
  rm -rf "$work/client"
  kib=$(peak_kib "$work/cid.out" "$work/cid.err" -- "$omni" run -m "$cid" "${args[@]}" --data-dir "$work/client")
  report "CID, empty store (run $i)" "$kib"
done
kib=$(peak_kib "$work/cid.out" "$work/cid.err" -- "$omni" run -m "$cid" "${args[@]}" --data-dir "$work/client")
report "CID, shards in store" "$kib"
echo "client store: $(ls "$work/client/store/blobs" | wc -l) blobs; $(grep -m1 'route:' "$work/cid.err" | sed 's/^omni run: //')"
kib=$(peak_kib "$work/file.out" "$work/file.err" -- "$omni" run -m "$model" "${args[@]}" --data-dir "$work/client-file")
printf "%-28s peak RSS %7s MiB\n" "GGUF file" "$(mib $((kib * 1024)))"
cmp -s "$work/cid.out" "$work/file.out" && echo "same output as the file client" || echo "OUTPUT DIFFERS from the file client"
