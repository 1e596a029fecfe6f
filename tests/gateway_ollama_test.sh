#!/usr/bin/env bash
# The official `ollama` npm client against `omni gateway` on loopback: chat and generate, streamed
# and whole, must hold exactly the text `omni run` produces greedily on the same model (with
# Ollama's default repeat penalty where the request leaves it out), plus list, show, version and
# the errors. Usage: OMNI SHARED_DIR
set -euo pipefail
OMNI="$1"; SHARED="$2"
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/gateway_lib.sh"
require_node_modules
if [ ! -d "$WEB_DIR/node_modules/ollama" ]; then
  echo "SKIP: $WEB_DIR/node_modules/ollama is missing; run 'npm ci' in web/ (scripts/setup.sh does)"; exit 77
fi
MODEL="$SHARED/models/synth-llama-q8_0.gguf"
WORK="$(mktemp -d)"; trap 'stop_gateway; rm -rf "$WORK"' EXIT

CHAT_PROMPT="Tell me about the ocean."
SYSTEM="You are terse."
TEXT_PROMPT="Once upon a time"
N=24
# Expected outputs from `omni run` (the text plus a final newline). The gateway falls back to
# chatml for a model without a template; Ollama's defaults penalize repeats (1.1 over 64 tokens).
run() { "$OMNI" run -m "$MODEL" -n $N --temp 0 -t 2 "$@" 2>/dev/null; }
run -p "$CHAT_PROMPT" --chat --chat-template chatml >"$WORK/chat.txt"
run -p "$CHAT_PROMPT" --chat --chat-template chatml --repeat-penalty 1.1 --repeat-last-n 64 >"$WORK/chat_default_penalty.txt"
run -p "$CHAT_PROMPT" --chat --chat-template chatml --system "$SYSTEM" >"$WORK/system.txt"
run -p "$TEXT_PROMPT" >"$WORK/text.txt"

start_gateway "$OMNI" "$MODEL" --threads 1 --max-sessions 4
echo "gateway at $GATEWAY_URL"
node "$HERE/gateway_ollama_test.mjs" "$GATEWAY_URL" "$WORK" "$WEB_DIR" "$CHAT_PROMPT" "$SYSTEM" "$TEXT_PROMPT" "$N"
