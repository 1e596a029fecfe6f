#!/usr/bin/env bash
# Tool calling and structured output through three real client libraries against `omni gateway`:
# the official `openai` npm client, the Vercel AI SDK (`ai` with `@ai-sdk/openai-compatible`) and
# the `ollama` npm client each run a tool round trip (a grammar-enforced call, the tool's result
# sent back, an answer) and a JSON Schema request whose answer must validate. The model has random
# weights, so calls are forced (tool_choice required or named); the template is Qwen2.5's (Hermes
# <tool_call> format), given with --chat-template-file. Usage: OMNI SHARED_DIR
set -euo pipefail
OMNI="$1"; SHARED="$2"
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/gateway_lib.sh"
require_node_modules
for pkg in ollama ai @ai-sdk/openai-compatible; do
  if [ ! -d "$WEB_DIR/node_modules/$pkg" ]; then
    echo "SKIP: $WEB_DIR/node_modules/$pkg is missing; run 'npm ci' in web/ (scripts/setup.sh does)"; exit 77
  fi
done
MODEL="$SHARED/models/synth-qwen2-q8_0.gguf"
TEMPLATE="$HERE/data/templates/Qwen-Qwen2.5-7B-Instruct.jinja"
WORK="$(mktemp -d)"; trap 'stop_gateway; rm -rf "$WORK"' EXIT

start_gateway "$OMNI" "$MODEL" --threads 1 --max-sessions 4 --chat-template-file "$TEMPLATE"
echo "gateway at $GATEWAY_URL"
node "$HERE/gateway_tools_test.mjs" "$GATEWAY_URL" "$WEB_DIR"
