#!/usr/bin/env bash
# Starts `omni gateway` on loopback and runs bench/gateway_load.mjs against it.
# Usage: [MAX_SESSIONS=8] [MAX_QUEUE=64] bench/gateway_load.sh OMNI MODEL [CLIENTS=200] [SECONDS=60] [MAX_TOKENS=32] [gateway args...]
# The test suite runs a short version (tests/gateway_load_test.sh).
set -euo pipefail
OMNI="$1"; MODEL="$2"; CLIENTS="${3:-200}"; SECONDS_="${4:-60}"; MAX_TOKENS="${5:-32}"; shift $(( $# < 5 ? $# : 5 ))
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../tests/gateway_lib.sh"
# One engine thread by default: kernels::ThreadPool can lose a chunk count when a worker still
# scanning the previous region claims a chunk of the next (reported; src/kernels). GATEWAY_THREADS=2 to override.
start_gateway "$OMNI" "$MODEL" --threads "${GATEWAY_THREADS:-1}" --max-sessions "${MAX_SESSIONS:-8}" \
  --max-queue "${MAX_QUEUE:-64}" "$@"
echo "gateway at $GATEWAY_URL (pid $GATEWAY_PID): $CLIENTS clients for $SECONDS_ s, max_tokens $MAX_TOKENS" >&2
node "$HERE/gateway_load.mjs" "$GATEWAY_URL" "$CLIENTS" "$SECONDS_" "$MAX_TOKENS" "$GATEWAY_PID"
