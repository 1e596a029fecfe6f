#!/usr/bin/env bash
# Joining together on 127.0.0.1: 6 `omni node`s that choose their own blocks (at most 1 each of the
# model's 4, so covering the model takes 4 distinct choices) are started in the same second against
# one bootstrap DHT node; every block must be served within 10 s of the start (by the nodes' latest
# "listening on" lines: a node that settles its join moves and says so). Repeated ITERATIONS times
# (default 10), each with a fresh bootstrap node; prints "covered N/ITERATIONS" and fails unless all
# were covered.
# Usage: swarm_join_test.sh OMNI SHARED_DIR [ITERATIONS]
set -euo pipefail
omni=$1 shared=$2 iterations=${3:-10}
model=$shared/models/synth-llama-q8_0.gguf
tmp=$(mktemp -d /tmp/omni-swarm-join-XXXXXX)
source "$(dirname "$0")/pipeline_lib.sh"
trap 'cleanup_nodes; [ -n "${KEEP_LOGS:-}" ] || rm -rf "$tmp"' EXIT

n_layer=$("$omni" inspect "$model" --no-tensors | awk '$2 ~ /\.block_count$/ {print $4}')
nodes=6
blocks_of() { sed -n 's/^omni node: peer .* listening on .*, blocks \([0-9]*:[0-9]*\)$/\1/p' "$1" | tail -1; }
# coverage DIR: replicas per block over the nodes' latest ranges, e.g. "2 1 1 2".
coverage() {
  local -a cover
  for ((b = 0; b < n_layer; b++)); do cover[b]=0; done
  for ((i = 1; i <= nodes; i++)); do
    local range
    range=$(blocks_of "$1/n$i.log")
    [ -n "$range" ] || continue
    IFS=: read -r from to <<<"$range"
    for ((b = from; b < to; b++)); do cover[b]=$((cover[b] + 1)); done
  done
  echo "${cover[*]}"
}

ok=0
for ((run = 1; run <= iterations; run++)); do
  dir=$tmp/run$run
  mkdir -p "$dir"
  start_bootstrap
  t0=$(date +%s%N)
  for ((i = 1; i <= nodes; i++)); do
    "$omni" node -m "$model" --listen 127.0.0.1:0 --data-dir "$dir/n$i" -t 1 --bootstrap "$BOOT_ADDR" \
      --max-blocks 1 --max-kv-mib 64 ${JOIN_ARGS:-} --announce-interval 2 --record-ttl 6 >"$dir/n$i.log" 2>&1 &
    node_pids+=($!)
  done
  covered= cov=
  while [ $((($(date +%s%N) - t0) / 1000000)) -lt 10000 ]; do
    cov=$(coverage "$dir")
    case " $cov " in *" 0 "*) ;; *) covered=1; break ;; esac
    sleep 0.1
  done
  ms=$((($(date +%s%N) - t0) / 1000000))
  if [ -n "$covered" ]; then
    ok=$((ok + 1))
    echo "run $run: every block served after $ms ms (replicas per block $cov)"
  else
    echo "run $run: NOT covered within 10 s (replicas per block $cov)"
    for ((i = 1; i <= nodes; i++)); do echo "--- node $i"; grep -v "^omni node: fetch" "$dir/n$i.log" | tail -6; done
  fi
  cleanup_nodes
  [ -n "${KEEP_LOGS:-}" ] || rm -rf "$dir"
done
echo "covered $ok/$iterations"
[ "$ok" -eq "$iterations" ] || fail "$((iterations - ok)) of $iterations runs left a block unserved after 10 s"
echo "PASS"
