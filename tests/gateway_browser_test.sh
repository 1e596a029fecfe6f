#!/usr/bin/env bash
# The web UI in a real browser (playwright-core driving Debian's chromium): type a prompt in the
# chat page, see the answer stream in, and check it is the text `omni run` samples with the same
# settings and seed; conversations across reloads; a failed answer (rejected, or cut off by killing
# the gateway, which the test then restarts on the same port) followed by good ones; history
# trimmed to a 512-token context; Markdown rendering of untrusted answers; the API key; a 390 px
# phone. Screenshots of both pages, desktop and phone, go to $OMNI_SCREENSHOT_DIR (default: a
# temporary directory); `OMNI_SCREENSHOT_DIR=docs/screenshots OMNI_SCREENSHOT_TRAFFIC_S=20` makes
# the committed ones.
# Skipped (exit 77) where no chromium is installed. Usage: OMNI SHARED_DIR
set -euo pipefail
OMNI="$1"; SHARED="$2"
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/gateway_lib.sh"
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
if [ -z "$CHROMIUM" ]; then echo "SKIP: no chromium found (apt-get install chromium, or set CHROMIUM=/path)"; exit 77; fi
require_node_modules
if [ ! -d "$WEB_DIR/node_modules/playwright-core" ]; then echo "SKIP: playwright-core is not installed in web/"; exit 77; fi
if [ ! -f "$WEB_DIR/dist/index.html" ]; then echo "FAIL: the web UI is not built (npm run build in web/)"; exit 1; fi
MODEL="$SHARED/models/synth-llama-q8_0.gguf"
WORK="$(mktemp -d)"
# The browser test restarts the gateway it killed; that one is stopped here too if node dies first.
cleanup() {
  stop_gateway
  if [ -s "$WORK/restarted.pid" ]; then kill -TERM "$(cat "$WORK/restarted.pid")" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
SHOTS="${OMNI_SCREENSHOT_DIR:-$WORK/screenshots}"
mkdir -p "$SHOTS"

PROMPT="Write a haiku about distributed computing."
# The UI's request: its default temperature and top-p, with the seed and max tokens the test types.
"$OMNI" run -m "$MODEL" -p "$PROMPT" --chat --chat-template chatml -n 40 --temp 0.7 --top-p 0.95 --top-k 0 \
  --min-p 0 --seed 42 -t 2 >"$WORK/expected.txt" 2>/dev/null

CTX=512
start_gateway "$OMNI" "$MODEL" --threads 1 --ctx-size "$CTX" --web-dir "$WEB_DIR/dist"
trap cleanup EXIT
echo "gateway at $GATEWAY_URL, chromium $CHROMIUM"
# For the committed screenshots: some traffic first, so the dashboard's chart has a history.
if [ -n "${OMNI_SCREENSHOT_TRAFFIC_S:-}" ]; then
  node "$HERE/../bench/gateway_load.mjs" "$GATEWAY_URL" 6 "$OMNI_SCREENSHOT_TRAFFIC_S" 48 >/dev/null
fi
GATEWAY_PID="$GATEWAY_PID" OMNI="$OMNI" MODEL="$MODEL" GATEWAY_CTX="$CTX" RESTARTED_PID_FILE="$WORK/restarted.pid" \
  node "$HERE/gateway_browser_test.mjs" "$GATEWAY_URL" "$WEB_DIR" "$CHROMIUM" "$PROMPT" "$WORK/expected.txt" "$SHOTS"
echo "screenshots in $SHOTS"
