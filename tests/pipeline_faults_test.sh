#!/usr/bin/env bash
# Pipeline faults: a node killed mid-generation gives the client a clear error within 5 s (ring,
# with the middle or the last node killed, chain and direct routes); a stopped (SIGSTOP) node of a
# ring is reported after --timeout and named; --hop-addresses are what the nodes dial; a wrong peer
# id is refused; --allow-peers refuses an unlisted client and admits a listed one; an identity key
# with loose permissions is refused; a full node says so.
set -euo pipefail
omni=$1 shared=$2
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
trap 'cleanup_nodes; rm -rf "$tmp"' EXIT
model="$shared/models/synth-llama-q8_0.gguf"

# The peer id of a data directory's key, computed independently of omni (openssl + python):
# base32(0x12 0x20 || sha256(raw Ed25519 public key)), lower case, unpadded.
peer_id_of() {
  openssl pkey -in "$1/identity.pem" -pubout -outform DER | tail -c 32 | python3 -c '
import sys, hashlib, base64
raw = sys.stdin.buffer.read()
print(base64.b32encode(bytes([0x12, 0x20]) + hashlib.sha256(raw).digest()).decode().lower().rstrip("="))'
}

start_node a "$model" 0:1; a=$NODE_ADDR
start_node b "$model" 1:3; b=$NODE_ADDR; b_pid=$NODE_PID
start_node c "$model" 3:4; c=$NODE_ADDR
[ "${a%@*}" = "$(peer_id_of "$tmp/a")" ] || fail "printed id ${a%@*} is not the key's id $(peer_id_of "$tmp/a")"
[ "$(stat -c %a "$tmp/a/identity.pem")" = 600 ] || fail "key file mode $(stat -c %a "$tmp/a/identity.pem")"

# Wrong peer id: the id of node c given for node a's address.
if "$omni" run -m "$model" -p hi -n 2 --peers "${c%@*}@${a#*@},$b,$c" --data-dir "$tmp/client" 2>"$tmp/err.txt"; then
  fail "wrong peer id accepted"
fi
grep -q "peer id mismatch: expected ${c%@*} but the peer presented ${a%@*}" "$tmp/err.txt" || fail "mismatch message: $(cat "$tmp/err.txt")"

# Trust on first use: plain host:port works and prints the id.
"$omni" run -m "$model" -p hi -n 2 --temp 0 --peers "${a#*@},${b#*@},${c#*@}" --data-dir "$tmp/client" >/dev/null 2>"$tmp/err.txt" ||
  fail "host:port peers: $(cat "$tmp/err.txt")"
grep -q "is ${a%@*} (trust on first use" "$tmp/err.txt" || fail "TOFU line missing: $(cat "$tmp/err.txt")"

# Kill a node mid-generation: the client must fail clearly within 5 s. The victim serves blocks
# 1:3 (the middle of a,victim,c) or 3:4 (the end of a,b,victim).
kill_mid_generation() {
  local route=$1 victim_name=$2 blocks=$3
  start_node "$victim_name" "$model" "$blocks"; local victim=$NODE_ADDR victim_pid=$NODE_PID
  local list="$a,$victim,$c"
  [ "$blocks" = 3:4 ] && list="$a,$b,$victim"
  rm -f "$tmp/long.out"  # else the wait below may see the previous run's output
  "$omni" run -m "$model" -p "Once upon a time" -n 2000 --ignore-eos --temp 0 -t 1 --route "$route" --peers "$list" \
    --data-dir "$tmp/client" >"$tmp/long.out" 2>"$tmp/long.err" &
  local run_pid=$!
  for _ in $(seq 1 200); do [ -s "$tmp/long.out" ] && break; sleep 0.02; done
  [ -s "$tmp/long.out" ] || fail "$route: generation did not start: $(cat "$tmp/long.err")"
  kill -9 "$victim_pid"
  local t0 t1 rc=0
  t0=$(date +%s%N)
  wait "$run_pid" || rc=$?
  t1=$(date +%s%N)
  [ "$rc" -ne 0 ] || fail "$route: generation succeeded although node $victim was killed"
  local ms=$(((t1 - t0) / 1000000))
  [ "$ms" -lt 5000 ] || fail "$route: client took $ms ms to notice the dead node"
  grep -q "connection lost" "$tmp/long.err" || fail "$route: unclear error: $(cat "$tmp/long.err")"
  grep -q "${victim#*@}" "$tmp/long.err" || fail "$route: error does not name the dead node: $(cat "$tmp/long.err")"
  echo "$route: killed node noticed in $ms ms: $(tail -1 "$tmp/long.err")"
}
kill_mid_generation ring c2 3:4
kill -9 "$b_pid"
kill_mid_generation ring b1 1:3
kill_mid_generation chain b2 1:3
kill_mid_generation direct b3 1:3

# A stopped node (alive, silent) in a ring: the client gives up after --timeout and names it.
start_node b4 "$model" 1:3; stopped=$NODE_ADDR stopped_pid=$NODE_PID
rm -f "$tmp/long.out"
"$omni" run -m "$model" -p "Once upon a time" -n 2000 --ignore-eos --temp 0 -t 1 --route ring --timeout 2 \
  --peers "$a,$stopped,$c" --data-dir "$tmp/client" >"$tmp/long.out" 2>"$tmp/long.err" &
run_pid=$!
for _ in $(seq 1 200); do [ -s "$tmp/long.out" ] && break; sleep 0.02; done
[ -s "$tmp/long.out" ] || fail "stall: generation did not start: $(cat "$tmp/long.err")"
kill -STOP "$stopped_pid"
t0=$(date +%s%N)
rc=0; wait "$run_pid" || rc=$?
t1=$(date +%s%N)
kill -CONT "$stopped_pid"
[ "$rc" -ne 0 ] || fail "stall: generation succeeded through a stopped node"
ms=$(((t1 - t0) / 1000000))
[ "$ms" -lt 8000 ] || fail "stall: client took $ms ms with --timeout 2"
grep -q "timed out after 2 s" "$tmp/long.err" || fail "stall: unclear error: $(cat "$tmp/long.err")"
grep -q "not answering a probe within 2 s: ${stopped#*@}" "$tmp/long.err" ||
  fail "stall: the stopped node is not named: $(cat "$tmp/long.err")"
echo "ring: stopped node reported in $ms ms: $(tail -1 "$tmp/long.err")"

# --hop-addresses: the nodes dial the next hop there (a closed port here), the client its --peers.
closed_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if "$omni" run -m "$model" -p hi -n 2 --peers "$a,$stopped,$c" --hop-addresses "${c%@*}@127.0.0.1:$closed_port" \
    --data-dir "$tmp/client" 2>"$tmp/err.txt"; then
  fail "a chain through a closed hop address worked"
fi
grep -q "cannot open the next hop 127.0.0.1:$closed_port" "$tmp/err.txt" || fail "hop address: $(cat "$tmp/err.txt")"
"$omni" run -m "$model" -p hi -n 2 --peers "$a,$stopped,$c" --hop-addresses "$c" --data-dir "$tmp/client" \
  >/dev/null 2>"$tmp/err.txt" || fail "hop address given as the node's own: $(cat "$tmp/err.txt")"

# --allow-peers: only the listed client may say hello.
"$omni" run -m "$model" -p hi -n 1 --peers "$a" --data-dir "$tmp/allowed" >/dev/null 2>&1 || true  # creates its key
peer_id_of "$tmp/allowed" >"$tmp/allow.txt"
start_node p0 "$model" 0:4 --allow-peers "$tmp/allow.txt"; private=$NODE_ADDR
"$omni" run -m "$model" -p hi -n 2 --peers "$private" --data-dir "$tmp/allowed" >/dev/null 2>"$tmp/err.txt" ||
  fail "listed client refused: $(cat "$tmp/err.txt")"
if "$omni" run -m "$model" -p hi -n 2 --peers "$private" --data-dir "$tmp/stranger" 2>"$tmp/err.txt"; then
  fail "unlisted client admitted"
fi
grep -q "access denied: peer $(peer_id_of "$tmp/stranger") is not on this node's --allow-peers list" "$tmp/err.txt" ||
  fail "allow-list message: $(cat "$tmp/err.txt")"

# A full node refuses a second session clearly, and keeps serving the first.
start_node f0 "$model" 0:4 --max-sessions 1; full=$NODE_ADDR; full_pid=$NODE_PID
rm -f "$tmp/long.out"
"$omni" run -m "$model" -p "Once upon a time" -n 1500 --ignore-eos --temp 0 -t 1 --peers "$full" --data-dir "$tmp/client" \
  >"$tmp/long.out" 2>"$tmp/long.err" &
run_pid=$!
for _ in $(seq 1 200); do [ -s "$tmp/long.out" ] && break; sleep 0.02; done
if "$omni" run -m "$model" -p hi -n 2 --peers "$full" --data-dir "$tmp/client" 2>"$tmp/err.txt"; then
  fail "a second session was accepted by a node with --max-sessions 1"
fi
grep -q "node is full: 1 of 1 sessions are open" "$tmp/err.txt" || fail "full message: $(cat "$tmp/err.txt")"
wait "$run_pid" || fail "the first session failed: $(cat "$tmp/long.err")"
kill -0 "$full_pid" || fail "the full node died"

# An identity key others can read is refused.
chmod 644 "$tmp/a/identity.pem"
if "$omni" node -m "$model" --blocks 0:1 --listen 127.0.0.1:0 --data-dir "$tmp/a" 2>"$tmp/err.txt"; then
  fail "a 0644 key was used"
fi
grep -q "identity.pem has permissions 0644.*chmod 600" "$tmp/err.txt" || fail "permission message: $(cat "$tmp/err.txt")"
echo "PASS"
