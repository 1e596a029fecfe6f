#!/usr/bin/env bash
# The examples of docs/api.md, run as they are written: every fenced block whose first line is the
# comment "tested: NAME" is extracted, run against a gateway on a shared model (OMNI_URL,
# OMNI_MODEL), and its output checked: greedy answers against `omni run`'s text for the same
# prompt, the error example's status and param, logit_bias's banned token, the choices' seeds, the
# embeddings of a text and of its token ids (as llama.cpp tokenized it: shared/reference). The Go
# examples run with `go run` where Go is installed, and are reported as skipped where it is not.
# Usage: OMNI SHARED_DIR
set -euo pipefail
OMNI="$1"; SHARED="$2"
HERE="$(cd "$(dirname "$0")" && pwd)"
DOC="$HERE/../docs/api.md"
source "$HERE/gateway_lib.sh"
require_node_modules
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
MODEL="$SHARED/models/synth-llama-q8_0.gguf"
WORK="$(mktemp -d)"; trap 'stop_gateway; rm -rf "$WORK"' EXIT

# The blocks, one file each: NAME.sh, NAME.py or NAME.mjs.
python3 - "$DOC" "$WORK" <<'PY'
import re, sys
doc, work = open(sys.argv[1]).read(), sys.argv[2]
ext = {"sh": "sh", "python": "py", "js": "mjs", "go": "go"}
names = []
for lang, body in re.findall(r"^```(\w+)\n(.*?)^```", doc, re.S | re.M):
    m = re.match(r"(?:#|//) tested: ([\w-]+)\n", body)
    if not m:
        continue
    names.append(m.group(1))
    open(f"{work}/{m.group(1)}.{ext[lang]}", "w").write(body)
open(f"{work}/names", "w").write("\n".join(names) + "\n")
PY
EXPECTED="curl-models curl-chat curl-stream curl-choices curl-embeddings curl-logit-bias curl-error curl-ollama python-chat python-stream js-chat js-stream go-chat go-stream"
[ "$(tr '\n' ' ' <"$WORK/names")" = "$EXPECTED " ] || {
  echo "FAIL: docs/api.md's tested blocks are [$(tr '\n' ' ' <"$WORK/names")], expected [$EXPECTED]"; exit 1; }

# What the examples must print: `omni run`'s greedy text (the gateway falls back to chatml for a
# model without a template), and the greedy tokens of the text prompt.
"$OMNI" run -m "$MODEL" -p "Tell me about the ocean." --chat --chat-template chatml -n 16 --temp 0 -t 1 \
  >"$WORK/chat.txt" 2>/dev/null
"$OMNI" run -m "$MODEL" -p "Once upon a time" -n 16 --temp 0 -t 1 >"$WORK/text.txt" 2>/dev/null
"$OMNI" run -m "$MODEL" -p "Once upon a time" -n 8 --temp 0 -t 1 --json >"$WORK/text.jsonl" 2>/dev/null
cp "$SHARED/reference/synth-llama-q8_0.json" "$WORK/reference.json"
# curl-choices: choice j of a prompt is what seed 7 + j gives alone (`omni run` has the gateway's
# sampling chain; OpenAI's defaults are top_p 1 and no top-k or min-p).
for prompt in "Once upon a time" "Tell me about the ocean."; do
  for seed in 7 8; do
    "$OMNI" run -m "$MODEL" -p "$prompt" -n 16 --temp 0.8 --top-k 0 --top-p 1 --min-p 0 --seed $seed -t 1 \
      >>"$WORK/choices.txt" 2>/dev/null
  done
done

start_gateway "$OMNI" "$MODEL" --threads 1
export OMNI_URL="$GATEWAY_URL" OMNI_MODEL="synth-llama-q8_0"
ln -s "$WEB_DIR/node_modules" "$WORK/node_modules"  # so that the examples' `import "openai"` resolves
failures=0
for name in $EXPECTED; do
  case "$name" in
    curl-*) runner=(bash "$WORK/$name.sh") ;;
    python-*) runner=(python3 "$WORK/$name.py") ;;
    js-*) runner=(node "$WORK/$name.mjs") ;;
    go-*)
      if ! command -v go >/dev/null; then echo "skip $name: no Go toolchain (apt install golang-go)"; continue; fi
      runner=(go run "$WORK/$name.go") ;;
  esac
  if ! timeout 180 "${runner[@]}" >"$WORK/$name.out" 2>"$WORK/$name.err"; then
    echo "FAIL $name: exited with an error"; cat "$WORK/$name.err"; failures=$((failures + 1)); continue
  fi
  if python3 - "$name" "$WORK" <<'PY'
import json, sys
name, work = sys.argv[1], sys.argv[2]
out = open(f"{work}/{name}.out").read()
chat = open(f"{work}/chat.txt").read().removesuffix("\n")   # omni run prints the text and a newline
text = open(f"{work}/text.txt").read().removesuffix("\n")
greedy = [json.loads(l) for l in open(f"{work}/text.jsonl") if l.strip()]
assert chat and text and greedy, "omni run gave no reference text"

def equal(got, want, what):
    assert got == want, f"{what}: got {got!r}, expected {want!r}"

if name == "curl-models":
    equal([m["id"] for m in json.loads(out)["data"]], ["synth-llama-q8_0"], "model ids")
elif name == "curl-chat":
    r = json.loads(out)
    equal(r["object"], "chat.completion", "object")
    equal(r["choices"][0]["message"]["content"], chat, "content")
elif name == "curl-stream":
    events = [l[len("data: "):] for l in out.splitlines() if l.startswith("data: ")]
    equal(events[-1], "[DONE]", "last event")
    chunks = [json.loads(e) for e in events[:-1]]
    equal("".join(c["choices"][0]["text"] for c in chunks if c["choices"]), text, "streamed text")
    assert chunks[-1]["usage"]["completion_tokens"] > 0, "no usage chunk"
elif name == "curl-choices":
    r = json.loads(out)
    equal([c["index"] for c in r["choices"]], [0, 1, 2, 3], "indexes")
    got = "".join(c["text"] + "\n" for c in r["choices"])  # omni run ends each text with a newline
    equal(got, open(f"{work}/choices.txt").read(), "choices")
    assert r["choices"][0]["text"] != r["choices"][1]["text"], "seeds 7 and 8 gave the same text"
elif name == "curl-embeddings":
    r = json.loads(out)
    reference = json.load(open(f"{work}/reference.json"))["prompts"][0]
    equal(reference["prompt_tokens"], [1, 9038, 2501, 263, 931], "the example's token ids (llama.cpp's)")
    a, b = (d["embedding"] for d in r["data"])
    equal(len(a), 256, "dimensions (the model's n_embd)")
    equal(a, b, "the text's vector and its token ids' vector")
    assert abs(sum(x * x for x in a) - 1) < 1e-5, "not unit length"
    equal(r["usage"]["prompt_tokens"], 10, "prompt_tokens")
elif name == "curl-logit-bias":
    tokens = json.loads(out)["choices"][0]["logprobs"]["tokens"]
    banned = greedy[0]["text"]  # the example bans the greedy first token
    equal(len(tokens), 8, "token count")
    assert banned not in tokens, f"the banned token {banned!r} was chosen: {tokens}"
elif name == "curl-error":
    body, status = out.rstrip("\n").rsplit("\n", 1)
    equal(status, "400", "status")
    equal(json.loads(body)["error"]["param"], "temperature", "error.param")
elif name == "curl-ollama":
    r = json.loads(out)
    equal(r["done"], True, "done")
    equal(r["message"]["content"], chat, "content")
else:  # python-*, js-*, go-*: the chat answer's text
    equal(out, chat, "printed text")
PY
  then echo "ok   $name"; else echo "FAIL $name"; failures=$((failures + 1)); fi
done
# The ban example is only meaningful if it bans what greedy decoding would choose.
grep -q "\"logit_bias\": {\"$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["id"])' "$WORK/text.jsonl")\": -100}" "$WORK/curl-logit-bias.sh" \
  || { echo "FAIL curl-logit-bias: the example no longer bans the greedy first token"; failures=$((failures + 1)); }
[ "$failures" = 0 ] || { echo "$failures example(s) failed"; exit 1; }
echo "all examples passed"
