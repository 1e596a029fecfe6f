#!/usr/bin/env bash
# A short load test of `omni gateway` (bench/gateway_load.sh, 50 streaming clients for 10 s) with a
# small queue, so the designed refusals (503 + Retry-After) happen too: every request must end as
# a complete stream or a designed refusal, and no session or queue place may stay held.
# Usage: OMNI SHARED_DIR
set -euo pipefail
OMNI="$1"; SHARED="$2"
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/gateway_lib.sh"
require_node_modules
MAX_QUEUE=16 "$HERE/../bench/gateway_load.sh" "$OMNI" "$SHARED/models/synth-llama-q8_0.gguf" 50 10 32
