#!/usr/bin/env python3
"""Renders every template in tests/data/templates/templates.json for every conversation in
tests/data/templates/conversations.json with Python's jinja2, configured as transformers'
apply_chat_template configures it (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
loopcontrols, a {% generation %} block, and transformers' tojson / raise_exception /
strftime_now), and writes the results to tests/data/templates/expected/<template>.json, which
src/model/tests/jinja_chat_template_test.cpp compares byte for byte. CI does not run this script;
run it after adding a template or a conversation (needs python3-jinja2).

strftime_now formats a fixed time (FIXED_NOW, UTC) so that the output is reproducible; the C++ test
renders with the same time and TZ=UTC.
"""
import datetime
import json
import os
import sys

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXED_NOW = 1767225600  # 2026-01-01T00:00:00Z

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "templates")


class Generation(Extension):
    # transformers' AssistantTracker marks {% generation %} blocks; rendering is the block's body.
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.fromtimestamp(FIXED_NOW, datetime.timezone.utc).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    manifest = json.load(open(os.path.join(HERE, "templates.json"), encoding="utf-8"))
    conversations = json.load(open(os.path.join(HERE, "conversations.json"), encoding="utf-8"))
    out_dir = os.path.join(HERE, "expected")
    os.makedirs(out_dir, exist_ok=True)
    env = environment()
    for entry in manifest:
        source = open(os.path.join(HERE, entry["file"]), encoding="utf-8").read()
        template = env.from_string(source)
        results = {}
        for conv in conversations:
            variables = {"messages": conv["messages"], "tools": conv.get("tools"), "documents": None,
                         "add_generation_prompt": conv["add_generation_prompt"]}
            for key in ("bos_token", "eos_token"):
                if key in entry:
                    variables[key] = entry[key]
            variables.update(conv.get("extra", {}))
            try:
                results[conv["name"]] = {"output": template.render(**variables)}
            except jinja2.exceptions.TemplateError as e:
                results[conv["name"]] = {"error": str(e), "raised": type(e) is jinja2.exceptions.TemplateError}
            except Exception as e:  # a template's own bug on this conversation (TypeError, ...)
                results[conv["name"]] = {"error": f"{type(e).__name__}: {e}", "raised": False}
        name = os.path.splitext(entry["file"])[0] + ".json"
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, ensure_ascii=False)
            f.write("\n")
        errors = sum(1 for r in results.values() if "error" in r)
        print(f"{entry['file']}: {len(results) - errors} rendered, {errors} errors", file=sys.stderr)

    # Single features: each case is a template and its variables.
    features = json.load(open(os.path.join(HERE, "features.json"), encoding="utf-8"))
    results = []
    for case in features:
        try:
            results.append({"output": env.from_string(case["t"]).render(**case.get("v", {}))})
        except jinja2.exceptions.TemplateError as e:
            results.append({"error": str(e), "raised": type(e) is jinja2.exceptions.TemplateError})
        except Exception as e:
            results.append({"error": f"{type(e).__name__}: {e}", "raised": False})
    with open(os.path.join(out_dir, "features.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
