#!/usr/bin/env python3
"""Differential test of the engine against llama.cpp on many random synthetic shapes.

Draws random shapes (seeded: architecture, blocks 1-6, GQA 1/2/4/8, head size 64/128, tied or
untied embeddings, every tensor type, generated or real vocabularies, prompts of random tokens up to
300 long), makes each model with `omni synth --shape custom:...`, runs it through one or more
llama.cpp builds (a reference dumper, scripts/parity/lldump.cpp, linked against each build: this
script only runs them), measures how far the builds disagree with each other (the reference's own
build-to-build spread), and writes one reference per (shape, type) to the output folder. Then it
runs the engine's check (differential_reference_test) on them in measure mode to learn where the
engine reproduces the primary build exactly, records that, moves the references the rule cannot
check or the engine does not meet to OUT/outside-rule/ with the reason (kept as findings; CI reads
only OUT/*.json), and runs the check again as CI will.

  scripts/parity/differential.py --build NAME DUMPER "OPTIONS" [--build ...] --primary NAME
      [--omni build/apps/omni/omni] [--test build/src/model/differential_reference_test]
      [--out tests/data/reference/differential] [--count 36] [--seed 1] [--archs llama,qwen2,gemma,gemma2]
      [--llama-commit SHA] [--llama-date DATE] [--gemma2-layers 26] [--shared ../shared]

  NAME     a label for the build ("native", "native-no-llamafile", "avx2")
  DUMPER   lldump built against that llama.cpp build
  OPTIONS  how that build was configured (recorded verbatim), e.g. "GGML_NATIVE=ON GGML_LLAMAFILE=ON"

Needs only Python 3's standard library. Nothing here builds llama.cpp; see docs/porting.md.
"""
import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

TYPES = ["f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l",
         "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k"]
# (path under shared/, or None for the generated SPM vocabulary of the given size)
VOCABS = [(None, 2048), (None, 4096), (None, 6000), ("vocab/ggml-vocab-llama-spm.gguf", 0),
          ("vocab/ggml-vocab-phi-3.gguf", 0), ("vocab/ggml-vocab-gpt-2.gguf", 0)]
MARGIN = 0.05          # below this top-1/top-2 gap rounding may flip the argmax
EXACT = 2e-6           # "exact": log-probs equal to the precision the dumper prints (1e-9) plus noise of exp/log
STEPS = 8
PPL_CTX, PPL_CHUNKS = 64, 2


def cpu_info():
    model, flags = "?", []
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    simd = sorted(f for f in flags if re.match(r"^(sse4_2|avx|avx2|fma|f16c|avx512.*|avx_vnni|amx.*)$", f))
    return {"model": model, "simd_flags": simd}


def draw_shape(rng, index, archs, gemma2_layers):
    arch = archs[index % len(archs)]
    head_dim = rng.choice([64, 128])
    gqa = rng.choice([1, 2, 4, 8])
    kv_heads = rng.choice([1, 2]) if gqa * head_dim * 2 <= 1024 else 1
    heads = kv_heads * gqa
    embd = rng.choice([256, 256, 512])
    if arch == "qwen2":
        # llama.cpp's qwen2 (before qwen3 support) makes attn_q n_embd x n_embd: head size = n_embd / heads.
        while heads * head_dim < 256:
            kv_heads, heads = kv_heads * 2, heads * 2
        embd = heads * head_dim
    layers = gemma2_layers if arch == "gemma2" else rng.randint(1, 6)
    ff = rng.choice([256, 512, 768, 1024])
    tied = 1 if arch.startswith("gemma") else rng.choice([0, 1])
    vocab_path, vocab_size = rng.choice(VOCABS)
    spec = (f"custom:arch={arch},layers={layers},embd={embd},heads={heads},kv_heads={kv_heads},"
            f"head_dim={head_dim},ff={ff},vocab={vocab_size or 4096},tied={tied}")
    return spec, vocab_path


def run_dumper(dumper, model, spec_lines):
    with tempfile.NamedTemporaryFile("w", suffix=".spec", delete=False) as f:
        f.write("\n".join(spec_lines) + "\n")
        spec = f.name
    try:
        out = subprocess.run([dumper, model, spec], check=True, capture_output=True, text=True, timeout=1800)
    finally:
        os.unlink(spec)
    return json.loads(out.stdout)


def margin(step):
    return step["top"][0][1] - step["top"][1][1]


def spread_between(primary, other):
    """Largest top-5 log-prob difference over the steps both builds reached with the same history."""
    worst, compared, diverged = 0.0, 0, 0
    for p, o in zip(primary["prompts"], other["prompts"]):
        for sp, so in zip(p["steps"], o["steps"]):
            theirs = dict((t[0], t[1]) for t in so["top"])
            for tid, lp in sp["top"]:
                if tid in theirs:
                    worst = max(worst, abs(lp - theirs[tid]))
            compared += 1
            if sp["id"] != so["id"]:
                diverged += 1
                break  # later steps continue from different tokens
    return worst, compared, diverged


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", nargs=3, action="append", metavar=("NAME", "DUMPER", "OPTIONS"), required=True)
    ap.add_argument("--primary", required=True)
    ap.add_argument("--omni", default="build/apps/omni/omni")
    ap.add_argument("--test", default="build/src/model/differential_reference_test")
    ap.add_argument("--out", default="tests/data/reference/differential")
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--count", type=int, default=36)
    ap.add_argument("--first", type=int, default=0, help="index of the first shape (to add to a set)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--archs", default="llama,qwen2,gemma,gemma2")
    ap.add_argument("--types", default=",".join(TYPES), help="the types to cycle through")
    ap.add_argument("--gemma2-layers", type=int, default=26,
                    help="llama.cpp before qwen3 support runs gemma2 only at a real block count (26: 2B)")
    ap.add_argument("--llama-commit", default="?")
    ap.add_argument("--llama-date", default="?")
    args = ap.parse_args()

    builds = {name: {"dumper": dumper, "options": options} for name, dumper, options in args.build}
    if args.primary not in builds:
        sys.exit(f"differential: --primary {args.primary} is not one of the --build names")
    for name, b in builds.items():
        if not os.access(b["dumper"], os.X_OK):
            sys.exit(f"differential: no executable dumper for build {name} at {b['dumper']}")
    if not os.access(args.omni, os.X_OK):
        sys.exit(f"differential: no omni binary at {args.omni}")
    os.makedirs(args.out, exist_ok=True)
    archs = args.archs.split(",")
    types = args.types.split(",")
    cpu = cpu_info()
    work = tempfile.mkdtemp(prefix="omni-differential-")
    written = []
    try:
        for index in range(args.first, args.first + args.count):
            rng = random.Random(args.seed * 1000003 + index)
            spec, vocab = draw_shape(rng, index, archs, args.gemma2_layers)
            mix = types[index % len(types)]
            seed = 1000 + index
            model = os.path.join(work, f"m{index}.gguf")
            cmd = [args.omni, "synth", "--shape", spec, "--type", mix, "--seed", str(seed), "--threads", "2"]
            if vocab:
                cmd += ["--vocab", os.path.join(args.shared, vocab)]
            subprocess.run(cmd + [model], check=True, capture_output=True, text=True)
            info = run_dumper(builds[args.primary]["dumper"], model, [])
            n_vocab, bos = info["n_vocab"], info["bos"] if info["add_bos"] else None
            lo = 3 if n_vocab > 1000 else 0

            def tokens(n):
                t = [rng.randrange(lo, n_vocab) for _ in range(n)]
                return ([bos] + t[1:]) if bos is not None else t

            prompts = [tokens(rng.randint(2, 20)), tokens(rng.randint(20, 100)), tokens(rng.randint(100, 300))]
            ppl_tokens = [rng.randrange(lo, n_vocab) for _ in range(PPL_CTX * PPL_CHUNKS)]
            lines = [f"prompt {STEPS} " + " ".join(map(str, p)) for p in prompts]
            lines.append(f"ppl {PPL_CTX} {PPL_CHUNKS} {bos if bos is not None else -1} " + " ".join(map(str, ppl_tokens)))
            results = {name: run_dumper(b["dumper"], model, lines) for name, b in builds.items()}
            primary = results[args.primary]
            spread, per_build = 0.0, {}
            for name, r in results.items():
                entry = {"options": builds[name]["options"], "system_info": r["system_info"],
                         "perplexity": r["ppl"]["perplexity"]}
                if name != args.primary:
                    worst, compared, diverged = spread_between(primary, r)
                    entry.update({"max_logprob_diff_vs_primary": worst, "steps_compared": compared,
                                  "prompts_diverged": diverged})
                    spread = max(spread, worst)
                per_build[name] = entry
            ppl = primary["ppl"]["perplexity"]
            ppl_spread = max(abs(r["ppl"]["perplexity"] / ppl - 1) for r in results.values())
            name = f"diff-{index:02d}-{spec.split(',')[0].split('=')[1]}-{mix}"
            ref = {
                "model": name,
                "llama_cpp": {
                    "source": f"ggml-org/llama.cpp commit {args.llama_commit} ({args.llama_date})",
                    "primary": args.primary,
                    "run": "reference dumper scripts/parity/lldump.cpp: n_ctx 512 (perplexity: the chunk length), "
                           "n_batch = n_ubatch = n_ctx, 2 threads, flash attention off, F16 KV cache, "
                           "default weight repacking",
                    "builds": per_build,
                },
                "cpu": cpu,
                "synth": {"command": " ".join(["omni", "synth", "--shape", spec, "--type", mix, "--seed", str(seed)]
                                              + (["--vocab", "../shared/" + vocab] if vocab else []) + ["OUT.gguf"]),
                          "shape": spec, "type": mix, "seed": seed, "layers": 0, "vocab": vocab or ""},
                "note": "prompt_tokens are random token ids (BOS first where the vocabulary asks for it); steps are "
                        "the primary build's greedy steps with log-softmax top-5; spread is the largest top-5 "
                        "log-prob difference between the builds over steps they reached with the same history",
                "spread": {"logprob": spread, "perplexity_rel": ppl_spread},
                "prompts": primary["prompts"],
                "perplexity": {"n_ctx": PPL_CTX, "chunks": PPL_CHUNKS, "bos": bos if bos is not None else -1,
                               "tokens": ppl_tokens, "value": ppl},
            }
            path = os.path.join(args.out, name + ".json")
            with open(path, "w") as f:
                json.dump(ref, f, separators=(",", ":"))
                f.write("\n")
            written.append(path)
            print(f"{name}: {spec} {mix}{' vocab ' + vocab if vocab else ''}: spread {spread:.2e}, "
                  f"ppl {ppl:.4f} (builds within {ppl_spread:.1e})", flush=True)
            os.unlink(model)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # The engine's side: measure against the primary build, record where it is exact, then check.
    if not os.access(args.test, os.X_OK):
        print(f"differential: no test binary at {args.test}; references written without the engine's check")
        return
    env = dict(os.environ, OMNI_DIFFERENTIAL_DIR=os.path.abspath(args.out), OMNI_DIFFERENTIAL_MEASURE="1")
    out = subprocess.run([args.test, "--gtest_filter=*Differential*"], env=env, capture_output=True, text=True)
    measured = {}
    for line in out.stdout.splitlines():
        if line.startswith("[differential-measure] "):
            m = json.loads(line.split(" ", 1)[1])
            measured[m["name"]] = m
    outside = os.path.join(args.out, "outside-rule")
    for path in written:
        with open(path) as f:
            ref = json.load(f)
        m = measured.get(ref["model"])
        if m is None:
            print(f"{ref['model']}: the engine's check did not report it", file=sys.stderr)
            continue
        ref["exact"] = m["agrees"] and m["worst"] <= EXACT and m["ppl_rel"] <= 1e-6
        ref["engine_at_recording"] = {"worst_logprob_diff": m["worst"], "steps_compared": m["steps"],
                                      "greedy_mismatches": m["mismatched"], "perplexity_rel": m["ppl_rel"],
                                      "agrees_by_the_rule": m["agrees"]}
        if not m["agrees"]:
            # Kept, with the numbers and the reason, where CI does not read them.
            few = m["mismatched"] == 0 and m["steps"] < 3 and m["ppl_rel"] <= 0.005
            ref["engine_at_recording"]["outside_rule"] = (
                "fewer than 3 steps with a margin above max(0.05, spread): nothing for the step rule to compare"
                if few else "disagrees")
            os.makedirs(outside, exist_ok=True)
            os.unlink(path)
            path = os.path.join(outside, os.path.basename(path))
        with open(path, "w") as f:
            json.dump(ref, f, separators=(",", ":"))
            f.write("\n")
        verdict = ("exact" if ref["exact"] else "within the rule" if m["agrees"]
                   else "outside the rule: " + ref["engine_at_recording"]["outside_rule"] + " (moved to outside-rule/)")
        print(f"{ref['model']}: engine worst {m['worst']:.2e} over {m['steps']} steps, {m['mismatched']} greedy "
              f"mismatches, ppl rel {m['ppl_rel']:.1e} -> {verdict}")
    env.pop("OMNI_DIFFERENTIAL_MEASURE")
    check = subprocess.run([args.test], env=env, capture_output=True, text=True)
    print(check.stdout[-3000:])
    sys.exit(check.returncode)


if __name__ == "__main__":
    main()
