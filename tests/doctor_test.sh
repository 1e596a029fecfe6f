#!/usr/bin/env bash
# omni doctor: its JSON against what the system and the engine say independently (/proc/cpuinfo,
# /proc/meminfo, statvfs, `omni --version`'s kernel set), the blocks that fit against the memory
# planner's rule recomputed from the GGUF's tensor table (read here by a reader of its own), and
# the reachability check through a bootstrap node on loopback (open: its probe arrives) and with
# no bootstrap answering (a clear "not checked", not a verdict).
set -euo pipefail
omni=$1 shared=$2
tmp=$(mktemp -d)
boot_pid=
cleanup() {
  if [[ -n $boot_pid ]]; then kill "$boot_pid" 2>/dev/null || true; wait "$boot_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$omni" node --bootstrap-only --listen 127.0.0.1:0 >"$tmp/boot.log" 2>&1 &
boot_pid=$!
for _ in $(seq 1 200); do
  grep -q "reachability checks on tcp" "$tmp/boot.log" && break
  kill -0 "$boot_pid" 2>/dev/null || { cat "$tmp/boot.log"; fail "the bootstrap node exited"; }
  sleep 0.1
done
boot=$(sed -n 's/.*reachability checks on tcp \(.*\)$/\1/p' "$tmp/boot.log")
[[ -n $boot ]] || { cat "$tmp/boot.log"; fail "no reachability line from the bootstrap node"; }

model="$shared/models/synth-llama-q8_0.gguf"
port=$(free_port)
kernels=$("$omni" --version | sed -n 's/.*CPU kernels \([a-z0-9]*\).*/\1/p')
[[ -n $kernels ]] || fail "omni --version names no kernel set"

# The planner's numbers, recomputed here from the tensor table: a memory cap that fits about 2.5
# blocks, and one that fits none.
read -r fit_mib none_mib < <(python3 - "$model" <<'PY'
import struct, sys
# (block elements, block bytes) per ggml type id.
SIZES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
         10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 30: (1, 2)}
f = open(sys.argv[1], "rb")
def u(fmt): return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]
def s(): return f.read(u("Q")).decode()
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "B", 10: "Q", 11: "q", 12: "d"}
def value(t):
    if t == 8: return s()
    if t == 9:
        et, n = u("I"), u("Q")
        return [value(et) for _ in range(n)]
    return u(SCALAR[t])
assert f.read(4) == b"GGUF"
version, n_tensors, n_kv = u("I"), u("Q"), u("Q")
for _ in range(n_kv):
    s(); value(u("I"))
blocks, emb = {}, 0
for _ in range(n_tensors):
    name = s()
    dims = [u("Q") for _ in range(u("I"))]
    t = u("I"); u("Q")
    n = 1
    for d in dims: n *= d
    per, size = SIZES[t]
    nbytes = n // per * size
    if name.startswith("blk."):
        b = int(name.split(".")[1]); blocks[b] = blocks.get(b, 0) + nbytes
    elif name == "token_embd.weight":
        emb = nbytes
MiB = 1 << 20
kv = 1 * MiB
largest = max(blocks.values())
print((emb + kv + int(2.5 * largest)) // MiB + 1, (emb + kv + largest) // MiB - 1)
PY
)

"$omni" doctor --json --model "$model" --bootstrap "$boot" --port "$port" --max-memory-mib "$fit_mib" \
  --max-kv-mib 1 --measure-seconds 0.2 -t 1 --data-dir "$tmp/not-yet/omni" >"$tmp/fit.json"
"$omni" doctor --json --model "$model" --max-memory-mib "$none_mib" --max-kv-mib 1 --measure-seconds 0.1 -t 1 \
  --data-dir "$tmp" >"$tmp/none.json"

python3 - "$tmp/fit.json" "$tmp/none.json" "$model" "$fit_mib" "$none_mib" "$kernels" "$tmp" <<'PY'
import json, os, struct, sys
fit, none = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
model, fit_mib, none_mib, kernels, tmp = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
MiB = 1 << 20

# Hardware, against /proc.
cpuinfo = open("/proc/cpuinfo").read().splitlines()
processors = sum(1 for l in cpuinfo if l.startswith("processor"))
assert fit["cores"] == processors == os.cpu_count(), (fit["cores"], processors)
meminfo = {l.split(":")[0]: int(l.split()[1]) * 1024 for l in open("/proc/meminfo")}
assert fit["memory_total_bytes"] == meminfo["MemTotal"], fit["memory_total_bytes"]
assert 0 < fit["memory_available_bytes"] <= fit["memory_total_bytes"]
flags = set()
for l in cpuinfo:
    if l.startswith("flags") or l.startswith("Features"):
        flags = set(l.split(":", 1)[1].split())
        break
known = {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16",
         "asimd", "asimddp", "i8mm"}
assert set(fit["cpu_features"]) == flags & known, (fit["cpu_features"], sorted(flags & known))
names = [l.split(":", 1)[1].strip() for l in cpuinfo if l.startswith("model name")]
if names:
    assert fit["cpu"] == names[0], (fit["cpu"], names[0])
# The kernel set is the engine's, and the one these features allow (unless OMNI_KERNELS caps it).
assert fit["kernels"] == kernels, (fit["kernels"], kernels)
if not os.environ.get("OMNI_KERNELS"):
    have = set(fit["cpu_features"])
    x86_512 = {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"} <= have
    x86_2 = {"avx2", "fma", "f16c"} <= have
    if "asimd" in have:
        expect = "i8mm" if {"asimddp", "i8mm"} <= have else "dotprod" if "asimddp" in have else "neon"
    else:
        expect = "avx512" if x86_512 and x86_2 else "avx2" if x86_2 else "scalar"
    assert fit["kernels"] == expect, (fit["kernels"], expect)

# Disk: the data directory does not exist yet, so its nearest existing parent is measured.
assert fit["data_dir"] == tmp + "/not-yet/omni" and fit["disk_dir"] == tmp, (fit["data_dir"], fit["disk_dir"])
st = os.statvfs(tmp)
assert abs(fit["disk_free_bytes"] - st.f_bavail * st.f_frsize) <= 256 * MiB, fit["disk_free_bytes"]

# The model: the planner's rule, recomputed from this GGUF reader's own tensor table.
SIZES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
         10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 30: (1, 2)}
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "B", 10: "Q", 11: "q", 12: "d"}
f = open(model, "rb")
def u(fmt): return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]
def s(): return f.read(u("Q")).decode()
def value(t):
    if t == 8: return s()
    if t == 9:
        et, n = u("I"), u("Q")
        return [value(et) for _ in range(n)]
    return u(SCALAR[t])
f.read(4); u("I")
n_tensors, n_kv = u("Q"), u("Q")
for _ in range(n_kv):
    s(); value(u("I"))
blocks, emb = {}, 0
for _ in range(n_tensors):
    name = s()
    dims = [u("Q") for _ in range(u("I"))]
    t = u("I"); u("Q")
    n = 1
    for d in dims: n *= d
    nbytes = n // SIZES[t][0] * SIZES[t][1]
    if name.startswith("blk."):
        b = int(name.split(".")[1]); blocks[b] = blocks.get(b, 0) + nbytes
    elif name == "token_embd.weight":
        emb = nbytes
sizes = [blocks[i] for i in range(len(blocks))]
def expected_fit(cap, kv):
    best = 0
    for k in range(1, len(sizes) + 1):
        heaviest = max(sum(sizes[i:i + k]) for i in range(len(sizes) - k + 1))
        if heaviest + emb + kv > cap: break
        best = k
    return best
m = fit["model"]
assert m["name"] == model and m["synthetic"] is False
assert m["blocks"] == len(sizes), m["blocks"]
assert m["largest_block_bytes"] == max(sizes) and m["embedding_bytes"] == emb, (m["largest_block_bytes"], max(sizes))
assert m["memory_cap_bytes"] == fit_mib * MiB and m["kv_bytes"] == MiB
assert m["blocks_that_fit"] == expected_fit(fit_mib * MiB, MiB) >= 1, (m["blocks_that_fit"], expected_fit(fit_mib * MiB, MiB))
assert "why_none" not in m
assert m["block_tokens_per_s"] > 0
assert abs(m["tokens_per_s"] - m["block_tokens_per_s"] / m["blocks_that_fit"]) <= 1e-9 * m["block_tokens_per_s"]
n = none["model"]
assert expected_fit(none_mib * MiB, MiB) == 0 and n["blocks_that_fit"] == 0 and n["tokens_per_s"] == 0
assert "not enough memory to serve even one block" in n["why_none"], n["why_none"]

# Reachability: asked of the bootstrap on loopback, the probe reached our own listener.
r = fit["reachability"]
assert r["checked"] is True and r["verdict"] == "open" and r["seen_address"] == "127.0.0.1", r
assert r["listened"] is True and r["probe_received"] is True and r["reachable"] is True and r["needs_relay"] is False, r
assert none["reachability"]["checked"] is False and "--bootstrap" in none["reachability"]["error"]
PY

# No bootstrap answering: a clear "not checked", no verdict, exit 0 (the rest of the report stands).
dead=$(free_port)
"$omni" doctor --model "$model" --bootstrap "127.0.0.1:$dead" --port "$port" --measure-seconds 0.1 -t 1 \
  --data-dir "$tmp" >"$tmp/dead.txt"
grep -q "^reachability: not checked: cannot reach the bootstrap's reachability check at tcp 127.0.0.1:$dead" "$tmp/dead.txt" \
  || { cat "$tmp/dead.txt"; fail "no clear message for a bootstrap that does not answer"; }

# Text, with the synthetic stand-in (no --model): a 7B shape, sparse, measured and removed.
TMPDIR=$tmp "$omni" doctor --bootstrap "$boot" --port "$port" --measure-seconds 0.2 -t 1 --data-dir "$tmp" >"$tmp/text.txt"
cat "$tmp/text.txt"
grep -q "^model mistral-7b q4_k_m (synthetic): .* of its 32 blocks" "$tmp/text.txt" || fail "synthetic model line"
grep -q "^reachable from outside: $boot connected back to 127.0.0.1 port $port" "$tmp/text.txt" || fail "reachable line"
[[ -z $(ls "$tmp" | grep omni-doctor) ]] || fail "the synthetic model was left behind"
echo "doctor: ok"
