#!/usr/bin/env bash
# omni synth: --list-shapes, a small model that omni inspect reads back, same seed -> same bytes,
# a sparse full-size model, a grown vocabulary (--vocab-size) that omni run generates with, and
# clear errors with exit code 1.
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

# deepseek-llm's 102400 tokens grown to 110000: the summary says so, the matrices have the rows,
# and omni run generates with it.
grown="$shared/vocab/ggml-vocab-deepseek-llm.gguf"
small="custom:arch=qwen2,layers=2,embd=64,heads=2,kv_heads=1,ff=128,vocab=4096"
"$omni" synth --shape "$small" --seed 3 --vocab "$grown" --vocab-size 110000 "$tmp/g.gguf" >"$tmp/out.txt"
grep -q "vocab 110000 (.*ggml-vocab-deepseek-llm.gguf, grown from 102400)" "$tmp/out.txt" || fail "grown summary: $(cat "$tmp/out.txt")"
"$omni" inspect "$tmp/g.gguf" >"$tmp/inspect.txt"
grep -Eq "token_embd.weight +q8_0 +64 x 110000" "$tmp/inspect.txt" || fail "grown token_embd"
grep -Eq "output.weight +[a-z0-9_]+ +64 x 110000" "$tmp/inspect.txt" || fail "grown output"
"$omni" run -m "$tmp/g.gguf" -p "Hello, world" -n 12 --temp 0 --ignore-eos --json -t 1 >"$tmp/run.json" 2>"$tmp/err.txt" ||
  fail "omni run on the grown model: $(cat "$tmp/err.txt")"
[ "$(grep -c '"id"' "$tmp/run.json")" -eq 12 ] || fail "grown run: $(cat "$tmp/run.json")"
if "$omni" synth --shape "$small" --vocab "$grown" --vocab-size 100000 "$tmp/x.gguf" 2>"$tmp/err.txt"; then
  fail "a vocabulary size below the file's accepted"
fi
grep -q "below the vocabulary file's 102400 tokens" "$tmp/err.txt" || fail "below message: $(cat "$tmp/err.txt")"
if "$omni" synth --shape "$small" --vocab "$grown" --vocab-size 2000000 "$tmp/x.gguf" 2>"$tmp/err.txt"; then
  fail "an absurd vocabulary size accepted"
fi
grep -q "over 1048576" "$tmp/err.txt" || fail "absurd message: $(cat "$tmp/err.txt")"
if "$omni" synth --shape "$small" --vocab-size 200000 "$tmp/x.gguf" 2>/dev/null; then fail "--vocab-size without --vocab"; fi

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
