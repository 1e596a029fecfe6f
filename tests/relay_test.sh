#!/usr/bin/env bash
# The relay (docs/protocol.md "Relay"): nodes that accept no connections register with `omni relay`
# and clients reach them as ID@relay:HOST:PORT, with TLS end to end.
#
#   relay_test.sh OMNI SHARED netns      three network namespaces: client, relay, nodes. The client
#                                        has no route to the nodes (checked: connecting straight to
#                                        a node's listener fails there, and works from the nodes'
#                                        side). Needs root and iproute2; exit 77 otherwise.
#   relay_test.sh OMNI SHARED loopback   the same on 127.0.0.1, plus the swarm: nodes announce their
#                                        relayed address in the DHT and `omni run --bootstrap` uses it.
#
# Both: `omni run --peers <relayed addresses>` (chain, direct and the default route; F32 hidden
# states) prints exactly what a local `omni run` prints; shards of a relayed node's store fetch
# through the relay (`omni fetch`, and a node started from the CID, whose output equals the local
# run's); an unknown peer id is refused by name; the relay killed mid-generation gives the client a
# clear error within 5 s; when the relay restarts on the same port the nodes register again and
# runs work again.
set -euo pipefail
omni=$1 shared=$2 mode=${3:-loopback}
if [ "$mode" = netns ] && { [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; }; then
  echo "SKIP: the netns relay test needs root and iproute2 to create network namespaces"
  exit 77
fi
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
tag="or$$"
relay_pid=
cleanup() {
  if [ -n "$relay_pid" ]; then
    kill "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
  fi
  cleanup_nodes
  if [ "$mode" = netns ]; then
    for ns in c r n; do ip netns del "$tag$ns" 2>/dev/null || true; done
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
model="$shared/models/synth-llama-q8_0.gguf"
n_layer=$("$omni" inspect "$model" --no-tensors | awk '$2 ~ /\.block_count$/ {print $4}')

# Where each part runs: in netns mode, the client (C), the relay (R) and the nodes (N) each in a
# namespace. The relay joins both: 10.214.1.1 (clients' side), 10.214.2.1 (nodes' side), and does
# not forward; the nodes' default route leads to the relay, the client has none.
C= R= N=
relay_host=127.0.0.1 relay_public_host=127.0.0.1
if [ "$mode" = netns ]; then
  for ns in c r n; do ip netns add "$tag$ns" || { echo "SKIP: cannot create network namespaces here"; exit 77; }; done
  ip link add "${tag}c0" type veth peer name "${tag}r1"
  ip link add "${tag}n0" type veth peer name "${tag}r2"
  ip link set "${tag}c0" netns "${tag}c"
  ip link set "${tag}r1" netns "${tag}r"
  ip link set "${tag}r2" netns "${tag}r"
  ip link set "${tag}n0" netns "${tag}n"
  ip -n "${tag}c" addr add 10.214.1.2/24 dev "${tag}c0"
  ip -n "${tag}r" addr add 10.214.1.1/24 dev "${tag}r1"
  ip -n "${tag}r" addr add 10.214.2.1/24 dev "${tag}r2"
  ip -n "${tag}n" addr add 10.214.2.2/24 dev "${tag}n0"
  for l in "c ${tag}c0" "r ${tag}r1" "r ${tag}r2" "n ${tag}n0"; do
    set -- $l
    ip -n "$tag$1" link set "$2" up
    ip -n "$tag$1" link set lo up
  done
  ip netns exec "${tag}r" sysctl -qw net.ipv4.ip_forward=0
  ip -n "${tag}n" route add default via 10.214.2.1
  C="ip netns exec ${tag}c" R="ip netns exec ${tag}r" N="ip netns exec ${tag}n"
  relay_host=10.214.2.1 relay_public_host=10.214.1.1
fi

# start_relay [PORT]: starts the relay (any free port on loopback, 7100 in its namespace), sets
# RELAY_PORT.
start_relay() {
  local port=${1:-0} listen
  if [ "$mode" = netns ]; then
    listen="0.0.0.0:${1:-7100}"
    $R "$omni" relay --listen "$listen" --announce "$relay_public_host:${1:-7100}" --data-dir "$tmp/relay" \
      --keepalive 2 >>"$tmp/relay.log" 2>&1 &
  else
    $R "$omni" relay --listen "127.0.0.1:$port" --data-dir "$tmp/relay" --keepalive 2 >>"$tmp/relay.log" 2>&1 &
  fi
  relay_pid=$!
  local starts=$(grep -c "listening on" "$tmp/relay.log" 2>/dev/null || true)
  for _ in $(seq 1 200); do
    [ "$(grep -c "listening on" "$tmp/relay.log" 2>/dev/null || true)" -gt "${starts:-0}" ] && break
    kill -0 "$relay_pid" 2>/dev/null || fail "relay exited: $(cat "$tmp/relay.log")"
    sleep 0.05
  done
  RELAY_PORT=$(sed -n 's/^omni relay: peer [a-z2-7]* listening on .*:\([0-9]*\)$/\1/p' "$tmp/relay.log" | tail -1)
  [ -n "$RELAY_PORT" ] || fail "relay did not start: $(cat "$tmp/relay.log")"
}

# wait_registered NAME COUNT: waits until node NAME has registered COUNT times; sets RELAYED_ADDR.
wait_registered() {
  local name=$1 count=$2
  for _ in $(seq 1 300); do
    if [ "$(grep -c ' reachable as ' "$tmp/$name.log" 2>/dev/null || true)" -ge "$count" ]; then
      RELAYED_ADDR=$(sed -n 's/^omni node: peer [a-z2-7]* reachable as \([^,]*\),.*/\1/p' "$tmp/$name.log" | tail -1)
      return 0
    fi
    sleep 0.05
  done
  fail "node $name did not register with the relay ($count): $(cat "$tmp/$name.log")"
}

# start_relayed_node NAME BLOCKS [args...]: a node that registers with the relay.
start_relayed_node() {
  local name=$1 blocks=$2
  shift 2
  $N "$omni" node -m "$model" --blocks "$blocks" --relay "$relay_host:$RELAY_PORT" --data-dir "$tmp/$name" -t 1 "$@" \
    >"$tmp/$name.log" 2>&1 &
  node_pids+=($!)
  wait_registered "$name" 1
}

start_relay
# Node a also listens directly (in netns mode on its namespace's address: the listener is there,
# only the route is not).
if [ "$mode" = netns ]; then start_relayed_node a 0:1 --listen 0.0.0.0:7001; else start_relayed_node a 0:1 --listen 127.0.0.1:0; fi
a=$RELAYED_ADDR
start_relayed_node b 1:3; b=$RELAYED_ADDR
start_relayed_node c 3:4; c=$RELAYED_ADDR
peers="$a,$b,$c"
echo "relay on port $RELAY_PORT; nodes: $peers"
case "$a" in *@relay:$relay_public_host:$RELAY_PORT) ;; *) fail "node a's relayed address is $a" ;; esac

if [ "$mode" = netns ]; then
  direct="${a%@*}@10.214.2.2:7001"
  if $C "$omni" run -m "$model" -p hi -n 1 --peers "$direct" --data-dir "$tmp/client" --timeout 5 >/dev/null 2>"$tmp/direct.err"; then
    fail "the client reached node a directly: the namespaces do not separate them"
  fi
  echo "direct from the client's namespace: $(tail -1 "$tmp/direct.err")"
  $N "$omni" run -m "$model" -p hi -n 1 --peers "$direct,$b,$c" --data-dir "$tmp/insider" >/dev/null 2>"$tmp/inside.err" ||
    fail "node a's listener does not work from its own side: $(cat "$tmp/inside.err")"
fi

args=(-p "Once upon a time" -n ${RELAY_TOKENS:-16} --temp 0 --json --top-logprobs 5 -t 1)
"$omni" run -m "$model" "${args[@]}" >"$tmp/local.json" 2>"$tmp/local.err" || fail "local run: $(cat "$tmp/local.err")"
for route in chain direct default; do
  route_args=(--route "$route")
  [ "$route" = default ] && route_args=()
  $C "$omni" run -m "$model" "${args[@]}" --peers "$peers" "${route_args[@]}" --hidden-format f32 \
    --data-dir "$tmp/client" >"$tmp/remote.json" 2>"$tmp/remote.err" || fail "$route through the relay: $(cat "$tmp/remote.err")"
  cmp -s "$tmp/local.json" "$tmp/remote.json" ||
    fail "$route through the relay differs from the local run: $(compare_runs "$tmp/local.json" "$tmp/remote.json")"
  echo "$route route through the relay: identical to local; $(tail -1 "$tmp/remote.err" | sed 's/^omni run: //')"
done
grep -q "relaying client" "$tmp/relay.log" || fail "the relay relayed nothing: $(cat "$tmp/relay.log")"

# An id nobody registered: the relay says so, by name.
nobody=$(python3 -c 'import os, base64; print(base64.b32encode(bytes([0x12, 0x20]) + os.urandom(32)).decode().lower().rstrip("="))')
if $C "$omni" run -m "$model" -p hi -n 1 --peers "$nobody@relay:$relay_public_host:$RELAY_PORT" --data-dir "$tmp/client" \
  >/dev/null 2>"$tmp/nobody.err"; then
  fail "a run through an unregistered id succeeded"
fi
grep -q "the relay says: no node with peer id $nobody is registered at this relay" "$tmp/nobody.err" ||
  fail "unknown id: unclear error: $(cat "$tmp/nobody.err")"
echo "unknown id: $(tail -1 "$tmp/nobody.err")"

# Shards through the relay: node s (behind the relay) shares the model from its store; `omni fetch`
# on the client's side fetches every blob through the relay (TLS end to end, s's id checked), the
# blobs verify and equal s's, and a node started from the CID with only s's relayed address as
# --peers fetches its shards the same way and serves: a run through it prints the local output.
start_relayed_node s "0:$n_layer" --share --store "$tmp/store.s"
s_addr=$RELAYED_ADDR
cid=$(sed -n 's/^omni node: sharing model \([a-z0-9]*\) .*/\1/p' "$tmp/s.log")
[[ $cid == bafkrei* ]] || fail "node s did not print the model CID: $(cat "$tmp/s.log")"
relayed_before=$(grep -c "relaying client" "$tmp/relay.log")
$C "$omni" fetch "$cid" --peers "$s_addr" --store "$tmp/store.f" --data-dir "$tmp/fetcher" >"$tmp/fetch.out" 2>"$tmp/fetch.err" ||
  fail "fetch through the relay: $(cat "$tmp/fetch.err")"
[ "$(grep -c "relaying client" "$tmp/relay.log")" -gt "$relayed_before" ] || fail "the fetch did not go through the relay"
"$omni" shard --verify "$cid" --store "$tmp/store.f" >/dev/null 2>"$tmp/verify.err" ||
  fail "the blobs fetched through the relay do not verify: $(cat "$tmp/verify.err")"
python3 - "$tmp/store.s/blobs" "$tmp/store.f/blobs" <<'PY' || fail "the blobs fetched through the relay differ from node s's"
import filecmp, os, sys
src, got = sys.argv[1:]
names = sorted(os.listdir(got))
assert names == sorted(os.listdir(src)), (names, sorted(os.listdir(src)))
for n in names: assert filecmp.cmp(os.path.join(src, n), os.path.join(got, n), shallow=False), n
print(f"{len(names)} blobs fetched through the relay, identical to node s's")
PY
echo "fetch through the relay: $(grep -m1 '^omni fetch: fetched' "$tmp/fetch.err" | sed 's/^omni fetch: //')"
NODE_PREFIX=$C start_node d "$cid" "0:$n_layer" --store "$tmp/store.d" --peers "$s_addr"
d_addr=$NODE_ADDR
grep -q "fetched .* chunks" "$tmp/d.log" || fail "node d did not report its fetch: $(cat "$tmp/d.log")"
$C "$omni" run -m "$model" "${args[@]}" --peers "$d_addr" --hidden-format f32 --data-dir "$tmp/client" \
  >"$tmp/cid.json" 2>"$tmp/cid.err" || fail "run through the node started from the CID: $(cat "$tmp/cid.err")"
cmp -s "$tmp/local.json" "$tmp/cid.json" ||
  fail "the node started from the CID differs from the local run: $(compare_runs "$tmp/local.json" "$tmp/cid.json")"
echo "node started from $cid through the relay: output identical to local"
kill "$NODE_PID" 2>/dev/null || true

# The relay dies mid-generation: a clear error within 5 s, naming the relayed node.
$C "$omni" run -m "$model" -p "Once upon a time" -n 2000 --ignore-eos --temp 0 -t 1 --route direct --peers "$peers" \
  --data-dir "$tmp/client" >"$tmp/long.out" 2>"$tmp/long.err" &
run_pid=$!
for _ in $(seq 1 200); do [ -s "$tmp/long.out" ] && break; sleep 0.02; done
[ -s "$tmp/long.out" ] || fail "generation through the relay did not start: $(cat "$tmp/long.err")"
kill -9 "$relay_pid"
wait "$relay_pid" 2>/dev/null || true
relay_pid=
t0=$(date +%s%N)
rc=0
wait "$run_pid" || rc=$?
t1=$(date +%s%N)
[ "$rc" -ne 0 ] || fail "the run finished although the relay was killed"
ms=$(((t1 - t0) / 1000000))
[ "$ms" -lt 5000 ] || fail "the client took $ms ms to notice the relay's death"
grep -q "connection lost" "$tmp/long.err" || fail "relay killed: unclear error: $(cat "$tmp/long.err")"
grep -q "relay:$relay_public_host:$RELAY_PORT" "$tmp/long.err" || fail "relay killed: the error does not name the relayed address: $(cat "$tmp/long.err")"
echo "relay killed mid-generation: noticed in $ms ms: $(tail -1 "$tmp/long.err")"

# Restart on the same port: every node registers again, and runs work again.
start_relay "$RELAY_PORT"
for n in a b c; do wait_registered $n 2; done
grep -q "reconnecting in" "$tmp/b.log" || fail "node b did not report the lost relay: $(cat "$tmp/b.log")"
$C "$omni" run -m "$model" "${args[@]}" --peers "$peers" --route chain --hidden-format f32 --data-dir "$tmp/client" \
  >"$tmp/again.json" 2>"$tmp/again.err" || fail "after the relay restarted: $(cat "$tmp/again.err")"
cmp -s "$tmp/local.json" "$tmp/again.json" || fail "after the relay restarted the output differs"
echo "relay restarted: nodes registered again; output identical to local"

if [ "$mode" = loopback ]; then
  # The swarm: relayed nodes announce ID@relay:... in the DHT; a client with only --bootstrap uses it.
  cleanup_nodes
  start_bootstrap
  boot=$BOOT_ADDR
  for spec in s1:0:1 s2:1:3 s3:3:4; do
    IFS=: read -r name from to <<<"$spec"
    start_relayed_node "$name" "$from:$to" --bootstrap "$boot" --announce-interval 5 --record-ttl 15
  done
  relayed_before=$(grep -c "relaying client" "$tmp/relay.log")
  "$omni" run -m "$model" "${args[@]}" --bootstrap "$boot" --hidden-format f32 --data-dir "$tmp/client" \
    >"$tmp/swarm.json" 2>"$tmp/swarm.err" || fail "swarm run through the relay: $(cat "$tmp/swarm.err")"
  cmp -s "$tmp/local.json" "$tmp/swarm.json" ||
    fail "swarm run through the relay differs: $(compare_runs "$tmp/local.json" "$tmp/swarm.json")"
  route=$(grep -m1 'route:' "$tmp/swarm.err" | sed 's/^omni run: //')
  [ "$(grep -o "@relay:127.0.0.1:$RELAY_PORT" <<<"$route" | wc -l)" -eq 3 ] || fail "the swarm route does not use the relay: $route"
  [ "$(grep -c "relaying client" "$tmp/relay.log")" -gt "$relayed_before" ] || fail "the swarm run did not go through the relay"
  echo "swarm through the relay: $route; output identical to local"

  # Out of file descriptors (a hard limit of 16): the relay refuses what it cannot accept, keeps
  # running, and serves again once connections close.
  (ulimit -n 16; exec "$omni" relay --listen 127.0.0.1:0 --data-dir "$tmp/relay2" >"$tmp/relay2.out" 2>"$tmp/relay2.log") &
  small_pid=$!
  node_pids+=("$small_pid")
  for _ in $(seq 1 100); do grep -q "listening on" "$tmp/relay2.out" && break; sleep 0.05; done
  small_port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/relay2.out")
  [ -n "$small_port" ] || fail "the fd-limited relay did not start: $(cat "$tmp/relay2.log")"
  reply=$(python3 - "$small_port" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(24)]
time.sleep(1.5)
for s in held: s.close()
time.sleep(1.5)
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"hello\n")
print(s.recv(200).decode().strip())
PY
  ) || fail "the fd-limited relay: $(cat "$tmp/relay2.log")"
  kill -0 "$small_pid" 2>/dev/null || fail "the relay exited when out of file descriptors: $(cat "$tmp/relay2.log")"
  grep -q "accepting a connection failed: .*Too many open files; retrying" "$tmp/relay2.log" ||
    fail "the fd-limited relay did not report the failure: $(cat "$tmp/relay2.log")"
  case "$reply" in "ERR not a relay request"*) ;; *) fail "after running out of descriptors the relay replied '$reply'" ;; esac
  echo "out of file descriptors: the relay kept running and answered again ($reply)"
fi
echo "PASS"
