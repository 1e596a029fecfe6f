#!/usr/bin/env bash
# omni's command line, table-driven: each row runs omni with some arguments and checks the exit code
# (0 ok, 1 runtime error, 2 usage error) and a piece of what it printed (for refusals: the flag's
# name). Then `-n -1` runs on a shared model, checked against the token counts omni reports.
# Usage: cli_flags_test.sh OMNI SHARED_DIR
set -uo pipefail
omni="$1"
shared="$2"
model="$shared/models/synth-llama-q8_0.gguf"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
rows=0

# expect CODE TEXT ARGS...: omni ARGS exits with CODE and prints TEXT (stdout or stderr).
expect() {
  local code="$1" text="$2"
  shift 2
  rows=$((rows + 1))
  "$omni" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local got=$?
  if [ "$got" != "$code" ]; then
    echo "FAIL: omni $* exited $got, expected $code: $(head -c 400 "$tmp/err")"
    failures=$((failures + 1))
  elif ! grep -qF -- "$text" "$tmp/out" "$tmp/err"; then
    echo "FAIL: omni $* printed no '$text': $(head -c 400 "$tmp/out" "$tmp/err")"
    failures=$((failures + 1))
  elif [ "$code" = 2 ] && ! grep -q -- "--help' for usage" "$tmp/err"; then
    echo "FAIL: omni $* gave no usage hint: $(cat "$tmp/err")"
    failures=$((failures + 1))
  fi
}

run=(run -m "$model" -p "Once upon a time" -t 1)
version=$(sed -n 's/^project(omninode VERSION \([0-9.]*\).*/\1/p' "$(dirname "$0")/../CMakeLists.txt")
[ -n "$version" ] || { echo "FAIL: no project version in CMakeLists.txt"; exit 1; }

# Good command lines.
expect 0 "omni $version" --version
expect 0 "CPU kernels" --version
expect 0 "Subcommands:" help
expect 0 "--n-predict" help run
expect 0 "status" help swarm
expect 0 "Usage: omni run" help run
expect 0 "--n-predict" run --help
# Runtime errors: the command line is fine, the run fails.
expect 1 "omni inspect: " inspect "$tmp/missing.gguf"
expect 1 "omni run: " run -m "$tmp/missing.gguf" -p hi
expect 1 "omni quantize: " quantize "$tmp/missing.gguf" "$tmp/out.gguf" q8_0
# Usage errors, each naming the flag or argument that is wrong.
expect 2 "A subcommand is required"
expect 2 "nosuch" nosuch
expect 2 "nosuch" help nosuch
expect 2 "--frobnicate" "${run[@]}" --frobnicate
expect 2 "--model" run -p hi
expect 2 "--route" "${run[@]}" --route star
expect 2 "ring, chain or direct" "${run[@]}" --route star
expect 2 "--hidden-format" "${run[@]}" --hidden-format f8
expect 2 "--n-predict" "${run[@]}" -n -2
expect 2 "--n-predict" "${run[@]}" -n many
expect 2 "--top-logprobs" "${run[@]}" --top-logprobs 5
expect 2 "--top-logprobs" "${run[@]}" --json --top-logprobs -1
expect 2 "--temp" "${run[@]}" --temp -0.5
expect 2 "--temp" "${run[@]}" --temp nan
expect 2 "--top-p" "${run[@]}" --top-p 1.5
expect 2 "--min-p" "${run[@]}" --min-p -0.1
expect 2 "--top-k" "${run[@]}" --top-k -1
expect 2 "--repeat-penalty" "${run[@]}" --repeat-penalty 0
expect 2 "--repeat-last-n" "${run[@]}" --repeat-last-n -2
expect 2 "--seed" "${run[@]}" --seed -1
expect 2 "--threads" run -m "$model" -p hi -t 5000
expect 2 "--threads" run -m "$model" -p hi -t 0
expect 2 "--threads" run -m "$model" -p hi --threads -4
expect 2 "--ctx-size" "${run[@]}" -c -5
expect 2 "--peers" "${run[@]}" --peers nonsense
expect 2 "--peers" "${run[@]}" --peers "127.0.0.1:99999"
expect 2 "--hop-addresses" "${run[@]}" --peers 127.0.0.1:7000 --hop-addresses "x@127.0.0.1:7000"
expect 2 "--bootstrap" "${run[@]}" --bootstrap ":7000"
expect 2 "--bootstrap" "${run[@]}" --bootstrap "127.0.0.1:7000,host"
expect 2 "excludes" "${run[@]}" --peers 127.0.0.1:7000 --bootstrap 127.0.0.1:7001
expect 2 "--timeout" "${run[@]}" --timeout 0
expect 2 "--timeout" "${run[@]}" --timeout -3
expect 2 "--stall-timeout" "${run[@]}" --stall-timeout -1
expect 2 "--chunks" perplexity -m "$model" -f "$tmp/x" --chunks -1
expect 2 "--ctx-size" perplexity -m "$model" -f "$tmp/x" -c 1
expect 2 "--n-gen" bench -m "$model" -n -1
expect 2 "--n-prompt" bench -m "$model" -p -5
expect 2 "--reps" bench -m "$model" --reps 0
expect 2 "--max-items" inspect "$model" --max-items -3
expect 2 "unknown tensor type 'bogus'" synth --shape tinyllama-1.1b --type bogus "$tmp/x.gguf"
expect 2 "cannot synthesize tensor type iq2_xxs" synth --shape tinyllama-1.1b --type iq2_xxs "$tmp/x.gguf"
expect 2 "--layers" synth --shape tinyllama-1.1b --layers -1 "$tmp/x.gguf"
expect 2 "--threads" synth --shape tinyllama-1.1b --threads 99999 "$tmp/x.gguf"
expect 2 "--shape" synth "$tmp/x.gguf"
expect 2 "type" quantize "$model" "$tmp/out.gguf" bogus
expect 2 "--chunk-kib" shard "$model" --store "$tmp/s" --chunk-kib 2
# Model URLs: a malformed pinned hash or hf: name is refused before any download.
expect 2 "--model-sha256" "${run[@]}" --model-sha256 abc
expect 2 "--model-sha256" node -m "$model" --blocks 0:1 --model-sha256 "$(printf 'g%.0s' $(seq 64))"
expect 1 "want hf:ORG/REPO/FILE.gguf" run -m hf:org/only -p x --data-dir "$tmp/d"
expect 1 "names no file" inspect http://127.0.0.1:9/
expect 2 "--verify" shard --store "$tmp/s"
expect 2 "--listen" gateway -m "$model" --listen nohost
expect 2 "--listen" gateway -m "$model" --listen "[::1]"
expect 2 "--max-sessions" gateway -m "$model" --max-sessions 0
expect 2 "--rate-requests" gateway -m "$model" --rate-requests -1
expect 2 "--threads" gateway -m "$model" -t 2000
expect 2 "--max-connections" gateway -m "$model" --max-connections 0
expect 2 "--max-connections-per-ip" gateway -m "$model" --max-connections-per-ip 0
expect 2 "--head-timeout" gateway -m "$model" --head-timeout 0
expect 2 "--body-timeout" gateway -m "$model" --body-timeout nan
expect 2 "--api-key" gateway -m "$model" --api-key "two words"
expect 2 "--allowed-host" gateway -m "$model" --allowed-host "a/b"
expect 2 "--allowed-origin" gateway -m "$model" --allowed-origin "https://app.example.com/path"
expect 1 "--api-key-file" gateway -m "$model" --api-key-file "$tmp/missing-keys"
expect 2 "--model is required without --bootstrap" gateway --listen 127.0.0.1:0
expect 2 "--hidden-format" gateway --bootstrap 127.0.0.1:1 --hidden-format f8
expect 2 "--bootstrap" gateway --bootstrap nohost
expect 2 "--max-models" gateway --bootstrap 127.0.0.1:1 --max-models 0
expect 2 "--peers" gateway --peers 127.0.0.1:1 --bootstrap 127.0.0.1:2 -m x
expect 2 "--nodes" up --nodes 0
expect 2 "--join" up --join nohost
expect 2 "--listen" up --listen nohost
expect 2 "--bootstrap" swarm status
expect 2 "--lan" swarm status --wait-ms 5
expect 2 "--bootstrap" swarm status --bootstrap "::1:7000"
expect 2 "--wait-ms" swarm status --lan --wait-ms -5
expect 2 "--listen" relay --listen "1.2.3:80"
expect 2 "--announce" relay --announce "relay host:80"
expect 2 "--idle-timeout" relay --idle-timeout 0
expect 2 "--max-nodes" relay --max-nodes 0
expect 2 "--max-per-source" relay --max-per-source 0
expect 2 "--max-relayed" relay --max-relayed 0
expect 2 "--first-byte-timeout" relay --first-byte-timeout 0
expect 2 "--blocks" node -m "$model" --blocks 3:1
expect 2 "--blocks" node -m "$model" --blocks 1-3
expect 2 "--listen" node -m "$model" --listen nohost
expect 2 "--threads" node -m "$model" -t 0
expect 2 "--peers" node -m "$model" --peers "@:1"
expect 2 "--bootstrap" node -m "$model" --bootstrap "::1:7000"
expect 2 "--idle-timeout" node -m "$model" --idle-timeout 0
expect 2 "--fetch-timeout" node -m "$model" --fetch-timeout -1
expect 2 "--max-sessions" node -m "$model" --max-sessions 0
expect 2 "--max-sessions-per-client" node -m "$model" --max-sessions-per-client 0
expect 2 "--max-sinks-per-client" node -m "$model" --max-sinks-per-client 0
expect 2 "--max-queued-tokens-per-client" node -m "$model" --max-queued-tokens-per-client 0
expect 2 "--compute-slice" node -m "$model" --compute-slice 1
expect 1 "--max-queued-tokens-per-client" node -m "$model" --listen 127.0.0.1:0 --blocks 0:1 --data-dir "$tmp/nd" --max-queued-tokens-per-client 100
expect 2 "--rebalance-factor" node -m "$model" --rebalance-factor 0.5
expect 1 "nonexistent.gguf" node -m "$tmp/nonexistent.gguf" --listen 127.0.0.1:0 --blocks 0:1
expect 2 "--blocks" fetch bexample --peers 127.0.0.1:1 --store "$tmp/s" --blocks 4:3
expect 2 "--blocks" fetch bexample --peers 127.0.0.1:1 --store "$tmp/s" --blocks 1-3
expect 2 "--peers" fetch bexample --peers "@:1" --store "$tmp/s"
# Nothing was written by the refused commands.
[ ! -e "$tmp/x.gguf" ] && [ ! -e "$tmp/out.gguf" ] && [ ! -e "$tmp/s" ] || {
  echo "FAIL: a refused command left files: $(ls "$tmp")"
  failures=$((failures + 1))
}

# -n -1: until the end of generation or a full context, as llama.cpp. With --ignore-eos the context
# must fill: one JSON line per generated token, and generated = context - prompt tokens.
stats() {  # prompt tokens, generated tokens, context, finish from omni run's summary line
  sed -n 's/.*prompt \([0-9]*\) tokens.*generated \([0-9]*\) tokens.*finish: \([a-z]*\),.*context \([0-9]*\),.*/\1 \2 \4 \3/p' "$1"
}
rows=$((rows + 1))
if "$omni" "${run[@]}" -n -1 -c 24 --temp 0 --ignore-eos --json >"$tmp/full.json" 2>"$tmp/full.err"; then
  read -r p g c finish <<<"$(stats "$tmp/full.err")"
  lines=$(wc -l <"$tmp/full.json")
  if [ "$c" != 24 ] || [ "$finish" != context ] || [ "$g" != $((c - p)) ] || [ "$lines" != "$g" ]; then
    echo "FAIL: -n -1 --ignore-eos: prompt $p, generated $g ($lines lines), context $c, finish $finish"
    failures=$((failures + 1))
  fi
else
  echo "FAIL: -n -1 --ignore-eos exited $?: $(cat "$tmp/full.err")"
  failures=$((failures + 1))
fi
# Without --ignore-eos it stops at the first end-of-generation token, or at the full context.
rows=$((rows + 1))
if "$omni" "${run[@]}" -n -1 -c 48 --temp 0.9 --seed 3 >"$tmp/eos.txt" 2>"$tmp/eos.err"; then
  read -r p g c finish <<<"$(stats "$tmp/eos.err")"
  if ! { [ "$finish" = context ] && [ "$g" = $((c - p)) ]; } && ! { [ "$finish" = stop ] && [ "$g" -lt $((c - p)) ]; }; then
    echo "FAIL: -n -1: prompt $p, generated $g, context $c, finish $finish"
    failures=$((failures + 1))
  fi
else
  echo "FAIL: -n -1 exited $?: $(cat "$tmp/eos.err")"
  failures=$((failures + 1))
fi
# A prompt that fills the context leaves nothing to generate: a runtime error, not a silent no-op.
expect 1 "no room" "${run[@]}" -n -1 -c 2
# A length or context past the model's training context is refused, not allocated.
expect 1 "training context" "${run[@]}" -n 2000000000
expect 1 "training context" "${run[@]}" -c 4000000000 -n 1

# The model source group: perplexity of a model CID in a store equals that of the file it came from.
rows=$((rows + 1))
text="$shared/reference/text.txt"
cid=$("$omni" shard "$model" --store "$tmp/store" 2>/dev/null)
from_file=$("$omni" perplexity -m "$model" -f "$text" -c 128 --chunks 2 -t 1 2>&1 | grep "PPL")
from_store=$("$omni" perplexity -m "$cid" --store "$tmp/store" -f "$text" -c 128 --chunks 2 -t 1 2>&1 | grep "PPL")
if [ -z "$from_file" ] || [ "$from_file" != "$from_store" ]; then
  echo "FAIL: perplexity from the file '$from_file', from the store '$from_store'"
  failures=$((failures + 1))
fi

echo "cli flags: $rows rows, $failures failed"
[ "$failures" = 0 ]
