#!/usr/bin/env bash
# Pipeline across three network namespaces (one node in each, joined by veth pairs on a bridge):
# ring, chain and direct routes with F32 hidden states must reproduce the local run byte for byte,
# and ring and chain modes must work although each node reaches the next over its own interface. Needs root and
# iproute2; skipped (exit 77) otherwise. Namespaces, links and the bridge are removed on exit.
set -euo pipefail
omni=$1 shared=$2
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
  echo "SKIP: needs root and iproute2 to create network namespaces"
  exit 77
fi
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
tag="om$$"
bridge="${tag}br"
cleanup() {
  cleanup_nodes
  for i in 1 2 3; do ip netns del "${tag}n$i" 2>/dev/null || true; done
  ip link del "$bridge" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
ip link add "$bridge" type bridge || { echo "SKIP: cannot create a bridge here"; exit 77; }
ip addr add 10.213.7.1/24 dev "$bridge"
ip link set "$bridge" up
for i in 1 2 3; do
  ns="${tag}n$i"
  ip netns add "$ns"
  ip link add "${tag}h$i" type veth peer name "${tag}p$i"
  ip link set "${tag}h$i" master "$bridge" up
  ip link set "${tag}p$i" netns "$ns"
  ip -n "$ns" addr add "10.213.7.$((i + 1))/24" dev "${tag}p$i"
  ip -n "$ns" link set "${tag}p$i" up
  ip -n "$ns" link set lo up
done

model="$shared/models/synth-llama-q8_0.gguf"
peers=()
i=1
for blocks in 0:1 1:3 3:4; do
  NODE_PREFIX="ip netns exec ${tag}n$i" NODE_HOST="10.213.7.$((i + 1))" start_node "n$i" "$model" "$blocks"
  peers+=("$NODE_ADDR")
  i=$((i + 1))
done
list=$(IFS=,; echo "${peers[*]}")
args=(-p "Once upon a time" -n ${NETNS_TOKENS:-16} --temp 0 --json --top-logprobs 5 -t 1)
"$omni" run -m "$model" "${args[@]}" >"$tmp/local.json" 2>/dev/null
for route in ring chain direct; do
  "$omni" run -m "$model" "${args[@]}" --peers "$list" --route $route --hidden-format f32 --data-dir "$tmp/client" \
    >"$tmp/remote.json" 2>"$tmp/remote.err" || fail "$route: $(cat "$tmp/remote.err")"
  cmp -s "$tmp/local.json" "$tmp/remote.json" || fail "$route across namespaces differs from the local run"
  echo "$route: $(tail -1 "$tmp/remote.err")"
done
echo "PASS"
