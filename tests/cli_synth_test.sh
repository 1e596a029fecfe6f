#!/usr/bin/env bash
# omni synth: --list-shapes, a small model that omni inspect reads back, same seed -> same bytes,
# a sparse full-size model, and clear errors with exit code 1.
set -euo pipefail
omni=$1 shared=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$omni" synth --list-shapes >"$tmp/shapes.txt"
for s in tinyllama-1.1b llama-3.2-1b qwen2.5-0.5b mistral-7b llama-2-13b llama-3-70b; do
  grep -q "^$s " "$tmp/shapes.txt" || fail "shape $s not listed"
done

vocab="$shared/vocab/ggml-vocab-llama-spm.gguf"
"$omni" synth --shape qwen2.5-0.5b --type q4_0 --seed 5 --layers 1 --vocab "$vocab" "$tmp/a.gguf" >"$tmp/out.txt"
grep -q "qwen2.5-0.5b, q4_0, 1 layer, .* vocab 32000" "$tmp/out.txt" || fail "summary: $(cat "$tmp/out.txt")"
"$omni" synth --shape qwen2.5-0.5b --type q4_0 --seed 5 --layers 1 --vocab "$vocab" --threads 1 "$tmp/b.gguf" >/dev/null
cmp -s "$tmp/a.gguf" "$tmp/b.gguf" || fail "same seed gave different bytes"

"$omni" inspect "$tmp/a.gguf" >"$tmp/inspect.txt"
grep -Eq "qwen2.block_count +u32 +1" "$tmp/inspect.txt" || fail "block_count"
grep -Eq "general.file_type +u32 +2" "$tmp/inspect.txt" || fail "file_type"
grep -Eq "blk.0.attn_q.bias +f32 +896" "$tmp/inspect.txt" || fail "bias tensor"
grep -Eq "blk.0.attn_k.weight +q4_0 +896 x 128" "$tmp/inspect.txt" || fail "attn_k tensor"

"$omni" synth --shape tinyllama-1.1b --type q8_0 --sparse "$tmp/sparse.gguf" >"$tmp/out.txt"
grep -q "201 tensors" "$tmp/out.txt" || fail "sparse summary: $(cat "$tmp/out.txt")"
[ "$(stat -c %s "$tmp/sparse.gguf")" -gt 1169072128 ] || fail "sparse file too short"

if "$omni" synth --shape nope "$tmp/x.gguf" 2>"$tmp/err.txt"; then fail "unknown shape accepted"; fi
grep -q "unknown shape 'nope'" "$tmp/err.txt" || fail "unknown-shape message: $(cat "$tmp/err.txt")"
if "$omni" synth --shape tinyllama-1.1b --type iq2_xxs "$tmp/x.gguf" 2>"$tmp/err.txt"; then fail "iq2_xxs accepted"; fi
grep -q "cannot synthesize tensor type iq2_xxs" "$tmp/err.txt" || fail "type message: $(cat "$tmp/err.txt")"
if "$omni" synth --shape tinyllama-1.1b --type bogus "$tmp/x.gguf" 2>"$tmp/err.txt"; then fail "bogus type accepted"; fi
grep -q "unknown tensor type 'bogus'" "$tmp/err.txt" || fail "bogus-type message"
if "$omni" synth --shape tinyllama-1.1b --vocab "$tmp/missing.gguf" "$tmp/x.gguf" 2>"$tmp/err.txt"; then
  fail "missing vocabulary accepted"
fi
grep -q "missing.gguf" "$tmp/err.txt" || fail "missing-vocab message: $(cat "$tmp/err.txt")"
if "$omni" synth --shape tinyllama-1.1b 2>"$tmp/err.txt"; then fail "missing output accepted"; fi
[ ! -e "$tmp/x.gguf" ] || fail "a failed run left a file"
echo "cli_synth: ok"
