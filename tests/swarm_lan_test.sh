#!/usr/bin/env bash
# --lan: swarm members that know no bootstrap node find each other by OpenDHT's multicast peer
# discovery. Three network namespaces on one bridged segment (10.215.0.0/24, like a LAN): nodes A
# (blocks 0:2) and B (2:4) in two of them, the client in the third; nobody is given a --bootstrap
# address. `omni swarm status --lan` in the client's namespace must list both nodes, and
# `omni run --lan` must print exactly the local greedy output (F32 hidden states).
# Needs root and iproute2 (exit 77 otherwise).
set -euo pipefail
omni=$1 shared=$2
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
  echo "SKIP: the LAN discovery test needs root and iproute2 to create network namespaces"
  exit 77
fi
model=$shared/models/synth-llama-q8_0.gguf
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
tag="ol$$"
cleanup() {
  cleanup_nodes
  for ns in a b c s; do ip netns del "$tag$ns" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# A bridge in namespace s; a, b and c each hang off it by a veth pair. Multicast needs a route:
# each side's default route is its veth.
for ns in a b c s; do ip netns add "$tag$ns" || { echo "SKIP: cannot create network namespaces here"; exit 77; }; done
ip -n "${tag}s" link add br0 type bridge
ip -n "${tag}s" link set br0 up
host=1
for ns in a b c; do
  ip link add "${tag}${ns}0" type veth peer name "${tag}${ns}1"
  ip link set "${tag}${ns}0" netns "$tag$ns"
  ip link set "${tag}${ns}1" netns "${tag}s"
  ip -n "${tag}s" link set "${tag}${ns}1" master br0 up
  ip -n "$tag$ns" addr add "10.215.0.$host/24" dev "${tag}${ns}0"
  ip -n "$tag$ns" link set "${tag}${ns}0" up
  ip -n "$tag$ns" link set lo up
  ip -n "$tag$ns" route add default dev "${tag}${ns}0"
  host=$((host + 1))
done

NODE_PREFIX="ip netns exec ${tag}a" NODE_HOST=10.215.0.1 start_node a "$model" 0:2 --lan --announce-interval 2 --record-ttl 10
NODE_PREFIX="ip netns exec ${tag}b" NODE_HOST=10.215.0.2 start_node b "$model" 2:4 --lan --announce-interval 2 --record-ttl 10
echo "nodes: a 10.215.0.1 (0:2), b 10.215.0.2 (2:4); no bootstrap address anywhere"

C="ip netns exec ${tag}c"
seen=
for attempt in 1 2 3 4 5 6; do
  $C "$omni" swarm status --lan --wait-ms 3000 --json >"$tmp/status.json" 2>"$tmp/status.err" ||
    fail "swarm status --lan: $(cat "$tmp/status.err")"
  if python3 - "$tmp/status.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
sys.exit(0 if len(s["nodes"]) == 2 and s["models"] and s["models"][0]["complete"] else 1)
PY
  then
    seen=$attempt
    break
  fi
done
[ -n "$seen" ] || fail "swarm status --lan did not find both nodes: $(cat "$tmp/status.json")
--- a: $(tail -5 "$tmp/a.log")
--- b: $(tail -5 "$tmp/b.log")"
echo "swarm status --lan (client namespace): both nodes listed, model complete (attempt $seen)"

args=(-p "Once upon a time" -n 16 --temp 0 --json -t 1)
"$omni" run -m "$model" "${args[@]}" >"$tmp/local.json" 2>"$tmp/local.err" || fail "local: $(cat "$tmp/local.err")"
$C "$omni" run -m "$model" "${args[@]}" --lan --hidden-format f32 --data-dir "$tmp/client" \
  >"$tmp/lan.json" 2>"$tmp/lan.err" || fail "run --lan: $(cat "$tmp/lan.err")
--- a: $(tail -8 "$tmp/a.log")
--- b: $(tail -8 "$tmp/b.log")"
cmp -s "$tmp/local.json" "$tmp/lan.json" ||
  fail "run --lan differs from the local run: $(compare_runs "$tmp/local.json" "$tmp/lan.json")"
echo "run --lan: $(grep -m1 'route:' "$tmp/lan.err" | sed 's/^omni run: //'); output identical to local"
echo "PASS"
