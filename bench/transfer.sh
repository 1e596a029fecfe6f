#!/usr/bin/env bash
# Shard transfer throughput between two processes over the node transport (TLS 1.3: omni node
# --model CID serving its store -> omni fetch), as a ratio to the link's capacity measured or set in
# the same run.
#
#   bench/transfer.sh BUILD_DIR [WORK_DIR]
#
# 1. loopback: a ~1.1 GB synthetic model (tinyllama-1.1b, q8_0) fetched whole; capacity = a plain
#    TCP copy of the same number of bytes over loopback (python3 sockets), measured just before.
# 2. emulated link (omni-linkemu, 50 ms RTT, 100 Mbit/s each way): blocks [0, 2) only (~60 MiB, a
#    few seconds) with window 8 and window 1; capacity = 100 Mbit/s. Window 1 shows why the window
#    exists: one 1 MiB request per round trip caps the rate at C / (RTT + C / B).
# Needs ~2.5 GB free in WORK_DIR (default: a temp dir, removed afterwards). Takes about a minute.
set -euo pipefail
build=$1
keep=${2:-}
work=${2:-$(mktemp -d)}
omni=$build/apps/omni/omni
linkemu=$build/src/linkemu/omni-linkemu
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "$keep" ] || rm -rf "$work"; }
trap cleanup EXIT
now() { date +%s.%N; }

echo "synthesizing the model..."
"$omni" synth --shape tinyllama-1.1b --type q8_0 --seed 1 "$work/model.gguf" >/dev/null
t0=$(now)
cid=$("$omni" shard "$work/model.gguf" --store "$work/src" 2>/dev/null)
echo "sharded in $(echo "$(now) - $t0" | bc) s: $cid"
bytes=$(du -sb "$work/src/blobs" | cut -f1)

"$omni" node --model "$cid" --store "$work/src" --blocks 0:1 --listen 127.0.0.1:0 --data-dir "$work/id" -t 1 \
  >"$work/node" 2>"$work/node.err" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/node" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/.*peer \([a-z0-9]*\) listening on \([^,]*\),.*/\1@\2/p' "$work/node")
port=${addr##*:}

# Loopback capacity: the same byte count through one plain TCP connection.
cap=$(python3 - "$bytes" <<'PY'
import socket, sys, threading, time
n = int(sys.argv[1]); buf = bytes(1 << 20)
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)
def sink():
    c, _ = srv.accept(); left = n
    while left > 0:
        left -= len(c.recv(1 << 20))
    c.close()
t = threading.Thread(target=sink); t.start()
s = socket.create_connection(srv.getsockname()); t0 = time.time(); sent = 0
while sent < n:
    k = min(len(buf), n - sent); s.sendall(buf[:k]); sent += k
t.join(); print(n / (time.time() - t0) / 2**20)
PY
)
t0=$(now)
"$omni" fetch "$cid" --peers "$addr" --store "$work/dst" 2>"$work/fetch.err" >/dev/null
secs=$(echo "$(now) - $t0" | bc)
rate=$(echo "$bytes / $secs / 1048576" | bc -l)
printf "loopback: %.0f MiB in %.2f s = %.1f MiB/s; plain TCP %.1f MiB/s; ratio %.2f\n" \
  "$(echo "$bytes / 1048576" | bc -l)" "$secs" "$rate" "$cap" "$(echo "$rate / $cap" | bc -l)"
grep "fetched" "$work/fetch.err"
"$omni" shard --verify "$cid" --store "$work/dst" >/dev/null

if [ ! -x "$linkemu" ]; then
  echo "emulated link: skipped ($linkemu not built)"
  exit 0
fi
"$linkemu" --listen 127.0.0.1:0 --target "127.0.0.1:$port" --delay-ms 25 --rate-mbit 100 >"$work/link" 2>/dev/null &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$work/link" 2>/dev/null && break; sleep 0.1; done
link=$(awk '/listening/ {print $2}' "$work/link")
capacity=$(echo "100 * 1000000 / 8 / 1048576" | bc -l)
for window in 16 1; do
  rm -rf "$work/dst$window"
  t0=$(now)
  "$omni" fetch "$cid" --peers "${addr%@*}@$link" --store "$work/dst$window" --blocks 0:2 --no-embeddings --no-head \
    --window "$window" 2>"$work/link.err" >/dev/null
  secs=$(echo "$(now) - $t0" | bc)
  got=$(du -sb "$work/dst$window/blobs" | cut -f1)
  rate=$(echo "$got / $secs / 1048576" | bc -l)
  printf "link 50 ms RTT, 100 Mbit/s, window %s: %.1f MiB in %.2f s = %.2f MiB/s; ratio to capacity %.2f\n" \
    "$window" "$(echo "$got / 1048576" | bc -l)" "$secs" "$rate" "$(echo "$rate / $capacity" | bc -l)"
done
