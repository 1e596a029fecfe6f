#!/usr/bin/env bash
# A node's bandwidth caps (--max-upload, --max-download: token buckets shared by all its sockets)
# hold within 10 % of the set rate, measured through omni-linkemu (a 200 Mbit/s, 2 ms link, so
# the link itself is no bottleneck):
#   - shard upload: `omni fetch` from a sharing node capped at UP bytes/s;
#   - shard download: a node started from the model CID, capped at DOWN bytes/s, fetching from it;
#   - an inference stream: `omni run --route direct --hidden-format f32` sending a long prompt's
#     hidden states (1 KiB per token) to a node capped at INFER bytes/s, timed against the same run
#     to an uncapped twin, so the node's compute is taken out: rate = bytes / (t_capped - t_free).
set -euo pipefail
omni=$1 shared=$2
linkemu=$(dirname "$omni")/../src/linkemu/omni-linkemu
[ -x "$linkemu" ] || linkemu=$(dirname "$omni")/../../src/linkemu/omni-linkemu
[ -x "$linkemu" ] || { echo "SKIP: omni-linkemu is not built"; exit 77; }
model=$shared/models/synth-llama-q4_0.gguf
up=3000000 down=2000000 infer=200000
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
link_pids=()
cleanup() {
  cleanup_nodes
  for p in "${link_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# link TARGET: starts omni-linkemu in front of TARGET (host:port), sets LINK to its host:port.
link() {
  local log=$tmp/link${#link_pids[@]}
  "$linkemu" --listen 127.0.0.1:0 --target "$1" --delay-ms 2 --rate-mbit 200 >"$log" 2>/dev/null &
  link_pids+=($!)
  LINK=
  for _ in $(seq 100); do
    LINK=$(awk '/listening/ {print $2}' "$log" 2>/dev/null || true)
    [ -n "$LINK" ] && return 0
    sleep 0.05
  done
  fail "omni-linkemu did not start"
}

# within NAME MEASURED CAP: passes when MEASURED is within 10 % of CAP (bytes/s).
within() {
  python3 - "$@" <<'PY' || exit 1
import sys
name, measured, cap = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
ratio = measured / cap
print(f"{name}: {measured:.0f} B/s against a cap of {cap:.0f} B/s (ratio {ratio:.3f})")
if not 0.9 <= ratio <= 1.1: sys.exit(f"FAIL: {name} is not within 10 % of its cap")
PY
}

# fetch_rate LOG: bytes/s of the "fetched N chunks (X MiB) in S s" line of LOG.
fetch_rate() {
  sed -n 's/.*fetched [0-9]* chunks (\([0-9.]*\) MiB) in \([0-9.]*\) s.*/\1 \2/p' "$1" | tail -1 |
    awk '{ if ($2 > 0) printf "%.0f", $1 * 1048576 / $2 }'
}

# Shard upload: a sharing node capped at $up.
start_node a "$model" 0:4 --share --max-upload "$up"
addr_a=$NODE_ADDR
id_a=${addr_a%@*}
cid=$(sed -n 's/.*\(bafk[a-z2-7]*\).*/\1/p' "$tmp/a.log" | head -1)
[ -n "$cid" ] || fail "no model CID in a's log: $(cat "$tmp/a.log")"
link "${addr_a#*@}"
"$omni" fetch "$cid" --peers "$id_a@$LINK" --store "$tmp/f" >/dev/null 2>"$tmp/fetch.err" || fail "fetch: $(cat "$tmp/fetch.err")"
rate=$(fetch_rate "$tmp/fetch.err")
[ -n "$rate" ] || fail "no fetch summary: $(cat "$tmp/fetch.err")"
within "shard upload (omni fetch from a node with --max-upload $up)" "$rate" "$up"

# Shard download: a node started from the CID with --max-download below a's upload cap.
start_node b "$cid" 0:4 --store "$tmp/b" --peers "$id_a@$LINK" --max-download "$down"
rate=$(fetch_rate "$tmp/b.log")
[ -n "$rate" ] || fail "no fetch summary in b's log: $(cat "$tmp/b.log")"
within "shard download (node from a CID with --max-download $down)" "$rate" "$down"
cleanup_nodes

# An inference stream: hidden states of a long prompt into a node capped at $infer, against an
# uncapped twin behind an identical link.
start_node x "$model" 0:2
addr_x=$NODE_ADDR
start_node y "$model" 2:4 --max-download "$infer"
addr_y=$NODE_ADDR
link "${addr_y#*@}"
link_y="${addr_y%@*}@$LINK"
start_node z "$model" 2:4
addr_z=$NODE_ADDR
link "${addr_z#*@}"
link_z="${addr_z%@*}@$LINK"
prompt=$(python3 -c 'print(" ".join(["the quick brown fox jumps over the lazy dog"] * 150))')
prompt_time() {  # PEERS NAME: prints "tokens seconds" of omni run's summary
  "$omni" run -m "$model" --peers "$1" --route direct --hidden-format f32 -p "$prompt" -n 1 --temp 0 -t 1 \
    --data-dir "$tmp/client" >/dev/null 2>"$tmp/$2.err" || fail "run through $2: $(cat "$tmp/$2.err")"
  sed -n 's/.*prompt \([0-9]*\) tokens in \([0-9.]*\) s.*/\1 \2/p' "$tmp/$2.err"
}
read -r tokens t_free < <(prompt_time "$addr_x,$link_z" free)
read -r tokens_capped t_capped < <(prompt_time "$addr_x,$link_y" capped)
[ "$tokens" = "$tokens_capped" ] || fail "the two runs tokenized differently ($tokens, $tokens_capped)"
echo "prompt of $tokens tokens: $t_free s uncapped, $t_capped s capped"
rate=$(python3 -c "import sys; print($tokens * 256 * 4 / ($t_capped - $t_free))")
within "inference stream (hidden states into a node with --max-download $infer)" "$rate" "$infer"
echo "PASS"
