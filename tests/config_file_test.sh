#!/usr/bin/env bash
# omni's config file (apps/omni/config_file.h): every long flag of node, gateway and relay (read
# from their --help) is a key the file accepts; `omni config check` names the line of each problem
# (lines found with grep, not written down here); a command refuses a broken file with the same
# lines; a flag on the command line wins over the file; a missing --config file is an error.
# Usage: config_file_test.sh OMNI SHARED_DIR
set -uo pipefail
omni="$1"
shared="$2"
model="$shared/models/synth-llama-q8_0.gguf"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Every long flag of these commands is a known key: whatever the check says about the value, it
# must not call the key unknown or unsettable.
for command in node gateway relay; do
  flags=$("$omni" "$command" --help | grep -oE '^ +(-[a-z],)?--[a-z0-9-]+' | sed 's/.*--//' | grep -vx 'help')
  [ -n "$flags" ] || fail "no flags read from omni $command --help"
  for flag in $flags; do
    printf '[%s]\n%s = "1"\n' "$command" "$flag" >"$tmp/one.toml"
    "$omni" config check --config "$tmp/one.toml" >"$tmp/out" 2>&1
    if grep -qE "unknown key|cannot be set" "$tmp/out"; then fail "[$command] $flag: $(cat "$tmp/out")"; fi
  done
  echo "[$command]: $(echo "$flags" | wc -l) flags, each a key the file accepts"
done

cat >"$tmp/bad.toml" <<'TOML'
# a node's settings, with mistakes
[node]
threads = 0
shar = true
data_dir = "/srv/omni"
listen = "0.0.0.0:7000"
listen = "0.0.0.0:7001"

[nodez]
model = "x.gguf"

[gateway]
max-sessions = "many"
TOML
line_of() { grep -nF -- "$1" "$tmp/bad.toml" | head -1 | cut -d: -f1; }
"$omni" config check --config "$tmp/bad.toml" >"$tmp/check.out" 2>&1
code=$?
[ "$code" = 1 ] || fail "config check of a bad file exited $code, expected 1"
expect_problem() {  # TEXT-IN-FILE TEXT-IN-MESSAGE
  local want="$tmp/bad.toml:$(line_of "$1"):"
  grep -F -- "$want" "$tmp/check.out" | grep -qF -- "$2" || fail "no '$want ... $2' in: $(cat "$tmp/check.out")"
}
expect_problem "threads = 0" "--threads"
expect_problem "shar = true" "unknown key 'shar'"
expect_problem "data_dir" "did you mean 'data-dir'"
expect_problem 'listen = "0.0.0.0:7001"' "set twice (first on line $(line_of 'listen = "0.0.0.0:7000"'))"
expect_problem "[nodez]" "unknown section [nodez]"
expect_problem 'max-sessions = "many"' "--max-sessions"
problems=$(grep -c "^$tmp/bad.toml:" "$tmp/check.out")
[ "$problems" = 6 ] || fail "config check reported $problems problems, expected 6: $(cat "$tmp/check.out")"

# A command given the broken file refuses to start, naming the same lines (exit 2, as a bad flag).
"$omni" node --config "$tmp/bad.toml" -m "$model" >"$tmp/node.out" 2>&1
code=$?
[ "$code" = 2 ] || fail "omni node with a broken config exited $code, expected 2"
grep -qF "$tmp/bad.toml:$(line_of 'shar = true'):" "$tmp/node.out" || fail "omni node did not name the line: $(cat "$tmp/node.out")"

# A good file: checked valid, read by the command, and a flag on the command line wins.
printf '[run]\nmodel = "%s"\nprompt = "Once upon a time"\nn-predict = 3\nthreads = 1\n' "$model" >"$tmp/good.toml"
"$omni" config check --config "$tmp/good.toml" >"$tmp/out" 2>&1 || fail "good file refused: $(cat "$tmp/out")"
grep -qF "(4 settings)" "$tmp/out" || fail "good file: $(cat "$tmp/out")"
"$omni" run --config "$tmp/good.toml" >"$tmp/out" 2>&1 || fail "omni run --config: $(cat "$tmp/out")"
grep -qF "generated 3 tokens" "$tmp/out" || fail "omni run did not take n-predict from the file: $(tail -2 "$tmp/out")"
"$omni" --config="$tmp/good.toml" run -n 5 >"$tmp/out" 2>&1 || fail "omni --config= run -n 5: $(cat "$tmp/out")"
grep -qF "generated 5 tokens" "$tmp/out" || fail "-n 5 on the command line did not win over the file: $(tail -2 "$tmp/out")"

# A --config file that is not there is an error, not an empty config.
"$omni" run --config "$tmp/missing.toml" >"$tmp/out" 2>&1
code=$?
[ "$code" = 2 ] && grep -qF "cannot read config file $tmp/missing.toml" "$tmp/out" ||
  fail "missing --config file: exit $code, $(cat "$tmp/out")"
"$omni" config check --config "$tmp/missing.toml" >"$tmp/out" 2>&1
[ $? = 1 ] || fail "config check of a missing file did not exit 1"

if [ "$failures" -ne 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "config file: all checks passed"
