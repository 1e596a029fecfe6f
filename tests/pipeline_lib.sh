# Helpers for the pipeline tests: start `omni node` processes and stop them all on exit.
# Sourced by tests/pipeline_*_test.sh; expects $omni and $tmp.
node_pids=()
cleanup_nodes() {
  for pid in "${node_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${node_pids[@]}"; do wait "$pid" 2>/dev/null || true; done 2>/dev/null
  node_pids=()
}
fail() { echo "FAIL: $*"; exit 1; }

# start_bootstrap: starts a bootstrap-only DHT node on a free UDP port of 127.0.0.1, waits up to
# 5 s for its listening line, and sets BOOT_ADDR to its "host:port".
start_bootstrap() {
  : >"$tmp/boot.log"  # before the background node opens it: sed must find it (set -e)
  "$omni" node --bootstrap-only --listen 127.0.0.1:0 >"$tmp/boot.log" 2>&1 &
  node_pids+=($!)
  BOOT_ADDR=
  for _ in $(seq 1 100); do
    BOOT_ADDR=$(sed -n 's/^omni node: bootstrap DHT node listening on udp \(.*\)$/\1/p' "$tmp/boot.log")
    [ -n "$BOOT_ADDR" ] && return 0
    sleep 0.05
  done
  fail "bootstrap node did not start: $(cat "$tmp/boot.log")"
}

# start_node NAME MODEL BLOCKS [extra args...]: starts a node on a free port of 127.0.0.1 (or of
# $NODE_HOST) under $NODE_PREFIX (e.g. "ip netns exec ns1"), waits for its listening line, and
# sets NODE_ADDR to "peerid@host:port" and NODE_PID.
start_node() {
  local name=$1 model=$2 blocks=$3
  shift 3
  local host=${NODE_HOST:-127.0.0.1}
  ${NODE_PREFIX:-} "$omni" node -m "$model" --blocks "$blocks" --listen "$host:0" --data-dir "$tmp/$name" -t 1 "$@" \
    >"$tmp/$name.log" 2>&1 &
  NODE_PID=$!
  node_pids+=("$NODE_PID")
  for _ in $(seq 1 200); do
    NODE_ADDR=$(sed -n 's/^omni node: peer \([a-z2-7]*\) listening on \([^,]*\),.*/\1@\2/p' "$tmp/$name.log" 2>/dev/null || true)
    [ -n "$NODE_ADDR" ] && return 0
    kill -0 "$NODE_PID" 2>/dev/null || fail "node $name exited: $(cat "$tmp/$name.log")"
    sleep 0.05
  done
  fail "node $name did not start: $(cat "$tmp/$name.log")"
}

# splits N: three contiguous non-empty block ranges covering [0, N), as "a:b c:d e:f".
splits() {
  local n=$1 a=$(( $1 / 3 )) b=$(( 2 * $1 / 3 ))
  [ "$a" -ge 1 ] || a=1
  [ "$b" -gt "$a" ] || b=$((a + 1))
  echo "0:$a $a:$b $b:$n"
}

# compare_runs LOCAL REMOTE: prints "ids-equal max-abs-logprob-diff first-divergence" of two
# --json outputs.
compare_runs() {
  python3 - "$1" "$2" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
ids_a, ids_b = [x["id"] for x in a], [x["id"] for x in b]
first = next((i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y), None)
if first is None and len(ids_a) != len(ids_b): first = min(len(ids_a), len(ids_b))
upto = len(a) if first is None else first + 1  # log-probs are comparable up to the first divergence
diff = max([abs(x["logprob"] - y["logprob"]) for x, y in zip(a[:upto], b[:upto])] +
           [abs(p[1] - q[1]) for x, y in zip(a[:upto], b[:upto]) for p, q in zip(x["top"], y["top"]) if p[0] == q[0]] + [0])
print("equal" if first is None else "differ", "%.3g" % diff, "-" if first is None else first)
PY
}
