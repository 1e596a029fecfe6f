#!/usr/bin/env bash
# Verified computation (issue 16): two honest replicas return bit-identical, signed outputs for the
# same calls whatever kernel level their CPU runs (OMNI_KERNELS caps it: scalar, avx2, and the
# machine's own), so a second replica can check a first one bit for bit; a lying node
# (src/swarm/tools/liar_node, one call in 2 changed) differs on exactly the calls it lies on while
# its signature over the lie still verifies, so the fault is attributable to it.
#
#   verified_compute_test.sh OMNI SHARED_DIR FORWARD_DIGEST LIAR_NODE
set -euo pipefail
omni=$1 shared=$2 forward_digest=$3 liar_node=$4
tmp=$(mktemp -d)
source "$(dirname "$0")/pipeline_lib.sh"
liar_pid=
trap '[ -n "$liar_pid" ] && kill "$liar_pid" 2>/dev/null; cleanup_nodes; rm -rf "$tmp"' EXIT

tokens=(1 15 27 301 44 5 98 7 12 250 3)  # a prompt of 7, then 4 single steps
for model in synth-llama-q8_0 synth-llama-f16 synth-qwen2-q4_k_m; do
  path=$shared/models/$model.gguf
  [ -f "$path" ] || { echo "SKIP: $path is missing"; exit 77; }
  for level in scalar avx2 native; do
    if [ "$level" = native ]; then NODE_PREFIX=; else NODE_PREFIX="env OMNI_KERNELS=$level"; fi
    NODE_PREFIX=$NODE_PREFIX start_node "$model-$level" "$path" 0:2
    "$forward_digest" "$NODE_ADDR" 0:2 f32 "${tokens[@]}" >"$tmp/$model-$level.out" \
      || fail "$model at $level: $(cat "$tmp/$model-$level.out")"
    # The signer differs per node; the outputs must not.
    sed 's/ signed-by .*//' "$tmp/$model-$level.out" >"$tmp/$model-$level.digests"
  done
  cleanup_nodes
  [ "$(wc -l <"$tmp/$model-native.digests")" -eq 5 ] || fail "$model: $(cat "$tmp/$model-native.out")"
  for level in scalar avx2; do
    cmp -s "$tmp/$model-native.digests" "$tmp/$model-$level.digests" ||
      fail "$model: the $level node's outputs differ from the native one's: $(diff "$tmp/$model-native.digests" "$tmp/$model-$level.digests")"
  done
  echo "$model: scalar, avx2 and native nodes return the same bits for all 5 calls"
done

model=synth-llama-q8_0
: >"$tmp/liar.log"
"$liar_node" --lie every:2 -m "$shared/models/$model.gguf" --blocks 0:2 --listen 127.0.0.1:0 \
  --data-dir "$tmp/liar" >"$tmp/liar.log" 2>&1 &
liar_pid=$!
liar_addr=
for _ in $(seq 1 200); do
  liar_addr=$(sed -n 's/^liar_node: peer \([a-z2-7]*\) listening on \([^,]*\),.*/\1@\2/p' "$tmp/liar.log")
  [ -n "$liar_addr" ] && break
  sleep 0.05
done
[ -n "$liar_addr" ] || fail "liar_node did not start: $(cat "$tmp/liar.log")"
"$forward_digest" "$liar_addr" 0:2 f32 "${tokens[@]}" >"$tmp/liar.out" || fail "liar: $(cat "$tmp/liar.out")"
sed 's/ signed-by .*//' "$tmp/liar.out" >"$tmp/liar.digests"
# Its calls 2 and 4 (0-based 1 and 3) are lies, signed by it; the others are the truth.
differ=$(paste -d'\n' "$tmp/$model-native.digests" "$tmp/liar.digests" | paste - - |
  awk -F'\t' '$1 != $2 {split($1, f, " "); printf "%s ", f[2]}')
[ "$differ" = "1 3 " ] || fail "the liar's outputs differ on calls [$differ], expected [1 3 ]"
signer=$(awk 'NR == 2 {print $NF}' "$tmp/liar.out")
[ "$signer" = "${liar_addr%@*}" ] || fail "the lie is signed by $signer, not the liar ${liar_addr%@*}"
echo "liar: calls 1 and 3 differ from the honest bits and carry its valid signature"
echo PASS
