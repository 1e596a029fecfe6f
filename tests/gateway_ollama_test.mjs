// Drives `omni gateway` with the official ollama npm client (see gateway_ollama_test.sh).
// Args: GATEWAY_URL WORK_DIR WEB_DIR CHAT_PROMPT SYSTEM TEXT_PROMPT N
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import path from "node:path";
import { check, finish } from "./check_lib.mjs";

const [url, work, webDir, chatPrompt, system, textPrompt, nText] = process.argv.slice(2);
const N = Number(nText);
const require = createRequire(path.join(webDir, "package.json"));
const { Ollama } = require("ollama");
const ollama = new Ollama({ host: url });

const expected = (name) => readFileSync(path.join(work, `${name}.txt`), "utf8").replace(/\n$/, "");
for (const name of ["chat", "chat_default_penalty", "system", "text"])
  assert.ok(expected(name).length > 0, `omni run gave no ${name} text`);


const greedy = { temperature: 0, repeat_penalty: 1.0, num_predict: N };
let model = "";

await check("list names the served model; show and version answer", async () => {
  const list = await ollama.list();
  assert.equal(list.models.length, 1);
  model = list.models[0].name;
  assert.equal(model, "synth-llama-q8_0");
  const shown = await ollama.show({ model: `${model}:latest` });
  assert.equal(shown.details.format, "gguf");
  assert.equal(shown.details.family, "llama");
  assert.ok(shown.model_info["llama.context_length"] > 0);
  const version = await ollama.version();
  assert.match(version.version, /^\d+\.\d+\.\d+$/);
});

await check("chat, whole, greedy == omni run", async () => {
  const r = await ollama.chat({ model, messages: [{ role: "user", content: chatPrompt }], stream: false, options: greedy });
  assert.equal(r.done, true);
  assert.equal(r.message.role, "assistant");
  assert.equal(r.message.content, expected("chat"));
  assert.ok(["stop", "length"].includes(r.done_reason), r.done_reason);
  assert.ok(r.eval_count > 0 && r.eval_count <= N, `eval_count ${r.eval_count}`);
  assert.ok(r.prompt_eval_count > 0);
  assert.ok(r.total_duration >= r.eval_duration && r.eval_duration >= 0);
});

await check("chat, streamed, greedy == omni run", async () => {
  const stream = await ollama.chat({ model, messages: [{ role: "user", content: chatPrompt }], stream: true, options: greedy });
  let text = "", parts = 0, last = null;
  for await (const part of stream) {
    if (!part.done) parts++;
    text += part.message.content;
    last = part;
  }
  assert.equal(text, expected("chat"));
  assert.ok(parts > 1, `only ${parts} parts`);
  assert.equal(last.done, true);
  assert.ok(last.eval_count > 0);
});

await check("chat with a system message == omni run --system", async () => {
  const r = await ollama.chat({
    model, messages: [{ role: "system", content: system }, { role: "user", content: chatPrompt }], stream: false,
    options: greedy,
  });
  assert.equal(r.message.content, expected("system"));
});

await check("Ollama's default repeat penalty applies when the request leaves it out", async () => {
  const r = await ollama.chat({
    model, messages: [{ role: "user", content: chatPrompt }], stream: false, options: { temperature: 0, num_predict: N },
  });
  assert.equal(r.message.content, expected("chat_default_penalty"));
});

await check("generate: a user turn through the template, and raw text completion", async () => {
  const templated = await ollama.generate({ model, prompt: chatPrompt, system, stream: false, options: greedy });
  assert.equal(templated.response, expected("system"));
  const raw = await ollama.generate({ model, prompt: textPrompt, raw: true, stream: false, options: greedy });
  assert.equal(raw.response, expected("text"));
  const stream = await ollama.generate({ model, prompt: textPrompt, raw: true, stream: true, options: greedy });
  let text = "";
  for await (const part of stream) text += part.response;
  assert.equal(text, expected("text"));
});

await check("errors: unknown model 404, a format that is neither \"json\" nor a schema 400, with Ollama's error text", async () => {
  await assert.rejects(ollama.chat({ model: "nope", messages: [{ role: "user", content: "hi" }], stream: false }),
                       (e) => e.status_code === 404 && /nope/.test(e.error));
  await assert.rejects(
    ollama.chat({ model, messages: [{ role: "user", content: "hi" }], stream: false, format: "yaml" }),
    (e) => e.status_code === 400 && /format/.test(e.error));
  await assert.rejects(
    ollama.generate({ model, prompt: "hi", stream: false, options: { num_predict: 0 } }),
    (e) => e.status_code === 400 && /num_predict/.test(e.error));
});

finish();
