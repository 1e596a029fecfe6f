#!/usr/bin/env bash
# Concurrency on a swarm: `omni gateway --peers` over a 3-node loopback chain (each node a third of
# the blocks), once with node batching (`omni node --max-batch-tokens 512`, the default) and once
# without (`--max-batch-tokens 1`: every call its own pass), both swarms up all along and the load
# alternating between them (the order reversed on even repeats). Aggregate output tokens/s and
# time per output token at several numbers of concurrent streaming clients (load.py), medians per
# level, the ratio batched / unbatched, and each swarm's throughput over its own 1-stream figure.
#
# usage: bench/concurrency/swarm.sh --omni BIN --model FILE [--threads 1] [--levels "1 4 8 16"]
#          [--max-tokens 32] [--requests-per-client 2] [--min-requests 4] [--repeat 2] [--out FILE.jsonl]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
omni=""; model=""; threads=1; levels="1 4 8 16"; max_tokens=32; per_client=2; min_requests=4; repeat=2; out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --omni) omni=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --levels) levels=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    --requests-per-client) per_client=$2; shift 2 ;;
    --min-requests) min_requests=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n "$omni" && -n "$model" ]] || { echo "--omni and --model are required" >&2; exit 2; }
max_level=0; for l in $levels; do (( l > max_level )) && max_level=$l; done
out=${out:-$(mktemp -t omni-swarm-concurrency.XXXXXX.jsonl)}
: > "$out"
work=$(mktemp -d -t omni-swarm-concurrency.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_for() {  # LOGFILE SED-EXPR -> the first match
  for _ in $(seq 1 600); do
    local v; v=$(sed -n "$2" "$1" | head -1)
    [[ -n "$v" ]] && { echo "$v"; return 0; }
    sleep 0.1
  done
  echo "server did not start; log:" >&2; cat "$1" >&2; return 1
}

n_layer=$("$omni" inspect "$model" 2>/dev/null | awk '!n && $2 ~ /\.block_count$/ {n = $NF} END {print n}')
[[ -n "$n_layer" ]] || { echo "cannot read the block count of $model" >&2; exit 1; }
a=$(( n_layer / 3 )); b=$(( 2 * n_layer / 3 ))
ctx=$(( max_tokens + 64 ))
# Every session of the gateway is one client of each node (loopback, one peer id): room for all.
node_flags=(--max-sessions $(( max_level * 2 )) --max-sessions-per-client $(( max_level * 2 ))
            --max-length "$ctx" -t "$threads")

start_swarm() {  # NAME BATCH-TOKENS -> sets PEERS
  local name=$1 batch=$2 peers=""
  for range in "0:$a" "$a:$b" "$b:$n_layer"; do
    local log="$work/$name-${range/:/-}.log"
    "$omni" node -m "$model" --blocks "$range" --listen 127.0.0.1:0 --data-dir "$work/$name-${range/:/-}" \
      --max-batch-tokens "$batch" "${node_flags[@]}" > "$log" 2>&1 &
    pids+=($!)
    local addr; addr=$(wait_for "$log" 's/^omni node: peer \([a-z2-7]*\) listening on \([^,]*\),.*/\1@\2/p')
    peers="${peers:+$peers,}$addr"
  done
  PEERS=$peers
}
start_gateway() {  # NAME PEERS -> sets PORT
  local log="$work/$1-gateway.log"
  "$omni" gateway --model "$model" --peers "$2" --listen 127.0.0.1:0 -t "$threads" --max-sessions "$max_level" \
    --max-queue $(( max_level * 2 )) -c "$ctx" --data-dir "$work/$1-gateway" 2> "$log" &
  pids+=($!)
  PORT=$(wait_for "$log" 's/.*listening on port \([0-9]*\).*/\1/p')
}
start_swarm batched 512; start_gateway batched "$PEERS"; batched_port=$PORT
start_swarm unbatched 1; start_gateway unbatched "$PEERS"; unbatched_port=$PORT

name=$(basename "$model" .gguf)
echo "model $model ($n_layer blocks: 0:$a $a:$b $b:$n_layer); $threads thread(s) per process; levels $levels;" \
  "$max_tokens tokens per request; $per_client requests per client" >&2
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(nproc) cores;" \
  "flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_vnni|avx512_bf16|amx_tile)$' | xargs);" \
  "load: $(cut -d' ' -f1-3 /proc/loadavg); OMNI_KERNELS=${OMNI_KERNELS:-(not set)}" >&2
for rep in $(seq 1 "$repeat"); do
  for level in $levels; do
    order="batched unbatched"
    (( rep % 2 == 0 )) && order="unbatched batched"
    for server in $order; do
      port=$batched_port
      [[ $server == unbatched ]] && port=$unbatched_port
      requests=$(( level * per_client > min_requests ? level * per_client : min_requests ))
      line=$(python3 "$here/load.py" "http://127.0.0.1:$port" "$name" "$level" "$requests" "$max_tokens")
      echo "{\"server\": \"$server\", \"rep\": $rep, \"load\": \"$(cut -d' ' -f1 /proc/loadavg)\", \"result\": $line}" >> "$out"
      echo "$server rep $rep: $line" >&2
    done
  done
done
python3 "$here/summarize.py" "$out" batched unbatched
