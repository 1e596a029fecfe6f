#!/usr/bin/env bash
# `omni up` from a built tree with an empty data directory: within 60 s of the command it serves
# the chat page and answers a chat request (the default model synthesized, sharded into the store,
# served by 3 nodes by CID through a gateway); /v1/swarm shows the 3 nodes and full coverage; SIGINT
# (Ctrl-C) stops it and every child process it started within 15 s. A second `omni up --join` (its
# own node, choosing its blocks, and a gateway serving what the swarm covers) joins that swarm.
# Usage: OMNI SHARED_DIR
set -euo pipefail
omni=$1
tmp=$(mktemp -d)
up_pid=
join_pid=
children=()
cleanup() {
  [ -n "$up_pid" ] && kill -KILL "$up_pid" 2>/dev/null || true
  [ -n "$join_pid" ] && kill -TERM "$join_pid" 2>/dev/null || true
  for pid in "${children[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -d "$tmp/up/logs" ] && tail -n 5 "$tmp"/up/logs/*.log; exit 1; }

start=$SECONDS
: >"$tmp/up.out"  # before the background job opens it: sed reads it at once
"$omni" up --data-dir "$tmp/up" --listen 127.0.0.1:0 >"$tmp/up.out" 2>"$tmp/up.err" &
up_pid=$!
url=
while [ $((SECONDS - start)) -lt 60 ]; do
  url=$(sed -n 's/^omni up: chat *\(http:[^ ]*\)$/\1/p' "$tmp/up.out")
  [ -n "$url" ] && break
  kill -0 "$up_pid" 2>/dev/null || fail "omni up exited: $(cat "$tmp/up.err")"
  sleep 0.2
done
[ -n "$url" ] || fail "omni up printed no URL within 60 s: $(cat "$tmp/up.err")"
grep -q "^omni up: dashboard ${url}#/swarm$" "$tmp/up.out" || fail "no dashboard URL: $(cat "$tmp/up.out")"
mapfile -t children < <(pgrep -P "$up_pid")
[ "${#children[@]}" = 5 ] || fail "omni up has ${#children[@]} children, expected 5 (bootstrap, 3 nodes, gateway)"

page=$(curl -s -w '\n%{http_code}' "$url")
[ "$(tail -n1 <<<"$page")" = 200 ] || fail "the chat page: $(tail -n1 <<<"$page")"
grep -qi '<html\|<!doctype' <<<"$page" || fail "the chat page is no HTML page"
code=$(curl -s -o "$tmp/chat.json" -w '%{http_code}' "${url}v1/chat/completions" \
  -d '{"model":"omni-default","messages":[{"role":"user","content":"Hello"}],"max_tokens":8,"temperature":0}')
[ "$code" = 200 ] || fail "the chat request got $code: $(cat "$tmp/chat.json")"
python3 - "$tmp/chat.json" <<'PY' || fail "the chat answer: $(cat "$tmp/chat.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["choices"][0]["message"]["content"] and r["usage"]["completion_tokens"] > 0, r
PY
elapsed=$((SECONDS - start))
[ "$elapsed" -le 60 ] || fail "the first answer came after $elapsed s"
echo "ok   chat page and a chat answer $elapsed s after omni up"

curl -s "${url}v1/swarm" >"$tmp/swarm.json"
python3 - "$tmp/swarm.json" <<'PY' || fail "/v1/swarm: $(cat "$tmp/swarm.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert len([n for n in s["nodes"] if n["alive"]]) == 3, s["nodes"]
assert len(s["models"]) == 1 and s["models"][0]["missing"] == [] and s["models"][0]["cid"], s["models"]
print("ok   /v1/swarm: 3 live nodes, coverage", s["models"][0]["coverage"])
PY

# Joining that swarm: one more node and a gateway that serves the swarm's models.
boot=$(sed -n 's/^omni node: bootstrap DHT node listening on udp \(.*\)$/\1/p' "$tmp/up/logs/bootstrap.log")
: >"$tmp/join.out"
"$omni" up --join "$boot" --data-dir "$tmp/join" --listen 127.0.0.1:0 >"$tmp/join.out" 2>"$tmp/join.err" &
join_pid=$!
join_url=
for _ in $(seq 1 300); do
  join_url=$(sed -n 's/^omni up: chat *\(http:[^ ]*\)$/\1/p' "$tmp/join.out")
  [ -n "$join_url" ] && break
  kill -0 "$join_pid" 2>/dev/null || fail "omni up --join exited: $(cat "$tmp/join.err")"
  sleep 0.2
done
[ -n "$join_url" ] || fail "omni up --join printed no URL within 60 s: $(cat "$tmp/join.err")"
joined=
for _ in $(seq 1 50); do
  curl -s "${join_url}v1/swarm" >"$tmp/join-swarm.json"
  curl -s "${join_url}v1/models" >"$tmp/join-models.json"
  if python3 - "$tmp/join-swarm.json" "$tmp/join-models.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
m = json.load(open(sys.argv[2]))
sys.exit(0 if len([n for n in s["nodes"] if n["alive"]]) == 4 and len(m["data"]) == 1 else 1)
PY
  then joined=1; break; fi
  sleep 0.3
done
[ -n "$joined" ] || fail "the joined gateway sees $(cat "$tmp/join-swarm.json") and $(cat "$tmp/join-models.json")"
joined_model=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"][0]["id"])' "$tmp/join-models.json")
code=$(curl -s -o "$tmp/join-chat.json" -w '%{http_code}' "${join_url}v1/chat/completions" \
  -d "{\"model\":\"$joined_model\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":8}")
[ "$code" = 200 ] || fail "the joined gateway's chat got $code: $(cat "$tmp/join-chat.json")"
kill -TERM "$join_pid"
wait "$join_pid" || fail "omni up --join exited with $? after SIGTERM"
join_pid=
echo "ok   omni up --join: a 4th node and a gateway that sees 4 live nodes and answers"

kill -INT "$up_pid"
for _ in $(seq 1 150); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$up_pid" 2>/dev/null && fail "omni up still runs 15 s after SIGINT"
wait "$up_pid" || fail "omni up exited with $? after SIGINT: $(tail -3 "$tmp/up.err")"
up_pid=
for pid in "${children[@]}"; do
  kill -0 "$pid" 2>/dev/null && fail "child $pid still runs after omni up stopped"
done
echo "ok   SIGINT stopped omni up and its ${#children[@]} children"
echo PASS
