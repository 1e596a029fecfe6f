#!/usr/bin/env bash
# Pipeline benchmark: per-token generation latency of a model split over 3 nodes "in different
# cities", through userspace link emulators (omni-linkemu), against the limit
#   compute of one token (measured by the nodes and the client in the same run)
#   + propagation around the route + serialization of the hidden states.
# Runs omni's ring, chain and direct routes (--repeat times each) and llama.cpp's RPC backend.
# See bench/pipeline/README.md for the topology, what is measured and how to read the table.
#
# usage: bench/pipeline/run.sh [--model FILE] [--omni BIN] [--linkemu BIN] [--llama-bin DIR]
#          [--tokens N] [--split A,B,C] [--rate-mbit R] [--threads T] [--repeat N] [--workdir DIR]
#          [--routes "ring chain direct"] [--skip-omni] [--skip-llama]
# Environment: D_C1 D_12 D_23 D_C2 D_C3 (one-way delays, ms), HIDDEN_BYTES (per token per hop),
#   OMNI_NODE_CMD / OMNI_CLIENT_CMD / NODE_ID_REGEX (how to start nodes and the client; see below).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
measure="python3 $here/measure.py"

model=/tmp/tl-q4.gguf
omni=""
linkemu=""
llama_bin=""
tokens=24
split=8,7,7
rate_mbit=20
threads=2
repeat=3
routes="ring chain direct"
workdir=""
run_omni=1
run_llama=1
prompt="Once upon a time"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --omni) omni=$2; shift 2 ;;
    --linkemu) linkemu=$2; shift 2 ;;
    --llama-bin) llama_bin=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --split) split=$2; shift 2 ;;
    --rate-mbit) rate_mbit=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --routes) routes=$2; shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    --skip-omni) run_omni=0; shift ;;
    --skip-llama) run_llama=0; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# One-way delays in ms. A line of cities: client - n1 10 ms - n2 25 ms - n3 50 ms along the chain;
# the client's own paths to n2 and n3 (used by the direct route, the ring's return from n3, and
# llama.cpp) are shorter than going through the chain, as direct internet paths usually are.
D_C1=${D_C1:-10}; D_12=${D_12:-25}; D_23=${D_23:-50}; D_C2=${D_C2:-30}; D_C3=${D_C3:-60}

find_first() { for f in "$@"; do [[ -x $f ]] && { echo "$f"; return; }; done; }
[[ -n $omni ]] || omni=$(find_first "$repo/build-link/apps/omni/omni" "$repo/build/apps/omni/omni")
[[ -n $linkemu ]] || linkemu=$(find_first "$repo/build-link/src/linkemu/omni-linkemu" "$repo/build/src/linkemu/omni-linkemu")
[[ -x $omni ]] || { echo "run.sh: no omni binary (build the repository or pass --omni)" >&2; exit 1; }
[[ -x $linkemu ]] || { echo "run.sh: no omni-linkemu binary (pass --linkemu)" >&2; exit 1; }
if [[ $run_llama == 1 && ( -z $llama_bin || ! -x $llama_bin/rpc-server ) ]]; then
  echo "run.sh: no llama.cpp RPC build given (--llama-bin DIR with rpc-server and llama-cli): skipping llama.cpp" >&2
  run_llama=0
fi
if [[ ! -f $model ]]; then
  echo "== synthesizing $model" >&2
  "$omni" synth --shape tinyllama-1.1b --type q4_0 --seed 1 "$model" >&2
fi

[[ -n $workdir ]] || workdir=$(mktemp -d /tmp/omni-pipeline.XXXXXX)
mkdir -p "$workdir"
results=$workdir/results.txt
: > "$results"
record() { echo "$1 $2" >> "$results"; }

read -r n_layer n_embd < <($measure model-shape "$model" "$omni")
IFS=, read -r b1 b2 b3 <<< "$split"
(( b1 + b2 + b3 == n_layer )) || { echo "run.sh: --split $split does not add up to the model's $n_layer blocks" >&2; exit 2; }
hidden_bytes=${HIDDEN_BYTES:-$(( n_embd * 2 ))}  # f16 hidden state of one token
begin=(0 $b1 $(( b1 + b2 ))); end=($b1 $(( b1 + b2 )) $n_layer)
record rate_mbit "$rate_mbit"; record hidden_bytes "$hidden_bytes"; record split "$split"; record tokens "$tokens"
record threads "$threads"; record model "$(basename "$model")"
record d_c1 "$D_C1"; record d_12 "$D_12"; record d_23 "$D_23"; record d_c2 "$D_C2"; record d_c3 "$D_C3"

# Every process this script starts, stopped on exit (by pid: nothing else is touched).
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_link NAME TARGET_PORT DELAY_MS [extra omni-linkemu flags]: sets $link_port and $link_pid.
start_link() {
  local name=$1 target=$2 delay=$3; shift 3
  "$linkemu" --listen 127.0.0.1:0 --target "127.0.0.1:$target" --delay-ms "$delay" --rate-mbit "$rate_mbit" \
    "$@" > "$workdir/link-$name.out" 2> "$workdir/link-$name.err" &
  link_pid=$!
  pids+=("$link_pid")
  link_port=$($measure wait-line "$workdir/link-$name.out" 'listening 127\.0\.0\.1:([0-9]+)' 10)
}

echo "== model $model: $n_layer blocks, n_embd $n_embd; split $split; $tokens tokens; work dir $workdir" >&2

# ---------------------------------------------------------------------------------------------------
# llama.cpp: rpc-server per node; llama-cli on the client offloads all layers to the 3 RPC devices.
# --tensor-split is over n_layer + 1 layers (the output layer counts as the last), so blocks
# b1,b2,b3 are -ts b1,b2,b3+1: node 3 also runs the output layer; token embeddings stay on the
# client (llama.cpp keeps them on the CPU). Weights are uploaded through the links unshaped
# (--start-unshaped), and shaping starts when llama-cli prints "generate:" (after load and warm-up).
if [[ $run_llama == 1 ]]; then
  llama_args=(-m "$model" -p "$prompt" -n "$tokens" --temp 0 --seed 1 -no-cnv --ignore-eos -t "$threads")
  echo "== llama.cpp on one machine (compute per token)" >&2
  $measure stamp --times "$workdir/llama-local.times" -- "$llama_bin/llama-cli" "${llama_args[@]}" \
    > "$workdir/llama-local.out" 2> "$workdir/llama-local.err"
  read -r med mean count rest < <($measure gaps "$workdir/llama-local.times" 2)
  record llama_compute "$med"; record llama_compute_mean "$mean"

  rpc_addrs=(); link_pids=()
  delays=("$D_C1" "$D_C2" "$D_C3")
  for i in 0 1 2; do
    port=$(free_port)
    stdbuf -oL "$llama_bin/rpc-server" -H 127.0.0.1 -p "$port" > "$workdir/rpc$i.out" 2>&1 &
    pids+=($!)
    $measure wait-line "$workdir/rpc$i.out" 'Starting RPC server' 20 > /dev/null
    start_link "rpc$i" "$port" "${delays[$i]}" --start-unshaped
    rpc_addrs+=("127.0.0.1:$link_port"); link_pids+=("$link_pid")
  done
  echo "== llama.cpp RPC over the links: --rpc $(IFS=,; echo "${rpc_addrs[*]}") -ts $b1,$b2,$(( b3 + 1 ))" >&2
  $measure stamp --times "$workdir/llama-rpc.times" --trigger 'generate: n_ctx' --then "kill -USR1 ${link_pids[*]}" -- \
    "$llama_bin/llama-cli" "${llama_args[@]}" --rpc "$(IFS=,; echo "${rpc_addrs[*]}")" -ngl 99 -ts "$b1,$b2,$(( b3 + 1 ))" \
    > "$workdir/llama-rpc.out" 2> "$workdir/llama-rpc.err"
  read -r med mean count p10 p90 < <($measure gaps "$workdir/llama-rpc.times" 2)
  record llama_rpc_median "$med"; record llama_rpc_mean "$mean"; record llama_rpc_p10 "$p10"; record llama_rpc_p90 "$p90"
  grep -E 'RPC\[.*model buffer size|eval time' "$workdir/llama-rpc.err" >&2 || true
  for p in "${link_pids[@]}"; do kill "$p" 2>/dev/null || true; done
fi

# ---------------------------------------------------------------------------------------------------
# omni: one `omni node` per block range (each with its own identity: HOME per node), links as above
# plus node-to-node links n1->n2 and n2->n3 for the chain route.
#   OMNI_NODE_CMD: started with {MODEL} {BEGIN} {END} {PORT} {THREADS} {DATA_DIR} substituted; must
#     print its peer id where NODE_ID_REGEX (group 1) finds it (stdout or stderr).
#   OMNI_CLIENT_CMD: {MODEL} {PEERS} {HOPS} {ROUTE} {TOKENS} {THREADS} {PROMPT} {DATA_DIR}; must
#     stream one line per generated token to stdout (stdbuf -oL: `omni run --json` flushes only at
#     the end when stdout is a pipe), and end with omni run's summary line on stderr (the nodes'
#     and the head's compute per token).
OMNI_NODE_CMD=${OMNI_NODE_CMD:-"$omni node --model {MODEL} --blocks {BEGIN}:{END} --listen 127.0.0.1:{PORT} -t {THREADS} --data-dir {DATA_DIR}"}
OMNI_CLIENT_CMD=${OMNI_CLIENT_CMD:-"stdbuf -oL $omni run --model {MODEL} --peers {PEERS} --hop-addresses {HOPS} --route {ROUTE} --hidden-format f16 --lookup off -p '{PROMPT}' -n {TOKENS} --temp 0 --ignore-eos --json -t {THREADS} --data-dir {DATA_DIR}"}
NODE_ID_REGEX=${NODE_ID_REGEX:-'peer ([A-Za-z0-9]+) listening'}

fill() {  # fill TEMPLATE KEY=VALUE...: substitutes {KEY}
  local s=$1; shift
  for kv in "$@"; do s=${s//\{${kv%%=*}\}/${kv#*=}}; done
  echo "$s"
}

if [[ $run_omni == 1 ]]; then
  # For reference: every block on one machine with the same threads.
  echo "== omni on one machine (compute per token)" >&2
  $measure stamp --times "$workdir/omni-local.times" -- stdbuf -oL "$omni" run -m "$model" -p "$prompt" \
    -n "$tokens" --temp 0 --ignore-eos --json --lookup off -t "$threads" > "$workdir/omni-local.out" 2> "$workdir/omni-local.err"
  read -r med mean count rest < <($measure gaps "$workdir/omni-local.times" 1)
  record omni_local "$med"

  node_ports=(); node_ids=()
  for i in 0 1 2; do
    port=$(free_port)
    mkdir -p "$workdir/node$i"
    cmd=$(fill "$OMNI_NODE_CMD" MODEL="$model" BEGIN="${begin[$i]}" END="${end[$i]}" PORT="$port" \
            THREADS="$threads" DATA_DIR="$workdir/node$i")
    # HOME too, for a node command without --data-dir: each node needs its own identity.
    HOME=$workdir/node$i bash -c "exec $cmd" > "$workdir/node$i.log" 2>&1 &
    pids+=($!)
    node_ports+=("$port")
    id=$($measure wait-line "$workdir/node$i.log" "$NODE_ID_REGEX" 120) ||
      { echo "run.sh: node $i did not start; see $workdir/node$i.log" >&2; tail -3 "$workdir/node$i.log" >&2; exit 1; }
    node_ids+=("$id")
  done
  start_link c1 "${node_ports[0]}" "$D_C1"; p_c1=$link_port
  start_link c2 "${node_ports[1]}" "$D_C2"; p_c2=$link_port
  start_link c3 "${node_ports[2]}" "$D_C3"; p_c3=$link_port
  start_link 12 "${node_ports[1]}" "$D_12"; p_12=$link_port
  start_link 23 "${node_ports[2]}" "$D_23"; p_23=$link_port
  # The client reaches every node over its own links; the nodes reach each other over theirs
  # (--hop-addresses), so the ring goes c->n1->n2->n3->c and the chain c->n1->n2->n3->n2->n1->c.
  peers="${node_ids[0]}@127.0.0.1:$p_c1,${node_ids[1]}@127.0.0.1:$p_c2,${node_ids[2]}@127.0.0.1:$p_c3"
  hops="${node_ids[1]}@127.0.0.1:$p_12,${node_ids[2]}@127.0.0.1:$p_23"
  for k in $(seq 1 "$repeat"); do
    for route in $routes; do
      cmd=$(fill "$OMNI_CLIENT_CMD" MODEL="$model" PEERS="$peers" HOPS="$hops" ROUTE="$route" TOKENS="$tokens" \
              THREADS="$threads" PROMPT="$prompt" DATA_DIR="$workdir/client")
      echo "== omni $route, run $k: $cmd" >&2
      if $measure stamp --times "$workdir/omni-$route-$k.times" -- bash -c "exec $cmd" \
          > "$workdir/omni-$route-$k.out" 2> "$workdir/omni-$route-$k.err"; then
        read -r med mean count p10 p90 < <($measure gaps "$workdir/omni-$route-$k.times" 1)
        read -r nodes head < <($measure compute "$workdir/omni-$route-$k.err")
        echo "run $route $k $med $mean $p10 $p90 $nodes $head" >> "$results"
        tail -1 "$workdir/omni-$route-$k.err" >&2
      else
        echo "run.sh: omni $route failed; see $workdir/omni-$route-$k.err" >&2
        tail -5 "$workdir/omni-$route-$k.err" >&2 || true
      fi
    done
  done
fi

echo
$measure report "$results"
