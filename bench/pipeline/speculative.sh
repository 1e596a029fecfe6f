#!/usr/bin/env bash
# Speculative decoding under the emulated WAN of run.sh (3 nodes, one-way 10 ms client-node 1,
# 25 ms node 1-2, 50 ms node 2-3, 60 ms node 3-client; ring route, F16 hidden states): generated
# tokens per second of the same greedy run without drafts, with a draft model (--draft) and with
# prompt lookup on repetitive text, each ratio against the plain run measured in the same
# invocation; the outputs must be identical to the plain run's. Acceptance rate and mean K come
# from `omni run`'s summary line.
#
#   bench/pipeline/speculative.sh --target F16.gguf --draft Q8_0.gguf [--omni BIN] [--linkemu BIN]
#       [--split 8,7,7] [--tokens 48] [--threads 1] [--draft-max 8] [--workdir DIR]
#
# Make the pair with `omni synth --shape tinyllama-1.1b --type f16 --seed 1 F16.gguf` and
# `omni quantize F16.gguf Q8_0.gguf q8_0` (the same random weights: only close quantizations of a
# random-weight model agree often enough to be a useful draft).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
measure="python3 $here/measure.py"
target="" draft="" omni="" linkemu="" split=8,7,7 tokens=48 threads=1 draft_max=8 workdir=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --target) target=$2; shift 2 ;;
    --draft) draft=$2; shift 2 ;;
    --omni) omni=$2; shift 2 ;;
    --linkemu) linkemu=$2; shift 2 ;;
    --split) split=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --draft-max) draft_max=$2; shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "speculative.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -f $target && -f $draft ]] || { echo "speculative.sh: give --target and --draft GGUF files" >&2; exit 2; }
[[ -n $omni ]] || omni=$repo/build/apps/omni/omni
[[ -n $linkemu ]] || linkemu=$repo/build/src/linkemu/omni-linkemu
D_C1=${D_C1:-10}; D_12=${D_12:-25}; D_23=${D_23:-50}; D_C2=${D_C2:-30}; D_C3=${D_C3:-60}
[[ -n $workdir ]] || workdir=$(mktemp -d /tmp/omni-speculative.XXXXXX)
mkdir -p "$workdir"

source "$here/wan_nodes.sh"
start_wan_nodes "$target" "$split" "$threads"

# run NAME PROMPT ARGS...: prints "tok/s acceptance mean-K" from the summary line.
run() {
  local name=$1 prompt=$2; shift 2
  "$omni" run -m "$target" --peers "$peers" --hop-addresses "$hops" -p "$prompt" -n "$tokens" --temp 0 \
    --ignore-eos --json -t "$threads" --data-dir "$workdir/client" "$@" > "$workdir/$name.json" 2> "$workdir/$name.err" ||
    { echo "speculative.sh: $name failed: $(tail -3 "$workdir/$name.err")" >&2; exit 1; }
  python3 - "$workdir/$name.err" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rate = re.search(r"generated \d+ tokens in [\d.]+ s \(([\d.]+) tok/s\)", text).group(1)
m = re.search(r"K mean ([\d.]+), acceptance (\d+)%", text)
print(rate, (m.group(2) + "%") if m else "-", m.group(1) if m else "0")
PY
}

story="Once upon a time"
repetitive="alpha beta gamma delta epsilon zeta eta theta alpha beta gamma delta epsilon zeta eta theta alpha beta gamma delta"
echo "target $(basename "$target"), draft $(basename "$draft"); split $split; $tokens tokens; $threads thread(s) per process"
read -r plain _ _ < <(run plain "$story" --lookup off)
read -r drafted acc k < <(run draft "$story" --lookup off --draft "$draft" --draft-max "$draft_max")
cmp -s "$workdir/plain.json" "$workdir/draft.json" || { echo "speculative.sh: the drafted output differs" >&2; exit 1; }
read -r rplain _ _ < <(run rplain "$repetitive" --lookup off)
read -r lookup lacc lk < <(run lookup "$repetitive" --lookup on --draft-max "$draft_max")
cmp -s "$workdir/rplain.json" "$workdir/lookup.json" || { echo "speculative.sh: the lookup output differs" >&2; exit 1; }
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
printf '%-34s %8s tok/s\n' "plain (one token per trip)" "$plain"
printf '%-34s %8s tok/s  x%s  acceptance %s, mean K %s\n' "draft model (K <= $draft_max)" "$drafted" "$(ratio "$drafted" "$plain")" "$acc" "$k"
printf '%-34s %8s tok/s\n' "plain, repetitive prompt" "$rplain"
printf '%-34s %8s tok/s  x%s  acceptance %s, mean K %s\n' "prompt lookup, repetitive prompt" "$lookup" "$(ratio "$lookup" "$rplain")" "$lacc" "$lk"
echo "outputs identical to the plain runs"
