#!/usr/bin/env bash
# Concurrency benchmark: aggregate output tokens/s and time per output token of `omni gateway` on a
# local model file against llama-server (continuous batching) on the same file and threads, at
# several numbers of concurrent streaming clients; levels alternate between the two servers, both
# up all along, so load drift on the machine hits both. Prints a table of medians over --repeat
# runs with the ratio omni / llama-server per level. See bench/concurrency/README.md.
#
# --baseline-omni BIN adds another omni build (e.g. one without batching) as a third server.
#
# usage: bench/concurrency/run.sh --omni BIN --model FILE [--llama-server BIN] [--baseline-omni BIN] [--threads 2]
#          [--levels "1 4 8 16 32"] [--max-tokens 32] [--requests-per-client 2] [--min-requests 4] [--repeat 2]
#          [--out FILE.jsonl] [-- extra omni gateway args]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
omni=""; model=""; llama=""; baseline=""; threads=2; levels="1 4 8 16 32"; max_tokens=32; per_client=2; min_requests=4; repeat=2
out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --omni) omni=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --llama-server) llama=$2; shift 2 ;;
    --baseline-omni) baseline=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --levels) levels=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    --requests-per-client) per_client=$2; shift 2 ;;
    --min-requests) min_requests=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n "$omni" && -n "$model" ]] || { echo "--omni and --model are required" >&2; exit 2; }
max_level=0; for l in $levels; do (( l > max_level )) && max_level=$l; done
out=${out:-$(mktemp -t omni-concurrency.XXXXXX.jsonl)}
: > "$out"
work=$(mktemp -d -t omni-concurrency.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_for_port() {  # LOGFILE SED-EXPR -> port
  for _ in $(seq 1 600); do
    local p; p=$(sed -n "$2" "$1" | head -1)
    [[ -n "$p" ]] && { echo "$p"; return 0; }
    sleep 0.1
  done
  echo "server did not start; log:" >&2; cat "$1" >&2; return 1
}

ctx=$(( max_tokens + 64 ))
start_omni() {  # BIN LOG [extra args] -> port
  local bin=$1 log=$2; shift 2
  "$bin" gateway --model "$model" --listen 127.0.0.1:0 --threads "$threads" --max-sessions "$max_level" \
    --max-queue $(( max_level * 2 )) -c "$ctx" "$@" 2> "$log" &
  pids+=($!)
}
start_omni "$omni" "$work/omni.log" "$@"
omni_port=$(wait_for_port "$work/omni.log" 's/.*listening on port \([0-9]*\).*/\1/p')
servers="omni"
if [[ -n "$baseline" ]]; then
  start_omni "$baseline" "$work/baseline.log"
  baseline_port=$(wait_for_port "$work/baseline.log" 's/.*listening on port \([0-9]*\).*/\1/p')
  servers="$servers baseline"
fi
if [[ -n "$llama" ]]; then
  llama_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$llama" -m "$model" --host 127.0.0.1 --port "$llama_port" -t "$threads" -tb "$threads" -np "$max_level" -cb \
    -c $(( ctx * max_level )) > "$work/llama.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$llama_port/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
  servers="$servers llama"
fi
name=$(basename "$model" .gguf)
echo "model $model; threads $threads; levels $levels; $max_tokens tokens per request; $per_client requests per client" >&2
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for rep in $(seq 1 "$repeat"); do
  for level in $levels; do
    order=$servers
    (( rep % 2 == 0 )) && order=$(echo "$servers" | tr ' ' '\n' | tac | xargs)
    for server in $order; do
      case $server in
        omni) url="http://127.0.0.1:$omni_port" ;;
        baseline) url="http://127.0.0.1:$baseline_port" ;;
        llama) url="http://127.0.0.1:$llama_port" ;;
      esac
      m=$name
      requests=$(( level * per_client > min_requests ? level * per_client : min_requests ))
      line=$(python3 "$here/load.py" "$url" "$m" "$level" "$requests" "$max_tokens")
      echo "{\"server\": \"$server\", \"rep\": $rep, \"load\": \"$(cut -d' ' -f1 /proc/loadavg)\", \"result\": $line}" >> "$out"
      echo "$server rep $rep: $line" >&2
    done
  done
done
python3 "$here/summarize.py" "$out"
