// The openai npm client against `omni gateway --bootstrap` (see gateway_swarm_test.sh).
// Args: GATEWAY_URL WORK_DIR WEB_DIR CHAT_PROMPT TEXT_PROMPT N LONG CID
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import assert from "node:assert/strict";
import path from "node:path";
import { check, finish } from "./check_lib.mjs";

const [url, work, webDir, chatPrompt, textPrompt, nText, longText, cid] = process.argv.slice(2);
const N = Number(nText), LONG = Number(longText);
const require = createRequire(path.join(webDir, "package.json"));
const OpenAI = require("openai");
const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "not-needed", maxRetries: 0, timeout: 120000 });
const expected = (name) => readFileSync(path.join(work, `${name}.txt`), "utf8").replace(/\n$/, "");
for (const name of ["chat", "text", "long"]) assert.ok(expected(name).length > 0, `omni run gave no ${name} text`);


const model = "synth-llama";
await check("models.list names the covered model with its CID", async () => {
  const models = await client.models.list();
  const entry = models.data.find((m) => m.id === model);
  assert.ok(entry, JSON.stringify(models.data));
  assert.equal(entry.cid, cid);
  assert.ok(!models.data.some((m) => m.id === "synth-qwen2"), "a model with a gap is not listed");
});

await check("chat, not streamed, greedy == omni run", async () => {
  const r = await client.chat.completions.create({
    model, messages: [{ role: "user", content: chatPrompt }], max_tokens: N, temperature: 0,
  });
  assert.equal(r.choices[0].message.content, expected("chat"));
});

await check("chat, streamed, greedy == omni run", async () => {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: "user", content: chatPrompt }], max_tokens: N, temperature: 0, stream: true,
  });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assert.equal(text, expected("chat"));
});

await check("3 chats at once, each greedy == omni run (a swarm pipeline per session)", async () => {
  const answers = await Promise.all([0, 1, 2].map(() => client.chat.completions.create({
    model, messages: [{ role: "user", content: chatPrompt }], max_tokens: N, temperature: 0,
  })));
  for (const r of answers) assert.equal(r.choices[0].message.content, expected("chat"));
});

await check("n > 1 and embeddings are 400s on the swarm, saying why; logit_bias works", async () => {
  await assert.rejects(
    client.embeddings.create({ model, input: "hello" }),
    (e) => e.status === 400 && e.param === "model" && e.code === "embeddings_unavailable" && /swarm/.test(e.message),
  );
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: "user", content: chatPrompt }], max_tokens: 2, n: 2 }),
    (e) => e.status === 400 && e.param === "n" && /swarm/.test(e.message),
  );
  const r = await client.chat.completions.create({
    model, messages: [{ role: "user", content: chatPrompt }], max_tokens: 4, temperature: 1, seed: 3,
    logit_bias: { "500": 100 }, logprobs: true,
  });
  const chosen = r.choices[0].logprobs.content.map((t) => t.token);
  assert.equal(new Set(chosen).size, 1, `+100 on one token: ${JSON.stringify(chosen)}`);
});

await check("completion by CID, not streamed, greedy == omni run", async () => {
  const r = await client.completions.create({ model: cid, prompt: textPrompt, max_tokens: N, temperature: 0 });
  assert.equal(r.choices[0].text, expected("text"));
});

await check("a stream survives the loss of a node of its chain", async () => {
  const stream = await client.completions.create({
    model, prompt: textPrompt, max_tokens: LONG, temperature: 0, stream: true,
  });
  let text = "", chunks = 0;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.text ?? "";
    // The shell kills the chain's node once a few tokens are through.
    if (++chunks === 8) writeFileSync(path.join(work, "long.started"), "1");
  }
  assert.ok(chunks > 8, `${chunks} chunks`);
  assert.equal(text, expected("long"));
});

finish();
