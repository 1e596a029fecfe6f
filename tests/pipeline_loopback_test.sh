#!/usr/bin/env bash
# Pipeline-parallel inference on 127.0.0.1: for every shared model, three `omni node` processes
# serving the blocks split three ways, and `omni run --peers` against them, compared with a local
# `omni run` of the same model: with F32 hidden states the output must be byte-identical (ring,
# chain and direct routes); F16 and Q8 runs (ring, the default) are reported (first divergence,
# largest log-prob difference).
set -euo pipefail
omni=$1 shared=$2
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
trap 'cleanup_nodes; rm -rf "$tmp"' EXIT

prompt="Once upon a time, in a small village"
args=(-p "$prompt" -n 16 --temp 0 --json --top-logprobs 5 -t 1)
for model in "$shared"/models/*.gguf; do
  name=$(basename "$model" .gguf)
  n_layer=$("$omni" inspect "$model" --no-tensors | awk '$2 ~ /\.block_count$/ {print $4}')
  [ -n "$n_layer" ] || fail "$name: no block_count"
  peers=()
  i=0
  for blocks in $(splits "$n_layer"); do
    start_node "$name-$i" "$model" "$blocks"
    peers+=("$NODE_ADDR")
    i=$((i + 1))
  done
  list=$(IFS=,; echo "${peers[*]}")
  "$omni" run -m "$model" "${args[@]}" >"$tmp/local.json" 2>"$tmp/local.err" || fail "$name local: $(cat "$tmp/local.err")"
  [ "$(wc -l <"$tmp/local.json")" -ge 1 ] || fail "$name: local run produced nothing"
  for route in ring chain direct; do
    "$omni" run -m "$model" "${args[@]}" --peers "$list" --route $route --hidden-format f32 --data-dir "$tmp/client" \
      >"$tmp/remote.json" 2>"$tmp/remote.err" || fail "$name $route f32: $(cat "$tmp/remote.err")"
    cmp -s "$tmp/local.json" "$tmp/remote.json" ||
      fail "$name $route f32 differs from the local run: $(compare_runs "$tmp/local.json" "$tmp/remote.json")"
  done
  report="$name: f32 ring+chain+direct identical"
  for format in f16 q8; do
    "$omni" run -m "$model" "${args[@]}" --peers "$list" --hidden-format $format --data-dir "$tmp/client" \
      >"$tmp/remote.json" 2>"$tmp/remote.err" || fail "$name $format: $(cat "$tmp/remote.err")"
    read -r same diff first <<<"$(compare_runs "$tmp/local.json" "$tmp/remote.json")"
    report+="; $format: ids $same (first divergence at token $first), max |dlogprob| before it $diff"
    # Before the first divergence, the log-probs must agree to within what F16/Q8 rounding allows.
    python3 -c "import sys; sys.exit(0 if float('$diff') < 2.0 else 1)" || fail "$name $format: logprob diff $diff"
  done
  echo "$report"
  cleanup_nodes
done
echo "PASS"
