#!/usr/bin/env bash
# Rebalancing on 127.0.0.1: a bootstrap DHT node and 4 `omni node`s that choose their own blocks (at
# most 2 each of the model's 4), re-checking the swarm every 3 s (--rebalance-interval) with short
# records (refreshed every 2 s, valid 6 s). Every node serving the model's last block (or its first,
# when fewer serve that) is killed (SIGKILL): that part of the model is left unserved. The survivors must move (without a restart
# of the process: same peer id, same address) so that every block is served again within 45 s,
# and then `omni run --bootstrap` prints exactly the local greedy output (F32 hidden states).
set -euo pipefail
omni=$1 shared=$2
model=$shared/models/synth-llama-q8_0.gguf
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
trap 'cleanup_nodes; rm -rf "$tmp"' EXIT

start_bootstrap
boot=$BOOT_ADDR

n_layer=$("$omni" inspect "$model" --no-tensors | awk '$2 ~ /\.block_count$/ {print $4}')
last=$((n_layer - 1))
# blocks_of I: the range node I serves now (its latest "listening on" line).
blocks_of() { sed -n 's/^omni node: peer .* listening on .*, blocks \([0-9]*:[0-9]*\)$/\1/p' "$tmp/n$1.log" | tail -1; }
declare -A pid_of
for i in 1 2 3 4; do
  "$omni" node -m "$model" --listen 127.0.0.1:0 --data-dir "$tmp/n$i" -t 1 --bootstrap "$boot" --max-blocks 2 \
    --max-kv-mib 64 --announce-interval 2 --record-ttl 6 --rebalance-interval 3 >"$tmp/n$i.log" 2>&1 &
  pid_of[$i]=$!
  node_pids+=("${pid_of[$i]}")
  for _ in $(seq 1 200); do
    [ -n "$(blocks_of "$i")" ] && break
    kill -0 "${pid_of[$i]}" 2>/dev/null || fail "node $i exited: $(cat "$tmp/n$i.log")"
    sleep 0.05
  done
  [ -n "$(blocks_of "$i")" ] || fail "node $i did not start: $(cat "$tmp/n$i.log")"
  echo "node $i: blocks $(blocks_of "$i")"
done

# coverage I...: replicas per block over the nodes given, e.g. "1 1 2 2".
coverage() {
  local -a cover
  for ((b = 0; b < n_layer; b++)); do cover[b]=0; done
  for i in "$@"; do
    IFS=: read -r from to <<<"$(blocks_of "$i")"
    for ((b = from; b < to; b++)); do cover[b]=$((cover[b] + 1)); done
  done
  echo "${cover[*]}"
}
echo "before: replicas per block $(coverage 1 2 3 4)"

# The victims: every server of the last block, or of block 0 when fewer nodes serve that one (the
# ranges depend on the throughput each node measured): at least two nodes survive.
serves() { IFS=: read -r from to <<<"$(blocks_of "$1")"; [ "$from" -le "$2" ] && [ "$2" -lt "$to" ]; }
gap=$last
n_first=0 n_last=0
for i in 1 2 3 4; do
  if serves "$i" 0; then n_first=$((n_first + 1)); fi
  if serves "$i" "$last"; then n_last=$((n_last + 1)); fi
done
[ "$n_first" -lt "$n_last" ] && gap=0
victims=() survivors=()
for i in 1 2 3 4; do
  if serves "$i" "$gap"; then victims+=("$i"); else survivors+=("$i"); fi
done
[ "${#survivors[@]}" -ge 2 ] || fail "cannot leave two nodes alive: $(coverage 1 2 3 4)"
for i in "${victims[@]}"; do
  kill -9 "${pid_of[$i]}"
  wait "${pid_of[$i]}" 2>/dev/null || true
done
t0=$(date +%s%N)
echo "killed node(s) ${victims[*]} (every server of block $gap); left: replicas per block $(coverage "${survivors[@]}")"

covered=
for _ in $(seq 1 450); do
  cov=$(coverage "${survivors[@]}")
  case " $cov " in *" 0 "*) ;; *) covered=1; break ;; esac
  for i in "${survivors[@]}"; do kill -0 "${pid_of[$i]}" 2>/dev/null || fail "node $i exited: $(tail -5 "$tmp/n$i.log")"; done
  sleep 0.1
done
t1=$(date +%s%N)
[ -n "$covered" ] || fail "the survivors did not cover every block within 45 s: $(coverage "${survivors[@]}");
$(for i in "${survivors[@]}"; do echo "--- node $i"; tail -8 "$tmp/n$i.log"; done)"
echo "every block served again after $(((t1 - t0) / 1000000)) ms: replicas per block $cov"
for i in "${survivors[@]}"; do
  grep -h "rebalancing: moves\|moved from" "$tmp/n$i.log" | sed "s/^/  node $i: /" || true
done
grep -q "moved from blocks" $(for i in "${survivors[@]}"; do echo "$tmp/n$i.log"; done) || fail "no node reported a move"

prompt="Once upon a time, in a small village"
args=(-p "$prompt" -n 24 --temp 0 --json --top-logprobs 3 -t 1)
"$omni" run -m "$model" "${args[@]}" >"$tmp/local.json" 2>"$tmp/local.err" || fail "local: $(cat "$tmp/local.err")"
"$omni" run -m "$model" "${args[@]}" --bootstrap "$boot" --hidden-format f32 --data-dir "$tmp/client" \
  >"$tmp/swarm.json" 2>"$tmp/swarm.err" || fail "swarm run: $(cat "$tmp/swarm.err")"
cmp -s "$tmp/local.json" "$tmp/swarm.json" ||
  fail "swarm run differs from the local run: $(compare_runs "$tmp/local.json" "$tmp/swarm.json")"
echo "swarm run: $(grep -m1 'route:' "$tmp/swarm.err" | sed 's/^omni run: //'); output identical to local"
echo "PASS"
