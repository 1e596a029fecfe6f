#!/usr/bin/env bash
# Shard transfer throughput between two processes over the node transport (TLS 1.3: omni node
# --model CID serving its store -> omni fetch), as a ratio to the link's capacity measured or set in
# the same run.
#
#   bench/transfer.sh BUILD_DIR [WORK_DIR] [RUNS]
#
# 1. loopback: a ~1.1 GB synthetic model (tinyllama-1.1b, q8_0) fetched whole, RUNS times (default
#    5), each next to two plain TCP copies of the same bytes over loopback by transfer_baseline (no
#    TLS, no hashing, sender and receiver on this machine's cores as node and fetch are):
#      (a) memory to memory;
#      (b) into files written the way the store writes a fetched blob (preallocated, O_DIRECT from
#          page-aligned buffers by as many writer threads as the fetch has workers, fsync, rename,
#          fsync of the directory) — the capacity a transfer to disk can reach here.
#    Prints each run and the medians of the throughputs and of the per-run ratios to (a) and (b),
#    and the CPU time node and fetch spent per GiB (and (b) for comparison), which bounds what
#    TLS + hashing can reach on this machine's cores: ceiling = cores x GiB / CPU-seconds.
# 2. emulated link (omni-linkemu, 50 ms RTT, 100 Mbit/s each way): blocks [0, 2) only (~60 MiB, a
#    few seconds) with window 16 and window 1, 3 runs each (medians); capacity = 100 Mbit/s.
#    Window 1 shows why the window exists: one 1 MiB request per round trip caps the rate at
#    C / (RTT + C / B).
# Needs ~3.5 GB free in WORK_DIR (default: a temp dir, removed afterwards). Takes 2-3 minutes.
set -euo pipefail
build=$1
keep=${2:-}
work=${2:-$(mktemp -d)}
runs=${3:-5}
omni=$build/apps/omni/omni
baseline=$build/bench/transfer_baseline
linkemu=$build/src/linkemu/omni-linkemu
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "$keep" ] || rm -rf "$work"; }
trap cleanup EXIT
now() { date +%s.%N; }
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime of a process
ticks=$(getconf CLK_TCK)
cores=$(nproc)

echo "machine: $cores cores, load average $(cut -d' ' -f1-3 /proc/loadavg); SHA-NI: $(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no)"
# One core's crypto rates, 16 KiB blocks (a TLS record): each GiB moved is encrypted once,
# decrypted once and hashed in one pass (chunk and whole-blob hashes together).
speed() { openssl speed -seconds 1 -bytes 16384 -evp "$1" 2>/dev/null | awk 'END {sub(/k$/, "", $NF); print $NF / 1e6}'; }
printf "openssl speed, one core: aes-256-gcm %.2f GB/s, sha256 %.2f GB/s\n" "$(speed aes-256-gcm)" "$(speed sha256)"
mkdir -p "$work"
if [ ! -f "$work/model.gguf" ]; then
  echo "synthesizing the model..."
  "$omni" synth --shape tinyllama-1.1b --type q8_0 --seed 1 "$work/model.gguf" >/dev/null
fi
cid=$("$omni" shard "$work/model.gguf" --store "$work/src" 2>/dev/null)
bytes=$(du -sb "$work/src/blobs" | cut -f1)
mib=$(echo "$bytes / 1048576" | bc -l)
printf "model %s: %.0f MiB in %d blobs\n" "$cid" "$mib" "$(ls "$work/src/blobs" | wc -l)"

"$omni" node --model "$cid" --store "$work/src" --blocks 0:1 --listen 127.0.0.1:0 --data-dir "$work/id" -t 1 \
  >"$work/node" 2>"$work/node.err" &
node_pid=$!
pids+=($node_pid)
for _ in $(seq 100); do grep -q listening "$work/node" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/.*peer \([a-z0-9]*\) listening on \([^,]*\),.*/\1@\2/p' "$work/node")
port=${addr##*:}

: >"$work/runs"
for run in $(seq "$runs"); do
  mem=$("$baseline" mem "$bytes")
  rm -rf "$work/copy"
  disk=$(/usr/bin/time -f "%U %S" -o "$work/disk.cpu" "$baseline" disk "$work/src/blobs" "$work/copy")
  rm -rf "$work/copy" "$work/dst"
  node0=$(cpu_ticks $node_pid)
  t0=$(now)
  /usr/bin/time -f "%U %S" -o "$work/fetch.cpu" \
    "$omni" fetch "$cid" --peers "$addr" --store "$work/dst" 2>"$work/fetch.err" >/dev/null
  secs=$(echo "$(now) - $t0" | bc)
  node_cpu=$(echo "($(cpu_ticks $node_pid) - $node0) / $ticks" | bc -l)
  fetch_cpu=$(awk '{print $1 + $2}' "$work/fetch.cpu")
  "$omni" shard --verify "$cid" --store "$work/dst" >/dev/null
  rate=$(echo "$mib / $secs" | bc -l)
  gib=$(echo "$bytes / 1073741824" | bc -l)
  disk_cpu=$(awk '{print $1 + $2}' "$work/disk.cpu")
  echo "$rate $mem $disk $(echo "$rate / $mem" | bc -l) $(echo "$rate / $disk" | bc -l) $(echo "$fetch_cpu / $gib" | bc -l) $(echo "$node_cpu / $gib" | bc -l) $(echo "$disk_cpu / $gib" | bc -l)" >>"$work/runs"
  printf "run %d: fetch %.2f s = %.0f MiB/s | (a) TCP to memory %.0f MiB/s, (b) TCP to fsync'd files %.0f MiB/s | ratio %.2f of (a), %.2f of (b) | CPU per GiB: fetch %.2f s, node %.2f s\n" \
    "$run" "$secs" $(tail -1 "$work/runs" | cut -d' ' -f1-7)
done
col() { awk -v c="$1" '{print $c}' "$work/runs" | median; }
printf "loopback, median of %d: fetch %.0f MiB/s; (a) %.0f MiB/s, (b) %.0f MiB/s; ratio %.2f of (a), %.2f of (b)\n" \
  "$runs" "$(col 1)" "$(col 2)" "$(col 3)" "$(col 4)" "$(col 5)"
cpu=$(echo "$(col 6) + $(col 7)" | bc -l)
printf "CPU per GiB moved: fetch %.2f s + node %.2f s = %.2f s, so %d cores cap TLS + hashing at %.0f MiB/s here; (b) takes %.2f s\n" \
  "$(col 6)" "$(col 7)" "$cpu" "$cores" "$(echo "$cores * 1024 / $cpu" | bc -l)" "$(col 8)"
echo "machine load average now: $(cut -d' ' -f1-3 /proc/loadavg)"

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
  : >"$work/link.runs"
  for run in 1 2 3; do
    rm -rf "$work/dst$window"
    t0=$(now)
    "$omni" fetch "$cid" --peers "${addr%@*}@$link" --store "$work/dst$window" --blocks 0:2 --no-embeddings --no-head \
      --window "$window" 2>"$work/link.err" >/dev/null
    secs=$(echo "$(now) - $t0" | bc)
    got=$(du -sb "$work/dst$window/blobs" | cut -f1)
    echo "$(echo "$got / $secs / 1048576 / $capacity" | bc -l) $(echo "$got / 1048576" | bc -l) $secs" >>"$work/link.runs"
  done
  printf "link 50 ms RTT, 100 Mbit/s, window %s: %.1f MiB each run in %s s; median ratio to capacity %.2f\n" \
    "$window" "$(awk 'NR == 1 {print $2}' "$work/link.runs")" "$(awk '{printf "%s%.2f", (NR > 1 ? ", " : ""), $3}' "$work/link.runs")" \
    "$(awk '{print $1}' "$work/link.runs" | median)"
done
