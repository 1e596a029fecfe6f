# Sourced by prefill.sh and speculative.sh: three `omni node`s on 127.0.0.1 behind omni-linkemu
# links (20 Mbit/s per direction, one-way delays D_C1, D_12, D_23 to the nodes and D_C2, D_C3 from
# them to the client, in ms; run.sh's WAN), killed when the script exits.
#
# Needs: omni, linkemu, measure (measure.py's command line) and workdir set, and the D_* delays.
# start_wan_nodes MODEL SPLIT THREADS [NODE ARGS...] sets n_layer and n_embd (the model's),
# begin/end (the nodes' blocks, SPLIT "a,b,c"), peers (the client's addresses of the nodes) and
# hops (node 1's address of node 2, node 2's of node 3, for --hop-addresses).

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_link() {  # NAME PORT DELAY_MS: sets link_port
  local name=$1 port=$2 delay=$3
  "$linkemu" --listen 127.0.0.1:0 --target "127.0.0.1:$port" --delay-ms "$delay" --rate-mbit 20 \
    > "$workdir/link-$name.out" 2> "$workdir/link-$name.err" &
  pids+=($!)
  link_port=$($measure wait-line "$workdir/link-$name.out" 'listening 127\.0\.0\.1:([0-9]+)' 10)
}

start_wan_nodes() {
  local model=$1 split=$2 threads=$3; shift 3
  local b1 b2 b3 i port p_c1 p_c2 p_c3 p_12 p_23
  read -r n_layer n_embd < <($measure model-shape "$model" "$omni")
  IFS=, read -r b1 b2 b3 <<< "$split"
  (( b1 + b2 + b3 == n_layer )) ||
    { echo "$(basename "$0"): --split $split does not add up to $n_layer blocks" >&2; exit 2; }
  begin=(0 "$b1" $(( b1 + b2 ))); end=("$b1" $(( b1 + b2 )) "$n_layer")
  local ports=() ids=()
  for i in 0 1 2; do
    port=$(free_port)
    "$omni" node --model "$model" --blocks "${begin[$i]}:${end[$i]}" --listen "127.0.0.1:$port" -t "$threads" \
      --data-dir "$workdir/node$i" "$@" > "$workdir/node$i.log" 2>&1 &
    pids+=($!)
    ports+=("$port")
    ids+=("$($measure wait-line "$workdir/node$i.log" 'peer ([A-Za-z0-9]+) listening' 120)")
  done
  start_link c1 "${ports[0]}" "$D_C1"; p_c1=$link_port
  start_link c2 "${ports[1]}" "$D_C2"; p_c2=$link_port
  start_link c3 "${ports[2]}" "$D_C3"; p_c3=$link_port
  start_link 12 "${ports[1]}" "$D_12"; p_12=$link_port
  start_link 23 "${ports[2]}" "$D_23"; p_23=$link_port
  peers="${ids[0]}@127.0.0.1:$p_c1,${ids[1]}@127.0.0.1:$p_c2,${ids[2]}@127.0.0.1:$p_c3"
  hops="${ids[1]}@127.0.0.1:$p_12,${ids[2]}@127.0.0.1:$p_23"
}
