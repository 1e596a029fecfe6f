// Drives `omni gateway` with the official openai npm client (see gateway_openai_test.sh).
// Args: GATEWAY_URL WORK_DIR WEB_DIR CHAT_PROMPT TEXT_PROMPT N
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import path from "node:path";
import { check, finish } from "./check_lib.mjs";

const [url, work, webDir, chatPrompt, textPrompt, nText] = process.argv.slice(2);
const N = Number(nText);
const require = createRequire(path.join(webDir, "package.json"));
const OpenAI = require("openai");
const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "not-needed", maxRetries: 0 });

// `omni run` prints the text and then one newline.
const expected = (name) => readFileSync(path.join(work, `${name}.txt`), "utf8").replace(/\n$/, "");
const generatedCount = (name) =>
  Number(/generated (\d+) tokens/.exec(readFileSync(path.join(work, `${name}.err`), "utf8"))[1]);
const greedyTokens = readFileSync(path.join(work, "chat.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
const greedyIds = greedyTokens.map((t) => t.id);

for (const name of ["chat", "text", "seeded"]) assert.ok(expected(name).length > 0, `omni run gave no ${name} text`);


const models = await client.models.list();
const model = models.data[0].id;

await check("models.list names the served model", async () => {
  assert.equal(models.data.length, 1);
  assert.equal(model, "synth-llama-q8_0");
});

await check("chat, not streamed, greedy == omni run", async () => {
  const r = await client.chat.completions.create({
    model, messages: [{ role: "user", content: chatPrompt }], max_tokens: N, temperature: 0,
  });
  assert.equal(r.object, "chat.completion");
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(r.choices[0].message.content, expected("chat"));
  assert.equal(r.usage.completion_tokens, generatedCount("chat"));
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  if (r.choices[0].finish_reason === "length") assert.equal(r.usage.completion_tokens, greedyIds.length);
});

await check("chat, streamed, greedy == omni run", async () => {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: "user", content: chatPrompt }], max_tokens: N, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = "", chunks = 0, finish = null, usage = null, id = null;
  for await (const chunk of stream) {
    id ??= chunk.id;
    assert.equal(chunk.id, id, "every chunk carries the same id");
    assert.equal(chunk.object, "chat.completion.chunk");
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    chunks++;
    text += choice.delta?.content ?? "";
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  assert.equal(text, expected("chat"));
  assert.ok(chunks >= 2, `${chunks} chunks`);
  assert.ok(finish === "length" || finish === "stop", `finish_reason ${finish}`);
  assert.equal(usage?.completion_tokens, generatedCount("chat"));
});

await check("chat, streamed, seeded sampling == omni run --seed", async () => {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: "user", content: chatPrompt }], max_tokens: N, temperature: 0.9, top_p: 0.9,
    seed: 1234, stream: true,
  });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assert.equal(text, expected("seeded"));
});

await check("text completion, both ways, greedy == omni run", async () => {
  const whole = await client.completions.create({ model, prompt: textPrompt, max_tokens: N, temperature: 0 });
  assert.equal(whole.object, "text_completion");
  assert.equal(whole.choices[0].text, expected("text"));
  assert.equal(whole.usage.completion_tokens, generatedCount("text"));
  const stream = await client.completions.create({ model, prompt: textPrompt, max_tokens: N, temperature: 0, stream: true });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
  assert.equal(text, expected("text"));
});

await check("log-probs: chat's per token == omni run --json's, streamed == whole; text completions' legacy form", async () => {
  const ask = { model, messages: [{ role: "user", content: chatPrompt }], max_tokens: N, temperature: 0, logprobs: true,
                top_logprobs: 3 };
  const whole = await client.chat.completions.create(ask);
  const content = whole.choices[0].logprobs.content;
  assert.equal(content.length, whole.usage.completion_tokens);
  for (let i = 0; i < content.length; i++) {
    const mine = content[i], ref = greedyTokens[i];
    assert.ok(Math.abs(mine.logprob - ref.logprob) < 1e-4, `token ${i}: ${mine.logprob} vs ${ref.logprob}`);
    assert.equal(mine.top_logprobs.length, 3);
    for (let k = 0; k < 3; k++) assert.ok(Math.abs(mine.top_logprobs[k].logprob - ref.top[k][1]) < 1e-4, `token ${i} top ${k}`);
    // Greedy: the chosen token is the most likely one.
    assert.ok(Math.abs(mine.top_logprobs[0].logprob - mine.logprob) < 1e-6);
    assert.deepEqual(mine.top_logprobs[0].bytes, mine.bytes);
  }
  assert.equal(Buffer.concat(content.map((t) => Buffer.from(t.bytes))).toString("utf8"), expected("chat"));
  const stream = await client.chat.completions.create({ ...ask, stream: true });
  const streamed = [];
  for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
  assert.deepEqual(streamed, content);
  const text = await client.completions.create({ model, prompt: textPrompt, max_tokens: N, temperature: 0, logprobs: 2 });
  const lp = text.choices[0].logprobs;
  assert.equal(lp.tokens.length, text.usage.completion_tokens);
  assert.equal(lp.token_logprobs.length, lp.tokens.length);
  assert.ok(lp.top_logprobs.every((t) => Object.keys(t).length <= 2));
  assert.equal(lp.text_offset[0], 0);
  for (let i = 1; i < lp.tokens.length; i++) assert.ok(lp.text_offset[i] >= lp.text_offset[i - 1]);
  const none = await client.chat.completions.create({ ...ask, logprobs: false, top_logprobs: undefined });
  assert.equal(none.choices[0].logprobs, null);
});

await check("stop strings end the answer before them", async () => {
  const full = expected("text");
  // A stop string taken from the middle of the greedy answer.
  const cut = Math.floor(full.length / 2);
  const stop = full.slice(cut, cut + 3);
  const r = await client.completions.create({ model, prompt: textPrompt, max_tokens: N, temperature: 0, stop: [stop] });
  assert.equal(r.choices[0].finish_reason, "stop");
  assert.equal(r.choices[0].text, full.slice(0, full.indexOf(stop)));
});

await check("logit_bias: the greedy tokens banned never appear; an id past the vocabulary is a 400", async () => {
  const ban = Object.fromEntries(greedyIds.map((id) => [String(id), -100]));
  const r = await client.chat.completions.create({
    model, messages: [{ role: "user", content: chatPrompt }], max_tokens: N, temperature: 0, logit_bias: ban,
    logprobs: true,
  });
  const banned = new Set(greedyTokens.map((t) => t.text));
  const chosen = r.choices[0].logprobs.content.map((t) => t.token);
  assert.equal(chosen.length, r.usage.completion_tokens);
  for (const token of chosen) assert.ok(!banned.has(token), `banned token ${JSON.stringify(token)} was chosen`);
  await assert.rejects(
    client.chat.completions.create({
      model, messages: [{ role: "user", content: "x" }], logit_bias: { "32000": 5 },
    }),
    (e) => e.status === 400 && e.param === "logit_bias.32000" && /vocabulary/.test(e.message),
  );
});

await check("n = 3: each greedy choice == omni run, prompt counted once, tokens of all choices", async () => {
  const one = await client.chat.completions.create({
    model, messages: [{ role: "user", content: chatPrompt }], max_tokens: N, temperature: 0,
  });
  const r = await client.chat.completions.create({
    model, messages: [{ role: "user", content: chatPrompt }], max_tokens: N, temperature: 0, n: 3,
  });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  for (const c of r.choices) assert.equal(c.message.content, expected("chat"));
  assert.equal(r.usage.prompt_tokens, one.usage.prompt_tokens);
  assert.equal(r.usage.completion_tokens, 3 * one.usage.completion_tokens);
});

await check("n = 2 streamed and seeded: choice i uses seed + i, choice 0 == omni run --seed, == not streamed", async () => {
  const params = {
    model, messages: [{ role: "user", content: chatPrompt }], max_tokens: N, temperature: 0.9, top_p: 0.9, seed: 1234,
    n: 2,
  };
  const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  const texts = ["", ""], finishes = [null, null];
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      texts[c.index] += c.delta?.content ?? "";
      if (c.finish_reason) finishes[c.index] = c.finish_reason;
    }
  }
  assert.equal(texts[0], expected("seeded"));
  assert.notEqual(texts[1], texts[0]);
  assert.ok(finishes.every((f) => f === "length" || f === "stop"), `finish reasons ${finishes}`);
  const whole = await client.chat.completions.create(params);
  assert.deepEqual(whole.choices.map((c) => c.message.content), texts);
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
  const second = await client.chat.completions.create({ ...params, n: 1, seed: 1235 });
  assert.equal(second.choices[0].message.content, texts[1]);
});

await check("completions: a batch of a string and its token ids (shared/reference), n = 2 each", async () => {
  const reference = JSON.parse(readFileSync(path.join(work, "reference.json"), "utf8")).prompts[0];
  const want = readFileSync(path.join(work, "reference.txt"), "utf8").replace(/\n$/, "");
  const r = await client.completions.create({
    model, prompt: [reference.prompt, reference.prompt_tokens], n: 2, max_tokens: 8, temperature: 0,
  });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2, 3]);
  for (const c of r.choices) assert.equal(c.text, want);
  assert.equal(r.usage.prompt_tokens, 2 * reference.prompt_tokens.length);
  const tokens = await client.completions.create({ model, prompt: reference.prompt_tokens, max_tokens: 8, temperature: 0 });
  assert.equal(tokens.choices[0].text, want);
  await assert.rejects(
    client.completions.create({ model, prompt: ["x", [1, 32000]], max_tokens: 2 }),
    (e) => e.status === 400 && e.param === "prompt[1]" && /vocabulary/.test(e.message),
  );
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: "user", content: "x" }], n: 5 }),
    (e) => e.status === 400 && e.param === "n" && /at most 4/.test(e.message),
  );
});

await check("embeddings: text == its token ids (shared/reference), base64 == floats, unit length, batch order", async () => {
  const reference = JSON.parse(readFileSync(path.join(work, "reference.json"), "utf8")).prompts;
  const post = async (body) => {
    const r = await fetch(`${url}/v1/embeddings`, { method: "POST", body: JSON.stringify(body) });
    return { status: r.status, body: await r.json() };
  };
  // The openai client asks for base64 and decodes it; a plain request gets floats.
  const viaClient = await client.embeddings.create({ model, input: reference[0].prompt });
  const floats = await post({ model, input: reference[0].prompt, encoding_format: "float" });
  assert.equal(floats.status, 200);
  const v = floats.body.data[0].embedding;
  assert.equal(viaClient.data[0].embedding.length, v.length);
  viaClient.data[0].embedding.forEach((x, i) => assert.equal(Math.fround(x), Math.fround(v[i]), `element ${i}`));
  assert.equal(floats.body.object, "list");
  assert.equal(floats.body.usage.prompt_tokens, reference[0].prompt_tokens.length);
  assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-5, "normalized");
  // The same vector from llama.cpp's tokenization of the text, given as token ids.
  const ids = await post({ model, input: reference[0].prompt_tokens });
  assert.deepEqual(ids.body.data[0].embedding, v);
  // A batch of three (text, ids, text): each as it is alone, in order.
  const batch = await post({ model, input: [reference[1].prompt, reference[0].prompt_tokens, reference[2].prompt] });
  assert.deepEqual(batch.body.data.map((d) => d.index), [0, 1, 2]);
  assert.deepEqual(batch.body.data[1].embedding, v);
  const alone = await post({ model, input: reference[1].prompt });
  assert.deepEqual(batch.body.data[0].embedding, alone.body.data[0].embedding);
  const dot = v.reduce((s, x, i) => s + x * alone.body.data[0].embedding[i], 0);
  assert.ok(dot < 0.9999, `two texts gave the same vector (cosine ${dot})`);
  const refused = [
    [{ model, input: [1, 32000] }, "input"],
    [{ model, input: ["a", [5, -1]] }, "input[1]"],
    [{ model, input: "" }, "input"],
    [{ model, input: "x", encoding_format: "int8" }, "encoding_format"],
    [{ model, input: "x", dimensions: 8 }, "dimensions"],
    [{ model, input: Array(65).fill("x") }, "input"],
    [{ model, input: Array(5000).fill(500) }, "input"],
  ];
  for (const [body, param] of refused) {
    const r = await post(body);
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error.param, param, JSON.stringify(r.body));
  }
});

await check("errors: unknown model 404, bad fields 400, in OpenAI's error format", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] }),
    (e) => e.status === 404 && e.code === "model_not_found" && /no-such-model/.test(e.message),
  );
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: "user", content: "x" }], temperature: 7 }),
    (e) => e.status === 400 && e.param === "temperature" && e.type === "invalid_request_error",
  );
  const raw = await fetch(`${url}/v1/chat/completions`, { method: "POST", body: "{not json" });
  assert.equal(raw.status, 400);
  const body = await raw.json();
  assert.equal(typeof body.error.message, "string");
  assert.ok("param" in body.error && "code" in body.error && "type" in body.error);
  const route = await fetch(`${url}/v1/nope`);
  assert.equal(route.status, 404);
  const huge = await fetch(`${url}/v1/completions`, { method: "POST", body: "x".repeat(5 << 20) }).catch((e) => e);
  // A 413 (or the connection closed by the server after it: both refuse the body).
  if (huge instanceof Response) assert.equal(huge.status, 413);
});

async function metric(name) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  return line ? Number(line.split(" ")[1]) : NaN;
}

await check("a client that disconnects cancels its generation and frees the session", async () => {
  const before = await metric("omni_gateway_cancelled_total");
  const controller = new AbortController();
  const response = await fetch(`${url}/v1/completions`, {
    method: "POST", signal: controller.signal, headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model, prompt: textPrompt, max_tokens: 2000, temperature: 0, stream: true }),
  });
  const reader = response.body.getReader();
  await reader.read(); // the first bytes: the generation is under way
  controller.abort();
  let cancelled = before;
  for (let i = 0; i < 100 && cancelled <= before; i++) {
    await new Promise((r) => setTimeout(r, 50));
    cancelled = await metric("omni_gateway_cancelled_total");
  }
  assert.ok(cancelled > before, "omni_gateway_cancelled_total did not grow");
  let active = 1;
  for (let i = 0; i < 100 && active !== 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    active = (await (await fetch(`${url}/health`)).json()).active_sessions;
  }
  assert.equal(active, 0);
});

await check("metrics count the requests by route and status", async () => {
  const text = await (await fetch(`${url}/metrics`)).text();
  assert.match(text, /omni_gateway_requests_total\{route="\/v1\/chat\/completions",status="200"\} [1-9]/);
  assert.match(text, /omni_gateway_requests_total\{route="\/v1\/chat\/completions",status="404"\} 1/);
  assert.match(text, /omni_gateway_time_to_first_token_seconds_count [1-9]/);
  assert.match(text, /# TYPE omni_gateway_request_duration_seconds histogram/);
});

await check("swarm view: this gateway as one node covering every block", async () => {
  const swarm = await (await fetch(`${url}/v1/swarm`)).json();
  assert.equal(swarm.nodes.length, 1);
  assert.deepEqual(swarm.nodes[0].blocks, [0, swarm.models[0].n_layer]);
  assert.equal(swarm.models[0].coverage.length, swarm.models[0].n_layer);
  assert.ok(swarm.models[0].coverage.every((c) => c === 1));
  assert.ok(Array.isArray(swarm.throughput_history));
});

finish();
