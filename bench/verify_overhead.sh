#!/usr/bin/env bash
# What spot checks cost a swarm client's generation: `omni run --bootstrap` on a loopback swarm (a
# bootstrap DHT node, 4 honest nodes: blocks 0:2 and 2:4 twice each), generating TOKENS greedy
# tokens with checks off (--verify-rate 0 --verify-first 0: the baseline) and at the defaults
# (--verify-rate 0.02 --verify-first 2), alternating, RUNS times each, in the same run. Prints the
# median generation tok/s of each and their ratio (checked / baseline).
#
#   bench/verify_overhead.sh BUILD_DIR [MODEL] [RUNS] [TOKENS]
set -euo pipefail
build=$1
omni=$build/apps/omni/omni
model=${2:-/work/shared/models/synth-llama-q8_0.gguf}
runs=${3:-5}
tokens=${4:-128}
tmp=$(mktemp -d)
source "$(dirname "$0")/../tests/pipeline_lib.sh"
trap 'cleanup_nodes; rm -rf "$tmp"' EXIT

echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), load average $(cut -d' ' -f1-3 /proc/loadavg)"
start_bootstrap
for i in 1 2; do
  start_node "a$i" "$model" 0:2 --bootstrap "$BOOT_ADDR"
  start_node "b$i" "$model" 2:4 --bootstrap "$BOOT_ADDR"
done
sleep 2
run() {  # LABEL RATE FIRST
  "$omni" run -m "$model" -p "Once upon a time, in a small village" -n "$tokens" --temp 0 -t 1 \
    --bootstrap "$BOOT_ADDR" --data-dir "$tmp/client" --verify-rate "$2" --verify-first "$3" \
    >"$tmp/$1.out" 2>"$tmp/$1.err" || fail "$1: $(tail -3 "$tmp/$1.err")"
  sed -n 's/.*generated [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tok\/s).*/\1/p' "$tmp/$1.err" >>"$tmp/$1.tps"
  grep -o '[0-9]* spot checks' "$tmp/$1.err" >>"$tmp/$1.checks" || true
}
for r in $(seq 1 "$runs"); do
  run baseline 0 0
  run checked 0.02 2
done
cmp -s "$tmp/baseline.out" "$tmp/checked.out" || fail "the checked run's output differs from the baseline's"
python3 - "$tmp" "$tokens" <<'PY'
import statistics, sys
tmp, tokens = sys.argv[1], sys.argv[2]
b = [float(x) for x in open(tmp + "/baseline.tps")]
c = [float(x) for x in open(tmp + "/checked.tps")]
checks = [l.split()[0] for l in open(tmp + "/checked.checks")]
mb, mc = statistics.median(b), statistics.median(c)
print("baseline (no checks): %s tok/s, median %.1f" % (" ".join("%.1f" % x for x in b), mb))
print("checked (rate 0.02, first 2): %s tok/s, median %.1f; checks per run: %s" % (" ".join("%.1f" % x for x in c), mc, " ".join(checks)))
print("ratio checked/baseline: %.3f (%s tokens per run)" % (mc / mb, tokens))
PY
