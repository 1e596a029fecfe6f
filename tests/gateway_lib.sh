# Shared by the gateway tests: starting `omni gateway` on a free loopback port and stopping it.
# Usage: source gateway_lib.sh; start_gateway OMNI MODEL [extra args...]; ... ; (stopped on exit)
# Sets GATEWAY_PID, GATEWAY_URL and GATEWAY_LOG.

WEB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../web" && pwd)"

# Node modules come from web/ (npm ci there installs the test clients too).
require_node_modules() {
  if ! command -v node >/dev/null; then echo "SKIP: node is not installed"; exit 77; fi
  if [ ! -d "$WEB_DIR/node_modules/openai" ]; then
    echo "SKIP: $WEB_DIR/node_modules is missing; run 'npm ci' in web/ (scripts/setup.sh does)"; exit 77
  fi
}

start_gateway() {
  local omni="$1" model="$2"; shift 2
  GATEWAY_LOG="$(mktemp -t omni-gateway.XXXXXX.log)"
  "$omni" gateway --model "$model" --listen 127.0.0.1:0 "$@" 2>"$GATEWAY_LOG" &
  GATEWAY_PID=$!
  trap stop_gateway EXIT
  local port=""
  for _ in $(seq 1 200); do
    port="$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$GATEWAY_LOG")"
    [ -n "$port" ] && break
    if ! kill -0 "$GATEWAY_PID" 2>/dev/null; then echo "FAIL: the gateway exited:"; cat "$GATEWAY_LOG"; exit 1; fi
    sleep 0.05
  done
  if [ -z "$port" ]; then echo "FAIL: the gateway did not start in 10 s"; cat "$GATEWAY_LOG"; exit 1; fi
  GATEWAY_URL="http://127.0.0.1:$port"
}

stop_gateway() {
  if [ -n "${GATEWAY_PID:-}" ] && kill -0 "$GATEWAY_PID" 2>/dev/null; then
    kill -TERM "$GATEWAY_PID"
    for _ in $(seq 1 100); do kill -0 "$GATEWAY_PID" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$GATEWAY_PID" 2>/dev/null; then
      echo "FAIL: the gateway did not stop within 5 s of SIGTERM"; kill -KILL "$GATEWAY_PID"; exit 1
    fi
    wait "$GATEWAY_PID" 2>/dev/null || true
  fi
  GATEWAY_PID=""
}
