#!/usr/bin/env bash
# Pipelined prefill under the emulated WAN of run.sh (3 nodes, one-way 10 ms client-node 1, 25 ms
# node 1-2, 50 ms node 2-3, 60 ms node 3-client, 20 Mbit/s per direction; F16 hidden states): time to
# first token of a long prompt (`omni run`'s "prompt N tokens in S s": the prefill, from which the
# first token is sampled) with the prompt sent one batch at a time (--micro-batch 0) and pipelined
# (--micro-batch M), on the ring and the chain routes, interleaved --repeat times; medians and the
# ratio against the unpipelined run of the same route, measured in the same invocation. The first
# generated tokens and their log-probs (--json) must be identical.
#
#   bench/pipeline/prefill.sh --model FILE [--omni BIN] [--linkemu BIN] [--split 2,1,1]
#       [--prompt-tokens 2048] [--micro-batch 128] [--threads 1] [--repeat 3] [--routes "ring chain"]
#       [--workdir DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
measure="python3 $here/measure.py"
model="" omni="" linkemu="" split=2,1,1 prompt_tokens=2048 micro=128 threads=1 repeat=3 routes="ring chain" workdir=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --omni) omni=$2; shift 2 ;;
    --linkemu) linkemu=$2; shift 2 ;;
    --split) split=$2; shift 2 ;;
    --prompt-tokens) prompt_tokens=$2; shift 2 ;;
    --micro-batch) micro=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --routes) routes=$2; shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "prefill.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -f $model ]] || { echo "prefill.sh: give --model FILE (a GGUF)" >&2; exit 2; }
[[ -n $omni ]] || omni=$repo/build/apps/omni/omni
[[ -n $linkemu ]] || linkemu=$repo/build/src/linkemu/omni-linkemu
D_C1=${D_C1:-10}; D_12=${D_12:-25}; D_23=${D_23:-50}; D_C2=${D_C2:-30}; D_C3=${D_C3:-60}
[[ -n $workdir ]] || workdir=$(mktemp -d /tmp/omni-prefill.XXXXXX)
mkdir -p "$workdir"

source "$here/wan_nodes.sh"
ctx=$(( prompt_tokens + 64 ))
start_wan_nodes "$model" "$split" "$threads" --max-length "$ctx"

# A prompt of exactly --prompt-tokens tokens: BOS and words that are one token each in a Llama
# vocabulary (checked with a local run, which prints the count).
prompt=$(python3 -c "import sys; w='the of and to in is'.split(); print(' '.join(w[i % len(w)] for i in range(int(sys.argv[1]) - 1)))" "$prompt_tokens")
got=$("$omni" run -m "$model" -p "$prompt" -n 1 --temp 0 -t "$threads" -c "$ctx" --lookup off 2>&1 >/dev/null |
      sed -n 's/.*prompt \([0-9]*\) tokens in.*/\1/p')
[[ $got == "$prompt_tokens" ]] || { echo "prefill.sh: the prompt is $got tokens, not $prompt_tokens (not a Llama vocabulary?)" >&2; exit 1; }

# run NAME ROUTE MICRO: prints the prefill's seconds from the summary line.
run() {
  local name=$1 route=$2 mb=$3
  "$omni" run -m "$model" --peers "$peers" --hop-addresses "$hops" --route "$route" -p "$prompt" -n 4 --temp 0 \
    --ignore-eos --json -t "$threads" -c "$ctx" --micro-batch "$mb" --lookup off --data-dir "$workdir/client" \
    > "$workdir/$name.json" 2> "$workdir/$name.err" ||
    { echo "prefill.sh: $name failed: $(tail -3 "$workdir/$name.err")" >&2; exit 1; }
  sed -n 's/.*prompt [0-9]* tokens in \([0-9.]*\) s.*/\1/p' "$workdir/$name.err"
}

echo "model $(basename "$model") ($n_layer blocks, d $n_embd), split $split, prompt $prompt_tokens tokens, micro-batch $micro, $threads thread(s) per process"
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
median() { python3 -c "import statistics, sys; print('%.3f' % statistics.median(map(float, sys.argv[1:])))" "$@"; }
for route in $routes; do
  plain=(); piped=()
  for r in $(seq 1 "$repeat"); do
    s=$(run "$route-plain-$r" "$route" 0); plain+=("$s")
    s=$(run "$route-piped-$r" "$route" "$micro"); piped+=("$s")
    cmp -s "$workdir/$route-plain-$r.json" "$workdir/$route-piped-$r.json" ||
      { echo "prefill.sh: the pipelined run's tokens differ ($route, run $r)" >&2; exit 1; }
  done
  mp=$(median "${plain[@]}"); mq=$(median "${piped[@]}")
  printf '%-6s time to first token: one batch at a time %s s (runs: %s), pipelined %s s (runs: %s): x%s\n' \
    "$route" "$mp" "${plain[*]}" "$mq" "${piped[*]}" "$(python3 -c "print('%.2f' % ($mp / $mq))")"
done
echo "first generated tokens identical in every pair"
