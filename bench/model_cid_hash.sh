#!/usr/bin/env bash
# What a model's identity costs a node: the manifest CID of a GGUF file (every shard hashed, whole
# and per 1 MiB chunk; store::compute_manifest) the first time `omni node` starts on it, against
# one plain SHA-256 pass over the file (`openssl dgst -sha256`, measured in the same run, file in
# the page cache), and whether the second start on the same data directory hashes again (it must
# not: the CID is cached in <data dir>/model-cids/).
#
#   bench/model_cid_hash.sh BUILD_DIR SHARED_DIR [EXTRA_MODEL.gguf ...]
#
# EXTRA_MODEL: e.g. a 1B model made with `omni synth --shape tinyllama-1.1b --type q8_0 FILE`.
set -euo pipefail
build=$1 shared=$2
shift 2
omni=$build/apps/omni/omni
work=$(mktemp -d)
pid=
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# start_node MODEL DATA_DIR: starts a node on blocks 0:1, waits for it to listen, stops it; prints
# the "content hashed in S s" figure, or "cached" when it did not hash.
start_node() {
  : >"$work/node.log"
  "$omni" node -m "$1" --blocks 0:1 --listen 127.0.0.1:0 --data-dir "$2" -t 1 --max-kv-mib 16 >"$work/node.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 6000); do
    grep -q 'listening on' "$work/node.log" && break
    kill -0 "$pid" 2>/dev/null || { echo "node exited: $(cat "$work/node.log")" >&2; exit 1; }
    sleep 0.05
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  local s
  s=$(sed -n 's/.*content hashed in \([0-9.]*\) s.*/\1/p' "$work/node.log")
  echo "${s:-cached}"
}

echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-34s %10s %12s %12s %7s %10s\n" model MiB "sha256 s" "cid s" ratio "2nd start"
for model in "$shared"/models/*.gguf "$@"; do
  openssl dgst -sha256 "$model" >/dev/null  # into the page cache
  t0=$(date +%s.%N); openssl dgst -sha256 "$model" >/dev/null; t1=$(date +%s.%N)
  base=$(echo "$t1 - $t0" | bc)
  rm -rf "$work/data"
  first=$(start_node "$model" "$work/data")
  second=$(start_node "$model" "$work/data")
  [ "$first" != cached ] || { echo "the first start did not hash $model" >&2; exit 1; }
  printf "%-34s %10.1f %12.3f %12.3f %7.2f %10s\n" "$(basename "$model")" \
    "$(echo "scale=1; $(stat -c %s "$model") / 1048576" | bc)" "$base" "$first" "$(echo "scale=3; $first / $base" | bc)" \
    "$second"
done
