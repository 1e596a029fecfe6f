#!/usr/bin/env bash
# Speculative decoding keeps greedy output byte-identical (ids, log-probs, top lists: the --json
# lines) to one token per call: an F16 target with its Q8_0 copy as the draft (--draft) and with
# prompt lookup (--lookup on), locally and through three `omni node` processes on 127.0.0.1 (ring,
# chain and direct routes, F16 hidden states). Each drafted run must have verified drafts (its
# summary line reports rounds), so the comparison is not between two plain runs.
set -euo pipefail
omni=$1 shared=$2
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
trap 'cleanup_nodes; rm -rf "$tmp"' EXIT

target="$shared/models/synth-llama-f16.gguf"
draft="$shared/models/synth-llama-q8_0.gguf"
[ -f "$target" ] && [ -f "$draft" ] || { echo "SKIP: shared models missing"; exit 77; }
prompt="one two three four five one two three four five one two three"
# 120 tokens: the random-weight model's greedy text repeats a few tokens (prompt lookup finds
# them); --draft-fixed drafts on every round whatever the timing.
args=(-m "$target" -p "$prompt" -n 120 --temp 0 --json --top-logprobs 5 -t 1)

# check NAME FILE.err: the run verified drafts.
drafted() { grep -q "acceptance .* over [1-9][0-9]* rounds" "$2" || fail "$1: no drafts were verified: $(tail -2 "$2")"; }

"$omni" run "${args[@]}" --lookup off >"$tmp/plain.json" 2>"$tmp/plain.err" || fail "plain: $(cat "$tmp/plain.err")"
[ "$(wc -l <"$tmp/plain.json")" -eq 120 ] || fail "plain run: $(wc -l <"$tmp/plain.json") tokens"
for mode in draft lookup; do
  extra=(--draft "$draft" --draft-fixed); [ $mode = lookup ] && extra=(--lookup on --draft-fixed)
  "$omni" run "${args[@]}" "${extra[@]}" >"$tmp/$mode.json" 2>"$tmp/$mode.err" || fail "local $mode: $(cat "$tmp/$mode.err")"
  drafted "local $mode" "$tmp/$mode.err"
  cmp -s "$tmp/plain.json" "$tmp/$mode.json" ||
    fail "local $mode differs from one token per call: $(compare_runs "$tmp/plain.json" "$tmp/$mode.json")"
  echo "local $mode: identical; $(grep -o "drafts (.*" "$tmp/$mode.err")"
done

peers=()
i=0
for blocks in $(splits 4); do
  start_node "node-$i" "$target" "$blocks"
  peers+=("$NODE_ADDR")
  i=$((i + 1))
done
list=$(IFS=,; echo "${peers[*]}")
for route in ring chain direct; do
  remote=(--peers "$list" --route $route --data-dir "$tmp/client")
  "$omni" run "${args[@]}" "${remote[@]}" --lookup off >"$tmp/rplain.json" 2>"$tmp/rplain.err" ||
    fail "$route plain: $(cat "$tmp/rplain.err")"
  for mode in draft lookup; do
    extra=(--draft "$draft" --draft-fixed); [ $mode = lookup ] && extra=(--lookup on --draft-fixed)
    "$omni" run "${args[@]}" "${remote[@]}" "${extra[@]}" >"$tmp/r$mode.json" 2>"$tmp/r$mode.err" ||
      fail "$route $mode: $(cat "$tmp/r$mode.err")"
    drafted "$route $mode" "$tmp/r$mode.err"
    cmp -s "$tmp/rplain.json" "$tmp/r$mode.json" ||
      fail "$route $mode differs from one token per call: $(compare_runs "$tmp/rplain.json" "$tmp/r$mode.json")"
    echo "$route $mode: identical; $(grep -o "drafts (.*" "$tmp/r$mode.err")"
  done
done
echo "PASS"
