#!/usr/bin/env bash
# omni inspect: text and JSON on a shared model; a clear error and exit code 1 on bad files.
set -euo pipefail
omni=$1 shared=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

model="$shared/models/synth-llama-q4_k_m.gguf"
"$omni" inspect "$model" >"$tmp/out.txt"
grep -q "GGUF v3, 23 metadata entries, 39 tensors" "$tmp/out.txt" || fail "summary line"
grep -Eq "blk.0.attn_q.weight +q4_k +256 x 256" "$tmp/out.txt" || fail "tensor row"
grep -Eq "llama.block_count +u32 +4" "$tmp/out.txt" || fail "metadata row"

"$omni" inspect --json "$model" >"$tmp/out.json"
python3 - "$tmp/out.json" "$model" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1]))
assert d["version"] == 3
md = {e["key"]: e for e in d["metadata"]}
assert md["general.architecture"]["value"] == "llama"
assert md["tokenizer.ggml.tokens"]["length"] == 32000 and len(md["tokenizer.ggml.tokens"]["value"]) == 32000
t = {x["name"]: x for x in d["tensors"]}
assert len(t) == 39 and t["output.weight"]["shape"] == [256, 32000]
# Every tensor ends inside the file, computed from the JSON alone.
size = os.path.getsize(sys.argv[2])
assert max(d["data_offset"] + x["offset"] + x["bytes"] for x in d["tensors"]) <= size
PY

head -c 1000 "$model" >"$tmp/truncated.gguf"
if "$omni" inspect "$tmp/truncated.gguf" 2>"$tmp/err.txt"; then fail "truncated file accepted"; fi
grep -q "truncated.gguf: .*truncated" "$tmp/err.txt" || fail "truncation message: $(cat "$tmp/err.txt")"
if "$omni" inspect "$tmp/missing.gguf" 2>"$tmp/err.txt"; then fail "missing file accepted"; fi
grep -q "cannot open" "$tmp/err.txt" || fail "missing-file message"
echo "cli_inspect: ok"
