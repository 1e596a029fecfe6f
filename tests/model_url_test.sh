#!/usr/bin/env bash
# Models from URLs (src/store/model_download.h) against a local host (model_url_server.py; nothing
# here reaches outside the machine): `omni run --model http://...` gives the same greedy text as the
# local file and keeps it in the store; a second run with the host gone uses that copy; a transfer
# that breaks mid-body is resumed in the same run with only the missing bytes fetched; a client
# killed mid-download resumes in its next run from its durable bytes, and the partial file is never
# a model meanwhile; a published SHA-256 that the file does not have is refused and the download
# deleted; redirects are followed and bounded; an HTTP error is named; `omni node` serves a model
# from a URL.
set -euo pipefail
omni=$1 shared=$2
here=$(cd "$(dirname "$0")" && pwd)
model="$shared/models/synth-llama-q8_0.gguf"
[ -f "$model" ] || { echo "SKIP: $model is missing"; exit 77; }
tmp=$(mktemp -d)
server_pid=""
bg_pid=""
source "$here/pipeline_lib.sh"
cleanup() {
  [ -n "$bg_pid" ] && kill -9 "$bg_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  cleanup_nodes
  rm -rf "$tmp"
}
trap cleanup EXIT
size=$(stat -c %s "$model")
sha=$(sha256sum "$model" | cut -d' ' -f1)
cut=$((12 << 20))  # past the first durability point (every 8 MiB)

# start_server: (re)starts the host on a free port; sets PORT and BASE; requests go to $tmp/requests.
start_server() {
  : >"$tmp/port.txt"
  python3 "$here/model_url_server.py" "$model" "$cut" "$tmp/requests" >"$tmp/port.txt" 2>"$tmp/server.err" &
  server_pid=$!
  PORT=""
  for _ in $(seq 1 100); do
    PORT=$(sed -n 's/^port //p' "$tmp/port.txt")
    [ -n "$PORT" ] && break
    sleep 0.05
  done
  [ -n "$PORT" ] || fail "the model host did not start: $(cat "$tmp/server.err")"
  BASE="http://127.0.0.1:$PORT"
}
stop_server() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""; }
# requests_for PATH: the host's log lines for that path, as "status range sent" per line.
requests_for() {
  python3 - "$tmp/requests" "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r['path'] == sys.argv[2]: print(r['status'], r['range'] or '-', r['sent'])
PY
}
: >"$tmp/requests"
prompt=(-p "Once upon a time" -n 8 --temp 0)
"$omni" run -m "$model" "${prompt[@]}" >"$tmp/local.txt" 2>/dev/null
[ -s "$tmp/local.txt" ] || fail "no local output"

start_server
# 1. omni run from a URL: the same greedy text, the file fetched once, whole.
"$omni" run --model "$BASE/m/x.gguf" --data-dir "$tmp/d1" "${prompt[@]}" >"$tmp/url.txt" 2>"$tmp/url.err" \
  || fail "run from the URL: $(cat "$tmp/url.err")"
cmp -s "$tmp/local.txt" "$tmp/url.txt" || fail "output from the URL differs: '$(cat "$tmp/url.txt")' vs '$(cat "$tmp/local.txt")'"
[ "$(requests_for /m/x.gguf)" = "200 - $size" ] || fail "requests for /m/x.gguf: $(requests_for /m/x.gguf)"
grep -q "sha256 checked against X-Linked-Etag" "$tmp/url.err" || fail "no hash check reported: $(cat "$tmp/url.err")"
link=$(ls "$tmp"/d1/store/models/*/x.gguf)
cmp -s "$model" "$link" || fail "the stored copy differs from the file"
echo "ok: run from a URL gives the local output; the file is stored, whole ($size bytes)"

# 2. With the host gone, the second run uses the stored copy.
stop_server
"$omni" run --model "$BASE/m/x.gguf" --data-dir "$tmp/d1" "${prompt[@]}" >"$tmp/again.txt" 2>"$tmp/again.err" \
  || fail "offline run: $(cat "$tmp/again.err")"
cmp -s "$tmp/local.txt" "$tmp/again.txt" || fail "offline output differs"
echo "ok: a second run with no host uses the cached copy"
start_server

# 3. A body that breaks off is resumed in the same run: only the missing bytes are fetched.
HOME="$tmp/h3" "$omni" inspect "$BASE/cut/c.gguf" --no-tensors >"$tmp/cut.txt" 2>"$tmp/cut.err" \
  || fail "inspect after a broken transfer: $(cat "$tmp/cut.err")"
want="200 - $cut
206 bytes=$cut- $((size - cut))"
[ "$(requests_for /cut/c.gguf)" = "$want" ] || fail "requests for /cut/c.gguf: $(requests_for /cut/c.gguf)"
cmp -s "$model" "$tmp"/h3/.omni/store/models/*/c.gguf || fail "the resumed copy differs"
echo "ok: a transfer broken after $cut bytes resumed at byte $cut, $((size - cut)) more bytes fetched"

# 4. A client killed mid-download: nothing usable meanwhile; the next run resumes from its durable bytes.
"$omni" run --model "$BASE/stall/k.gguf" --data-dir "$tmp/d4" "${prompt[@]}" >/dev/null 2>"$tmp/kill.err" &
bg_pid=$!
durable=0
for _ in $(seq 1 200); do
  durable=$(cat "$tmp"/d4/store/downloads/*.json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["durable"])' 2>/dev/null || echo 0)
  [ "$durable" -gt 0 ] && break
  sleep 0.05
done
[ "$durable" -gt 0 ] || fail "no durable bytes recorded: $(cat "$tmp/kill.err")"
kill -9 "$bg_pid"; wait "$bg_pid" 2>/dev/null || true; bg_pid=""
durable=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["durable"])' "$tmp"/d4/store/downloads/*.json)
[ -z "$(ls "$tmp/d4/store/models" 2>/dev/null)" ] || fail "a partial download became a model"
"$omni" run --model "$BASE/stall/k.gguf" --data-dir "$tmp/d4" "${prompt[@]}" >"$tmp/resumed.txt" 2>"$tmp/resumed.err" \
  || fail "run after the kill: $(cat "$tmp/resumed.err")"
cmp -s "$tmp/local.txt" "$tmp/resumed.txt" || fail "output after the resume differs"
second=$(requests_for /stall/k.gguf | sed -n 2p)
[ "$second" = "206 bytes=$durable- $((size - durable))" ] || fail "resume request: '$second' (durable $durable)"
echo "ok: killed with $durable bytes durable, the next run fetched only the other $((size - durable))"

# 5. A published SHA-256 that the file does not have: refused, naming both, nothing kept.
if HOME="$tmp/h5" "$omni" inspect "$BASE/badhash/b.gguf" >/dev/null 2>"$tmp/bad.err"; then fail "a wrong hash was accepted"; fi
grep -q "sha256 mismatch" "$tmp/bad.err" || fail "wrong hash: $(cat "$tmp/bad.err")"
grep -q "$sha" "$tmp/bad.err" || fail "the message does not name the file's hash: $(cat "$tmp/bad.err")"
wrong=$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()+b"x").hexdigest())' "$model")
grep -q "$wrong" "$tmp/bad.err" || fail "the message does not name the published hash: $(cat "$tmp/bad.err")"
[ -z "$(find "$tmp/h5/.omni/store/blobs" "$tmp/h5/.omni/store/downloads" -type f)" ] || fail "the bad download was kept: $(find "$tmp/h5/.omni/store" -type f)"
# ...and --model-sha256 that the host contradicts, before the body is taken.
if HOME="$tmp/h5" "$omni" inspect "$BASE/m/p.gguf" --model-sha256 "$wrong" >/dev/null 2>"$tmp/pin.err"; then
  fail "a pinned hash the host contradicts was accepted"
fi
grep -q "sha256 mismatch before the download" "$tmp/pin.err" || fail "pinned hash: $(cat "$tmp/pin.err")"
HOME="$tmp/h5" "$omni" inspect "$BASE/m/p.gguf" --model-sha256 "$sha" --no-tensors >/dev/null 2>"$tmp/pin.err" \
  || fail "the right pinned hash: $(cat "$tmp/pin.err")"
echo "ok: wrong published and pinned hashes are refused, naming both; the right one passes"

# 6. Redirects are followed (relative and absolute) and bounded; HTTP errors are named.
HOME="$tmp/h6" "$omni" inspect "$BASE/hop/3/r.gguf" --no-tensors >/dev/null 2>"$tmp/hop.err" || fail "redirects: $(cat "$tmp/hop.err")"
if HOME="$tmp/h6" "$omni" inspect "$BASE/hop/11/s.gguf" >/dev/null 2>"$tmp/hop.err"; then fail "11 redirects accepted"; fi
grep -q "more than 10 redirects" "$tmp/hop.err" || fail "too many redirects: $(cat "$tmp/hop.err")"
if HOME="$tmp/h6" "$omni" inspect "$BASE/nothing/n.gguf" >/dev/null 2>"$tmp/404.err"; then fail "a 404 was accepted"; fi
grep -q "HTTP 404" "$tmp/404.err" || fail "404: $(cat "$tmp/404.err")"
echo "ok: 3 redirects followed, 11 refused, HTTP 404 named"

# 7. A node serves a model from a URL (fetched into its store, and with --share sharded there: the
#    model CID of the local file) to a client running the local file.
local_cid=$("$omni" shard "$model" --store "$tmp/local-store" 2>/dev/null)
start_node n1 "$BASE/m/x.gguf" 0:4 --share
grep -q "sharing model $local_cid" "$tmp/n1.log" || fail "the node did not share $local_cid: $(cat "$tmp/n1.log")"
"$omni" run -m "$model" --peers "$NODE_ADDR" --data-dir "$tmp/client" "${prompt[@]}" >"$tmp/node.txt" 2>"$tmp/node.err" \
  || fail "run on the node: $(cat "$tmp/node.err")"
cmp -s "$tmp/local.txt" "$tmp/node.txt" || fail "output through the node differs"
echo "ok: omni node --model URL --share shards it as $local_cid and serves the blocks; the output matches the local run"

# 8. hf: names against a mirror (HF_ENDPOINT): the hub's redirect with its X-Linked-Etag, then the file.
HF_ENDPOINT="$BASE" HOME="$tmp/h8" "$omni" run --model hf:org/repo/h.gguf@main "${prompt[@]}" >"$tmp/hf.txt" 2>"$tmp/hf.err" \
  || fail "run from hf: $(cat "$tmp/hf.err")"
cmp -s "$tmp/local.txt" "$tmp/hf.txt" || fail "output from hf: differs"
[ "$(requests_for /org/repo/resolve/main/h.gguf)" = "302 - 0" ] || fail "hub request: $(requests_for /org/repo/resolve/main/h.gguf)"
[ "$(requests_for /m/h.gguf)" = "200 - $size" ] || fail "file request: $(requests_for /m/h.gguf)"
grep -q "sha256 checked against X-Linked-Etag" "$tmp/hf.err" || fail "hf: hash not checked: $(cat "$tmp/hf.err")"
echo "ok: hf:org/repo/h.gguf@main through HF_ENDPOINT: redirect, hash checked, same output"

# 9. The gateway serves the stored copy of an hf: model with the host gone, named like the file.
stop_server
HF_ENDPOINT="$BASE" HOME="$tmp/h8" "$omni" gateway --model hf:org/repo/h.gguf@main --listen 127.0.0.1:0 \
  2>"$tmp/gw.err" &
gw_pid=$!
node_pids+=("$gw_pid")
gw_port=""
for _ in $(seq 1 200); do
  gw_port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$tmp/gw.err")
  [ -n "$gw_port" ] && break
  kill -0 "$gw_pid" 2>/dev/null || fail "the gateway exited: $(cat "$tmp/gw.err")"
  sleep 0.05
done
[ -n "$gw_port" ] || fail "the gateway did not start: $(cat "$tmp/gw.err")"
models=$(curl -sf "http://127.0.0.1:$gw_port/v1/models") || fail "GET /v1/models"
echo "$models" | grep -q '"id":"h"' || fail "the model's id is not the file's name: $models"
curl -sf "http://127.0.0.1:$gw_port/v1/completions" -H 'Content-Type: application/json' \
  -d '{"model":"h","prompt":"Once upon a time","max_tokens":8,"temperature":0}' >"$tmp/gw.json" || fail "completion"
python3 - "$tmp/gw.json" "$tmp/local.txt" <<'PY' || fail "the gateway's text differs from the local run"
import json, sys
text = json.load(open(sys.argv[1]))['choices'][0]['text']
local = open(sys.argv[2]).read()
sys.exit(0 if text and local.removesuffix("\n") == text else 1)
PY
echo "ok: omni gateway --model hf:... serves the stored copy offline, as id 'h', with the local greedy text"
