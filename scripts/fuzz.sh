#!/usr/bin/env bash
# fuzz.sh FUZZER SEEDS SHARED_DIR SECONDS WORK_DIR
# Builds a seed corpus (SEEDS: a directory of seed files, or a tool that writes seeds from the
# shared GGUF files), runs the libFuzzer target for a bounded time and prints its execution count.
# Exits non-zero if the fuzzer found a crash.
set -euo pipefail
fuzzer=$1 seeds=$2 shared=$3 seconds=$4 work=$5
rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts" "$work/seeds"
if [ -d "$seeds" ]; then
  cp "$seeds"/* "$work/seeds/"
else
  "$seeds" "$work/seeds" "$shared"/models/*.gguf "$shared"/vocab/*.gguf
fi
set +e
"$fuzzer" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$work/corpus" "$work/seeds" >"$work/fuzz.log" 2>&1
rc=$?
set -e
grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done )|ERROR|SUMMARY" "$work/fuzz.log" || true
echo "corpus entries: $(ls "$work/corpus" | wc -l)"
if [ $rc -ne 0 ]; then
  tail -60 "$work/fuzz.log"
  echo "fuzzer failed (rc=$rc); crashing inputs are in $work/artifacts"
  exit 1
fi
