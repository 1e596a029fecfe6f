#!/usr/bin/env bash
# packaging/Containerfile built and run with podman or docker: the image's omni runs a node on a
# shared model and a generation through it from this machine equals a local run. Skipped (77) where
# no container runtime works (none installed, or no daemon).
# Usage: container_test.sh OMNI SHARED_DIR
set -uo pipefail
omni="$1"
shared="$(realpath "$2")"
root="$(cd "$(dirname "$0")/.." && pwd)"
runtime=""
for candidate in podman docker; do
  if command -v "$candidate" >/dev/null && "$candidate" info >/dev/null 2>&1; then runtime=$candidate; break; fi
done
[ -n "$runtime" ] || { echo "SKIP: no working container runtime (podman or docker with a daemon)"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d)
tag="omni-test:$$"
name="omni-test-$$"
trap '"$runtime" rm -f "$name" >/dev/null 2>&1; "$runtime" rmi -f "$tag" >/dev/null 2>&1; rm -rf "$tmp"' EXIT
"$runtime" build -f "$root/packaging/Containerfile" -t "$tag" "$root" >"$tmp/build.log" 2>&1 ||
  fail "$runtime build: $(tail -20 "$tmp/build.log")"
model=synth-llama-q8_0.gguf
n_layer=$("$omni" inspect "$shared/models/$model" --no-tensors | awk '$2 ~ /\.block_count$/ {print $4}')
"$runtime" run -d --name "$name" --network host -v "$shared/models:/models:ro" "$tag" \
  node -m "/models/$model" --blocks "0:$n_layer" --listen 127.0.0.1:0 -t 1 --data-dir /var/lib/omni/node >/dev/null ||
  fail "$runtime run"
addr=
for _ in $(seq 1 300); do
  addr=$("$runtime" logs "$name" 2>&1 | sed -n 's/^omni node: peer \([a-z2-7]*\) listening on \([^,]*\),.*/\1@\2/p')
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || fail "the container's node did not start: $("$runtime" logs "$name" 2>&1 | tail -5)"
args=(-m "$shared/models/$model" -p "The container test" -n 12 --temp 0 --json -t 1)
"$omni" run "${args[@]}" >"$tmp/local.json" 2>/dev/null || fail "local run"
"$omni" run "${args[@]}" --peers "$addr" --hidden-format f32 --data-dir "$tmp/client" >"$tmp/remote.json" 2>"$tmp/err" ||
  fail "run through the container's node: $(cat "$tmp/err")"
cmp -s "$tmp/local.json" "$tmp/remote.json" || fail "the generation through the container differs from the local run"
echo "container ($runtime): the image's node served a generation equal to the local run"
