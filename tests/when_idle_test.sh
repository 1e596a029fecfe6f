#!/usr/bin/env bash
# omni node --when-idle against real load: busy loops (one per CPU) make the node pause (its log
# says "paused:", a client's session is refused with "node paused" and NodeInfo reports it full),
# and once they end it resumes and serves the client again. The node's own compute never counts.
# Skipped (77) when the machine is already busy before the test (other processes above 30 % of
# the CPU), where a busy loop could not be told apart from the background.
set -euo pipefail
omni=$1 shared=$2
model=$shared/models/synth-llama-q8_0.gguf
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
loops=()
cleanup() {
  for p in "${loops[@]}"; do kill "$p" 2>/dev/null || true; done
  cleanup_nodes
  rm -rf "$tmp"
}
trap cleanup EXIT
# others' share of the CPU over one second (busy / total ticks of /proc/stat's cpu line)
load() {
  python3 - <<'PY'
import time
def read():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7]
    return busy, busy + f[3] + f[4]
b0, t0 = read(); time.sleep(1); b1, t1 = read()
print(int(100 * (b1 - b0) / max(1, t1 - t0)))
PY
}
before=$(load)
if [ "$before" -gt 30 ]; then
  echo "SKIP: the machine is already ${before} % busy; a busy loop could not be told apart from that"
  exit 77
fi
start_node n "$model" 0:4 --when-idle --busy-load 60 --busy-seconds 2 --idle-seconds 2
addr=$NODE_ADDR
generate() { "$omni" run -m "$model" --peers "$addr" -p "Once upon a time" -n 4 --temp 0 --data-dir "$tmp/client" 2>&1; }
generate >"$tmp/run1.txt" || fail "the idle node did not serve: $(cat "$tmp/run1.txt")"
for _ in $(seq "$(nproc)"); do
  bash -c 'while :; do :; done' &
  loops+=($!)
done
for _ in $(seq 150); do grep -q "paused:" "$tmp/n.log" && break; sleep 0.1; done
grep -q "paused:" "$tmp/n.log" || fail "the node did not pause under load: $(cat "$tmp/n.log")"
grep "paused:" "$tmp/n.log"
if generate >"$tmp/run2.txt"; then fail "a paused node served a session"; fi
grep -q "node paused" "$tmp/run2.txt" || fail "the refusal does not say the node is paused: $(cat "$tmp/run2.txt")"
for p in "${loops[@]}"; do kill "$p"; done
loops=()
for _ in $(seq 150); do grep -q "resumed:" "$tmp/n.log" && break; sleep 0.1; done
grep -q "resumed:" "$tmp/n.log" || fail "the node did not resume: $(cat "$tmp/n.log")"
grep "resumed:" "$tmp/n.log"
generate >"$tmp/run3.txt" || fail "the resumed node did not serve: $(cat "$tmp/run3.txt")"
echo PASS
