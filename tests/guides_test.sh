#!/usr/bin/env bash
# The guides' commands (docs/guides/*.md): every fenced block marked `sh` is run, each guide's
# blocks in order in one shell (set -euo pipefail) in a fresh directory, with the omni under test
# first on PATH and $MODEL a small test model. A failing command fails the test and names the
# guide and block. Blocks marked `console` (root, services, other systems) are not run here; each
# says which test runs the same steps.
set -euo pipefail
omni=$1 shared=$2
docs=$(cd "$(dirname "$0")/../docs/guides" && pwd)
model=$shared/models/synth-llama-q8_0.gguf
[ -f "$model" ] || { echo "SKIP: $model is missing"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
ln -s "$(cd "$(dirname "$omni")" && pwd)/$(basename "$omni")" "$tmp/bin/omni"
ran=0
for guide in "$docs"/*.md; do
  name=$(basename "$guide" .md)
  # One script per guide: its sh blocks in order, each announced so a failure names it.
  python3 - "$guide" >"$tmp/$name.sh" <<'PY'
import sys
lines = open(sys.argv[1]).read().split("\n")
out, block, n = ["set -euo pipefail"], None, 0
for i, line in enumerate(lines, 1):
    if block is None and line.strip() == "```sh":
        n += 1
        block = i
        out.append(f"echo '--- block {n} (line {i})'")
    elif block is not None and line.strip() == "```":
        block = None
    elif block is not None:
        out.append(line)
print("\n".join(out))
print(f"# blocks: {n}")
PY
  blocks=$(sed -n 's/^# blocks: //p' "$tmp/$name.sh")
  [ "$blocks" -gt 0 ] || continue
  mkdir -p "$tmp/run-$name"
  if ! (cd "$tmp/run-$name" && PATH="$tmp/bin:$PATH" MODEL="$model" bash "$tmp/$name.sh") >"$tmp/$name.out" 2>&1; then
    echo "FAIL: docs/guides/$name.md: $(grep -- '^--- block' "$tmp/$name.out" | tail -1)"
    tail -20 "$tmp/$name.out"
    exit 1
  fi
  echo "docs/guides/$name.md: $blocks blocks ran"
  ran=$((ran + blocks))
done
[ "$ran" -gt 0 ] || { echo "FAIL: no sh block in docs/guides"; exit 1; }
echo "PASS: $ran blocks"
