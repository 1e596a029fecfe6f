#!/usr/bin/env bash
# A node behind a home router maps its port there (omni node --upnp) and a client outside reaches it
# directly. Three network namespaces:
#
#   lan (the node) 192.168.77.2  --  router: 192.168.77.1 | 11.77.0.1  --  wan (the client) 11.77.0.2
#
# The router masquerades the LAN (nftables) and runs miniupnpd (Debian's miniupnpd-nftables) with
# UPnP-IGD and NAT-PMP; the client has no route into the LAN, so only a mapping on the router can
# let it in. Checked: before the node asks, the router's port refuses; the node prints the router's
# external address with "port mapped by UPnP-IGD"; the client's `omni run --peers` through it prints
# the local run's greedy output; after the node stops, the router's DNAT rule is gone. Then again
# with the router's UPnP off: the node maps by NAT-PMP and the client is served the same way.
# Needs root, iproute2, nft and miniupnpd (exit 77 with the reason otherwise).
set -euo pipefail
omni=$1 shared=$2
if [ "$(id -u)" != 0 ]; then echo "SKIP: the UPnP test needs root to create network namespaces"; exit 77; fi
for tool in ip nft miniupnpd; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (apt-get install iproute2 nftables miniupnpd-nftables)"; exit 77; }
done
model=$shared/models/synth-llama-q8_0.gguf
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
tag="up$$"
upnpd=
cleanup() {
  cleanup_nodes
  [ -n "$upnpd" ] && kill "$upnpd" 2>/dev/null || true
  for ns in lan r wan; do ip netns del "$tag$ns" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
for ns in lan r wan; do ip netns add "$tag$ns"; ip -n "$tag$ns" link set lo up; done
ip link add "${tag}a" type veth peer name "${tag}b"
ip link set "${tag}a" netns "${tag}lan"; ip link set "${tag}b" netns "${tag}r"
ip link add "${tag}c" type veth peer name "${tag}d"
ip link set "${tag}c" netns "${tag}r"; ip link set "${tag}d" netns "${tag}wan"
ip -n "${tag}lan" addr add 192.168.77.2/24 dev "${tag}a"; ip -n "${tag}lan" link set "${tag}a" up
ip -n "${tag}lan" route add default via 192.168.77.1
ip -n "${tag}r" addr add 192.168.77.1/24 dev "${tag}b"; ip -n "${tag}r" link set "${tag}b" up
ip -n "${tag}r" addr add 11.77.0.1/24 dev "${tag}c"; ip -n "${tag}r" link set "${tag}c" up
ip -n "${tag}wan" addr add 11.77.0.2/24 dev "${tag}d"; ip -n "${tag}wan" link set "${tag}d" up
ip netns exec "${tag}r" sysctl -qw net.ipv4.ip_forward=1
# The chains miniupnpd adds its rules to (as its nft_init.sh makes them), and the LAN's masquerade.
ip netns exec "${tag}r" nft -f - <<NFT
table inet filter {
  chain miniupnpd {
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "${tag}b" accept
    jump miniupnpd
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
    oifname "${tag}c" masquerade
  }
}
NFT

# start_router UPNP(yes|no): miniupnpd on the router, NAT-PMP always on.
start_router() {
  [ -n "$upnpd" ] && { kill "$upnpd"; wait "$upnpd" 2>/dev/null || true; }
  cat >"$tmp/miniupnpd.conf" <<CONF
ext_ifname=${tag}c
listening_ip=${tag}b
http_port=0
enable_upnp=$1
enable_natpmp=yes
secure_mode=yes
system_uptime=yes
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b
upnp_table_name=filter
upnp_nat_table_name=filter
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 192.168.77.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
CONF
  ip netns exec "${tag}r" miniupnpd -f "$tmp/miniupnpd.conf" -d -P "$tmp/miniupnpd.pid" >"$tmp/miniupnpd-$1.log" 2>&1 &
  upnpd=$!
  for _ in $(seq 50); do
    grep -q "Listening for NAT-PMP" "$tmp/miniupnpd-$1.log" 2>/dev/null && return 0
    kill -0 "$upnpd" 2>/dev/null || fail "miniupnpd exited: $(cat "$tmp/miniupnpd-$1.log")"
    sleep 0.1
  done
  fail "miniupnpd did not start: $(cat "$tmp/miniupnpd-$1.log")"
}

# The router's port forwards (miniupnpd's DNAT rules).
dnat_rules() { ip netns exec "${tag}r" nft list chain inet filter prerouting_miniupnpd; }

"$omni" run -m "$model" -p "Once upon a time" -n 6 --temp 0 >"$tmp/local.txt" 2>/dev/null

# through METHOD UPNP: a node in the LAN maps its port by METHOD; the client outside is served.
through() {
  local method=$1
  start_router "$2"
  NODE_PREFIX="ip netns exec ${tag}lan" NODE_HOST=0.0.0.0 start_node "node-$method" "$model" 0:4 --upnp
  local log=$tmp/node-$method.log mapped=
  for _ in $(seq 100); do
    mapped=$(sed -n 's/^omni node: peer [a-z2-7]* reachable as \([^ ]*\) (port mapped by \([A-Za-z-]*\)).*/\1 \2/p' "$log")
    [ -n "$mapped" ] && break
    grep -q "no port mapping" "$log" && fail "$method: $(grep "no port mapping" "$log")"
    sleep 0.1
  done
  [ -n "$mapped" ] || fail "$method: the node reported no mapping: $(cat "$log")"
  local address=${mapped% *} by=${mapped#* }
  [ "$by" = "$method" ] || fail "mapped by $by, expected $method"
  [[ $address == *@11.77.0.1:* ]] || fail "$method: mapped address $address is not the router's external one"
  ip netns exec "${tag}wan" "$omni" run -m "$model" --peers "$address" -p "Once upon a time" -n 6 --temp 0 \
    --data-dir "$tmp/client" >"$tmp/remote-$method.txt" 2>"$tmp/remote-$method.err" ||
    fail "$method: the client outside could not use the node at $address: $(cat "$tmp/remote-$method.err")"
  cmp -s "$tmp/local.txt" "$tmp/remote-$method.txt" || fail "$method: the remote run differs from the local one"
  local port=${address##*:}
  [[ $(dnat_rules) == *"dport $port "* ]] ||
    fail "$method: no DNAT rule for port $port on the router: $(ip netns exec "${tag}r" nft list ruleset)"
  cleanup_nodes
  for _ in $(seq 50); do
    [[ $(dnat_rules) == *"dport $port "* ]] || break
    sleep 0.1
  done
  [[ $(dnat_rules) != *"dport $port "* ]] || fail "$method: the mapping of port $port outlived the node"
  echo "$method: mapped $address, served the client outside, removed on exit"
}

# Without a mapping the router's port is closed to the outside.
if ip netns exec "${tag}wan" timeout 3 bash -c 'exec 3<>/dev/tcp/11.77.0.1/7000' 2>/dev/null; then
  fail "the router's port 7000 is open before any mapping"
fi
through UPnP-IGD yes
through NAT-PMP no
echo PASS
