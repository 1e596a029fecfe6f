#!/usr/bin/env bash
# Side-by-side engine speed: `omni bench` against llama.cpp's `llama-bench` on the same files, same
# threads, same machine, run alternately so that background load hits both alike.
#
#   bench/compare_llama_cpp.sh PEER_BIN_DIR [options]
#     PEER_BIN_DIR     directory holding llama.cpp's llama-bench (a CPU-only Release build made by
#                      hand outside this repository; this script only runs it)
#     --omni PATH      the omni binary (default: build/apps/omni/omni)
#     --dir DIR        where the synthetic models are made and kept (default: /tmp/omni-bench-models)
#     --runs N         alternating runs per model (default 5); figures are medians
#     --models LIST    space-separated SHAPE:TYPE (default: the issue's four)
#     --kernels LEVEL  cap omni's kernel level (OMNI_KERNELS: avx2 emulates an AVX2-only x86 CPU on
#                      an AVX-512 one; compare with a peer built without AVX-512 then)
#     -p N, -n N, -t N prompt tokens, generated tokens, threads (default 512, 128, 2)
#
# Models are made by `omni synth` (deterministic: seed 1) when missing. Prints one table row per
# model and figure with both medians and the ratio omni / llama.cpp (> 1: omni is faster; for peak
# RSS < 1 is better), and writes the raw runs to DIR/compare-<date>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
peer_dir=$1; shift
omni=build/apps/omni/omni
dir=/tmp/omni-bench-models
runs=5
models="tinyllama-1.1b:q4_0 tinyllama-1.1b:q8_0 tinyllama-1.1b:q4_k_m qwen2.5-0.5b:q8_0"
n_prompt=512 n_gen=128 threads=2
kernels=
while [ $# -gt 0 ]; do
  case $1 in
    --omni) omni=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --kernels) kernels=$2; shift 2 ;;
    -p) n_prompt=$2; shift 2 ;;
    -n) n_gen=$2; shift 2 ;;
    -t) threads=$2; shift 2 ;;
    *) usage ;;
  esac
done
peer=$peer_dir/llama-bench
[ -x "$peer" ] || { echo "compare_llama_cpp: no executable llama-bench in $peer_dir" >&2; exit 1; }
[ -x "$omni" ] || { echo "compare_llama_cpp: no omni binary at $omni (build first, or pass --omni)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "compare_llama_cpp: needs GNU time (apt-get install time)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "compare_llama_cpp: needs python3 to read the JSON results" >&2; exit 1; }
mkdir -p "$dir"
raw=$dir/compare-$(date +%Y%m%d-%H%M%S).jsonl

if [ -n "$kernels" ]; then export OMNI_KERNELS=$kernels; else unset OMNI_KERNELS; fi
echo "omni: $omni ($(git rev-parse --short HEAD 2>/dev/null || echo '?')), kernels ${kernels:-automatic}; peer: $peer (its build id is in the raw runs)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime); $(getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu) cores online"
echo "threads $threads, pp$n_prompt / tg$n_gen, $runs alternating runs per model, medians; raw runs: $raw"
echo
printf '| %-24s | %-7s | %12s | %12s | %8s |\n' model figure omni llama.cpp ratio
printf '|%s|%s|%s|%s|%s|\n' "--------------------------" "---------" "-------------:" "-------------:" "---------:"

for spec in $models; do
  shape=${spec%%:*} type=${spec##*:}
  file=$dir/$shape-$type.gguf
  if [ ! -f "$file" ]; then
    echo "making $file ..." >&2
    "$omni" synth --shape "$shape" --type "$type" --seed 1 "$file.tmp" >&2 && mv "$file.tmp" "$file"
  fi
  for ((i = 1; i <= runs; i++)); do
    # omni first on odd runs, llama.cpp first on even ones.
    order="omni peer"; [ $((i % 2)) -eq 0 ] && order="peer omni"
    for who in $order; do
      tmp=$(mktemp)
      if [ "$who" = omni ]; then
        /usr/bin/time -f "%M" -o "$tmp.rss" "$omni" bench -m "$file" -p "$n_prompt" -n "$n_gen" -t "$threads" -r 1 --json >"$tmp"
      else
        /usr/bin/time -f "%M" -o "$tmp.rss" "$peer" -m "$file" -p "$n_prompt" -n "$n_gen" -t "$threads" -r 1 -o json >"$tmp" 2>/dev/null
      fi
      python3 - "$who" "$spec" "$tmp" "$tmp.rss" >>"$raw" <<'EOF'
import json, sys
who, spec, path, rss_path = sys.argv[1:5]
data = json.load(open(path))
rss_kib = int(open(rss_path).read().split()[-1])
out = {"who": who, "model": spec, "rss_mib": rss_kib / 1024}
if who == "omni":
    out["simd"] = data.get("simd")
    out["cpu"] = data.get("cpu")
    for t in data["tests"]:
        out["pp" if t["test"].startswith("pp") else "tg"] = t["tokens_per_s_median"]
else:
    for t in data:
        out["pp" if t["n_prompt"] > 0 else "tg"] = t["avg_ts"]
    out["peer_build"] = f'{data[0].get("build_commit")} ({data[0].get("build_number")})'
print(json.dumps(out))
EOF
      rm -f "$tmp" "$tmp.rss"
    done
  done
  python3 - "$raw" "$spec" <<'EOF'
import json, statistics, sys
path, spec = sys.argv[1:3]
rows = [json.loads(l) for l in open(path) if json.loads(l)["model"] == spec]
for fig, label in (("pp", "pp t/s"), ("tg", "tg t/s"), ("rss_mib", "RSS MiB")):
    o = statistics.median(r[fig] for r in rows if r["who"] == "omni" and fig in r)
    p = statistics.median(r[fig] for r in rows if r["who"] == "peer" and fig in r)
    print(f"| {spec:<24} | {label:<7} | {o:12.2f} | {p:12.2f} | {o / p:7.3f}x |")
EOF
done
echo
python3 - "$raw" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["who"] == "omni"]
print("CPU (from omni bench):", ", ".join(sorted({str(r.get("cpu")) for r in rows})),
      "; omni kernel set(s) used:", ", ".join(sorted({str(r.get("simd")) for r in rows})))
EOF
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)"
