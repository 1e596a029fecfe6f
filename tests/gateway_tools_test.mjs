// Tool calls and structured output through the openai, AI SDK and ollama npm clients (see
// gateway_tools_test.sh). Args: GATEWAY_URL WEB_DIR
import { createRequire } from "node:module";
import assert from "node:assert/strict";
import path from "node:path";
import { check, finish } from "./check_lib.mjs";

const [url, webDir] = process.argv.slice(2);
const require = createRequire(path.join(webDir, "package.json"));
const OpenAI = require("openai");
const { Ollama } = require("ollama");
const { generateText, generateObject, tool, jsonSchema } = require("ai");
const { createOpenAICompatible } = require("@ai-sdk/openai-compatible");

const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "not-needed", maxRetries: 0 });
const ollama = new Ollama({ host: url });
const provider = createOpenAICompatible({ name: "omni", baseURL: `${url}/v1`, supportsStructuredOutputs: true });
const model = (await client.models.list()).data[0].id;

const weatherParameters = {
  type: "object",
  properties: { city: { type: "string", minLength: 1, maxLength: 12 }, days: { type: "integer" } },
  required: ["city"],
  additionalProperties: false,
};
const timeParameters = { type: "object", properties: { zone: { enum: ["UTC", "CET"] } }, required: ["zone"] };
const tools = [
  { type: "function", function: { name: "get_weather", description: "The weather in a city", parameters: weatherParameters } },
  { type: "function", function: { name: "get_time", description: "The time in a zone", parameters: timeParameters } },
];
const personSchema = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 10 },
    age: { type: "integer" },
    tags: { type: "array", items: { type: "string", maxLength: 6 }, maxItems: 3 },
    role: { enum: ["admin", "user"] },
  },
  required: ["name", "age", "tags", "role"],
  additionalProperties: false,
};

// Independent checks of what the schemas above demand.
function assertWeatherArgs(args) {
  assert.deepEqual(Object.keys(args).filter((k) => k !== "city" && k !== "days"), []);
  assert.equal(typeof args.city, "string");
  assert.ok([...args.city].length >= 1 && [...args.city].length <= 12, `city ${JSON.stringify(args.city)}`);
  if ("days" in args) assert.ok(Number.isInteger(args.days));
}
function assertArgsFor(name, args) {
  if (name === "get_weather") return assertWeatherArgs(args);
  assert.equal(name, "get_time");
  assert.ok(["UTC", "CET"].includes(args.zone), `zone ${JSON.stringify(args.zone)}`);
}
function assertPerson(p) {
  assert.deepEqual(Object.keys(p).sort(), ["age", "name", "role", "tags"]);
  assert.ok(typeof p.name === "string" && [...p.name].length <= 10);
  assert.ok(Number.isInteger(p.age));
  assert.ok(Array.isArray(p.tags) && p.tags.length <= 3 && p.tags.every((t) => typeof t === "string" && [...t].length <= 6));
  assert.ok(["admin", "user"].includes(p.role));
}

const question = { role: "user", content: "What is the weather in Oslo?" };
const sampling = { temperature: 0.8, seed: 11, max_tokens: 300 };

// ---- openai ----
await check("openai: a named tool call, its result, then an answer", async () => {
  const first = await client.chat.completions.create({
    model, messages: [question], tools, tool_choice: { type: "function", function: { name: "get_weather" } }, ...sampling,
  });
  const choice = first.choices[0];
  assert.equal(choice.finish_reason, "tool_calls");
  assert.equal(choice.message.content, null);
  assert.equal(choice.message.tool_calls.length, 1);
  const call = choice.message.tool_calls[0];
  assert.equal(call.type, "function");
  assert.match(call.id, /^call_/);
  assert.equal(call.function.name, "get_weather");
  assertWeatherArgs(JSON.parse(call.function.arguments));

  const result = { role: "tool", tool_call_id: call.id, content: JSON.stringify({ forecast: "sunny", celsius: 21 }) };
  const baseline = await client.chat.completions.create({ model, messages: [question], tools, tool_choice: "none", max_tokens: 1 });
  const second = await client.chat.completions.create({
    model, messages: [question, choice.message, result], tools, tool_choice: "none", temperature: 0.8, seed: 12, max_tokens: 12,
  });
  const answer = second.choices[0];
  assert.ok(["stop", "length"].includes(answer.finish_reason));
  assert.equal(typeof answer.message.content, "string");
  assert.equal(answer.message.tool_calls, undefined);
  // The call and its result went into the prompt through the template.
  assert.ok(second.usage.prompt_tokens > baseline.usage.prompt_tokens + 10, JSON.stringify([baseline.usage, second.usage]));
});

await check("openai: tool_choice required, streamed as tool-call deltas", async () => {
  const stream = await client.chat.completions.create({ model, messages: [question], tools, tool_choice: "required", ...sampling, stream: true });
  const calls = [];
  let finishReason = null, content = "";
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (!choice) continue;
    content += choice.delta?.content ?? "";
    for (const d of choice.delta?.tool_calls ?? []) {
      calls[d.index] ??= { id: "", name: "", arguments: "" };
      if (d.id) calls[d.index].id = d.id;
      if (d.function?.name) calls[d.index].name += d.function.name;
      if (d.function?.arguments) calls[d.index].arguments += d.function.arguments;
    }
    if (choice.finish_reason) finishReason = choice.finish_reason;
  }
  assert.equal(finishReason, "tool_calls");
  assert.equal(content, "");
  assert.equal(calls.length, 1);
  assert.match(calls[0].id, /^call_/);
  assertArgsFor(calls[0].name, JSON.parse(calls[0].arguments));
});

await check("openai: several seeds, every forced call names a tool and fits its schema", async () => {
  for (let seed = 100; seed < 106; seed++) {
    const r = await client.chat.completions.create({ model, messages: [question], tools, tool_choice: "required", ...sampling, seed });
    const call = r.choices[0].message.tool_calls[0];
    assertArgsFor(call.function.name, JSON.parse(call.function.arguments));
  }
});

await check("openai: response_format json_schema (strict) gives a valid object", async () => {
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model, messages: [{ role: "user", content: "Describe a person." }], ...sampling, seed,
      response_format: { type: "json_schema", json_schema: { name: "person", strict: true, schema: personSchema } },
    });
    assert.equal(r.choices[0].finish_reason, "stop");
    assertPerson(JSON.parse(r.choices[0].message.content));
  }
  // Any object: a random model writes strings without end (a closing quote is one of few admitted
  // tokens among 50k), so the answer is cut by max_tokens; it must be the start of an object, and
  // parse where it ended.
  for (let seed = 1; seed <= 3; seed++) {
    const o = await client.chat.completions.create({
      model, messages: [{ role: "user", content: "Any JSON object." }], ...sampling, seed, max_tokens: 40,
      response_format: { type: "json_object" },
    });
    const text = o.choices[0].message.content;
    assert.ok(text.startsWith("{"), text);
    if (o.choices[0].finish_reason === "stop") assert.equal(typeof JSON.parse(text), "object");
  }
});

await check("openai: a schema keyword that cannot be enforced is a 400 naming it", async () => {
  await assert.rejects(
    client.chat.completions.create({
      model, messages: [question], max_tokens: 5,
      response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "string", pattern: "^a+$" } } },
    }),
    (e) => e.status === 400 && /'pattern'/.test(e.message) && e.param === "response_format.json_schema.schema",
  );
});

// ---- Vercel AI SDK ----
await check("AI SDK: generateText runs a forced tool call and its tool, then answers from the result", async () => {
  const sdkTools = {
    get_weather: tool({
      description: "The weather in a city",
      inputSchema: jsonSchema(weatherParameters),
      execute: async ({ city }) => ({ city, forecast: "sunny", celsius: 21 }),
    }),
  };
  const first = await generateText({
    model: provider.chatModel(model), messages: [question], tools: sdkTools,
    toolChoice: { type: "tool", toolName: "get_weather" }, temperature: 0.8, seed: 21, maxOutputTokens: 300,
  });
  assert.equal(first.finishReason, "tool-calls");
  assert.equal(first.toolCalls.length, 1);
  assert.equal(first.toolCalls[0].toolName, "get_weather");
  assertWeatherArgs(first.toolCalls[0].input);
  assert.equal(first.toolResults[0].output.forecast, "sunny");
  const second = await generateText({
    model: provider.chatModel(model), messages: [question, ...first.response.messages], tools: sdkTools,
    toolChoice: "none", temperature: 0.8, seed: 22, maxOutputTokens: 12,
  });
  assert.equal(typeof second.text, "string");
  assert.ok(["stop", "length"].includes(second.finishReason), second.finishReason);
  assert.equal(second.toolCalls.length, 0);
});

await check("AI SDK: generateObject with a JSON Schema", async () => {
  const r = await generateObject({
    model: provider.chatModel(model), schema: jsonSchema(personSchema), schemaName: "person",
    prompt: "Describe a person.", temperature: 0.8, seed: 23, maxOutputTokens: 300,
  });
  assertPerson(r.object);
});

// ---- ollama ----
await check("ollama: a forced tool call (tool_choice extension), its result, then an answer", async () => {
  const options = { temperature: 0.8, seed: 31, num_predict: 300 };
  const first = await ollama.chat({
    model, messages: [question], tools, tool_choice: { type: "function", function: { name: "get_weather" } }, stream: false, options,
  });
  assert.equal(first.done, true);
  assert.equal(first.message.tool_calls.length, 1);
  const call = first.message.tool_calls[0];
  assert.equal(call.function.name, "get_weather");
  assertWeatherArgs(call.function.arguments);  // an object, as Ollama sends it
  const second = await ollama.chat({
    model, stream: false, options: { ...options, num_predict: 12 },
    messages: [question, first.message, { role: "tool", content: JSON.stringify({ forecast: "sunny" }) }],
  });
  assert.equal(typeof second.message.content, "string");
  assert.equal(second.message.tool_calls, undefined);
  const baseline = await ollama.chat({ model, messages: [question], stream: false, options: { num_predict: 1 } });
  assert.ok(second.prompt_eval_count > baseline.prompt_eval_count + 10);

  // Streamed: the call comes in a message of its own before the end.
  let streamed = null;
  for await (const part of await ollama.chat({ model, messages: [question], tools, tool_choice: "required", stream: true, options }))
    if (part.message?.tool_calls) streamed = part.message.tool_calls;
  assert.ok(streamed && streamed.length === 1);
  assertArgsFor(streamed[0].function.name, streamed[0].function.arguments);
});

await check("ollama: format (a JSON Schema, and \"json\") on chat and generate", async () => {
  const options = { temperature: 0.8, seed: 32, num_predict: 300 };
  const chat = await ollama.chat({ model, messages: [{ role: "user", content: "A person?" }], format: personSchema, stream: false, options });
  assertPerson(JSON.parse(chat.message.content));
  const gen = await ollama.generate({ model, prompt: "A person?", format: personSchema, stream: false, options });
  assertPerson(JSON.parse(gen.response));
  // As json_object above: the start of an object, whole where it ended.
  const any = await ollama.generate({ model, prompt: "JSON please", format: "json", stream: false, options: { ...options, num_predict: 40 } });
  assert.ok(any.response.startsWith("{"), any.response);
  if (any.done_reason === "stop") assert.equal(typeof JSON.parse(any.response), "object");
});

finish();
