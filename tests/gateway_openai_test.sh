#!/usr/bin/env bash
# The official `openai` npm client against `omni gateway` on loopback: streamed and whole chat and
# text completions must hold exactly the text `omni run` produces greedily (and seeded) on the same
# model, plus the error statuses and cancellation on disconnect. Usage: OMNI SHARED_DIR
set -euo pipefail
OMNI="$1"; SHARED="$2"
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/gateway_lib.sh"
require_node_modules
MODEL="$SHARED/models/synth-llama-q8_0.gguf"
WORK="$(mktemp -d)"; trap 'stop_gateway; rm -rf "$WORK"' EXIT

CHAT_PROMPT="Tell me about the ocean."
TEXT_PROMPT="Once upon a time"
N=24
# The expected outputs, from `omni run` (stdout is the text plus a final newline; stderr says how
# many tokens it generated). The gateway falls back to chatml for a model without a template.
"$OMNI" run -m "$MODEL" -p "$CHAT_PROMPT" --chat --chat-template chatml -n $N --temp 0 -t 2 >"$WORK/chat.txt" 2>"$WORK/chat.err"
"$OMNI" run -m "$MODEL" -p "$TEXT_PROMPT" -n $N --temp 0 -t 2 >"$WORK/text.txt" 2>"$WORK/text.err"
"$OMNI" run -m "$MODEL" -p "$CHAT_PROMPT" --chat --chat-template chatml -n $N --temp 0.9 --top-k 0 --top-p 0.9 \
  --min-p 0 --seed 1234 -t 2 >"$WORK/seeded.txt" 2>"$WORK/seeded.err"
# Greedy ids with their log-probs and 3 alternatives, one JSON line per token.
"$OMNI" run -m "$MODEL" -p "$CHAT_PROMPT" --chat --chat-template chatml -n $N --temp 0 -t 2 --json --top-logprobs 3 \
  >"$WORK/chat.jsonl" 2>/dev/null
# A prompt with its token ids as an independent implementation tokenized it (shared/reference), for
# token-array prompts, and `omni run`'s greedy text for it.
cp "$SHARED/reference/synth-llama-q8_0.json" "$WORK/reference.json"
REF_PROMPT="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["prompts"][0]["prompt"], end="")' "$WORK/reference.json")"
"$OMNI" run -m "$MODEL" -p "$REF_PROMPT" -n 8 --temp 0 -t 2 >"$WORK/reference.txt" 2>/dev/null

start_gateway "$OMNI" "$MODEL" --threads 1 --max-sessions 4
echo "gateway at $GATEWAY_URL"
node "$HERE/gateway_openai_test.mjs" "$GATEWAY_URL" "$WORK" "$WEB_DIR" "$CHAT_PROMPT" "$TEXT_PROMPT" "$N"

# Per-client rate limit: 2 requests a minute, so the third is a 429 with Retry-After.
stop_gateway
start_gateway "$OMNI" "$MODEL" --threads 1 --rate-requests 2
BODY='{"model":"synth-llama-q8_0","prompt":"hi","max_tokens":2}'
for i in 1 2; do
  code="$(curl -s -o /dev/null -w '%{http_code}' "$GATEWAY_URL/v1/completions" -d "$BODY")"
  [ "$code" = 200 ] || { echo "FAIL: request $i under the rate limit got $code"; exit 1; }
done
curl -s -D "$WORK/headers" -o "$WORK/body" -w '%{http_code}' "$GATEWAY_URL/v1/completions" -d "$BODY" >"$WORK/code"
[ "$(cat "$WORK/code")" = 429 ] || { echo "FAIL: the third request got $(cat "$WORK/code"), not 429"; exit 1; }
grep -qi '^Retry-After: [1-9]' "$WORK/headers" || { echo "FAIL: 429 without Retry-After"; cat "$WORK/headers"; exit 1; }
grep -q '"code":"rate_limit_exceeded"' "$WORK/body" || { echo "FAIL: 429 body: $(cat "$WORK/body")"; exit 1; }
echo "ok   rate limit: 429 with Retry-After on the third request"
