// Load test of `omni gateway`: CLIENTS concurrent clients, each sending streaming chat requests
// back to back for SECONDS. Reports time to first token (p50/p99), generated tokens/s, the status
// codes seen, and the gateway's resident memory before and after; fails on any outcome other than
// a 200 stream that ends with [DONE], a 429 or a 503 (the designed refusals), and if sessions or
// queue places are still held after the run.
// Usage: node gateway_load.mjs URL CLIENTS SECONDS MAX_TOKENS [GATEWAY_PID]
const [url, clientsText, secondsText, maxTokensText, pidText] = process.argv.slice(2);
const clients = Number(clientsText ?? 200), seconds = Number(secondsText ?? 60), maxTokens = Number(maxTokensText ?? 32);
import { readFileSync } from "node:fs";

const rssKiB = () => {
  if (!pidText) return NaN;
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pidText}/status`, "utf8"));
  return m ? Number(m[1]) : NaN;
};
const health = async () => (await fetch(`${url}/health`)).json();
const model = (await (await fetch(`${url}/v1/models`)).json()).data[0].id;

const ttft = [], statuses = new Map(), problems = [];
let tokens = 0, completed = 0;
const count = (key) => statuses.set(key, (statuses.get(key) ?? 0) + 1);

async function oneRequest(client, i) {
  const started = performance.now();
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      model, stream: true, max_tokens: maxTokens, temperature: 0.8, seed: client * 100000 + i,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: `Client ${client}, request ${i}: tell me something.` }],
    }),
  });
  count(response.status);
  if (response.status === 429 || response.status === 503) {
    await response.body?.cancel();
    const wait = Number(response.headers.get("retry-after") ?? 1);
    if (!(wait >= 1)) problems.push(`${response.status} without a Retry-After`);
    await new Promise((r) => setTimeout(r, Math.min(wait, 2) * 1000 * Math.random()));
    return;
  }
  if (response.status !== 200) {
    problems.push(`status ${response.status}: ${await response.text()}`);
    return;
  }
  const decoder = new TextDecoder();
  let buffer = "", first = true, done = false, usage = null;
  for await (const bytes of response.body) {
    buffer += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!event.startsWith("data: ")) continue;
      const data = event.slice(6);
      if (data === "[DONE]") { done = true; continue; }
      const chunk = JSON.parse(data);
      if (chunk.error) problems.push(`stream error: ${chunk.error.message}`);
      if (chunk.usage) usage = chunk.usage;
      if (first && chunk.choices?.[0]?.delta?.content) {
        ttft.push(performance.now() - started);
        first = false;
      }
    }
  }
  if (!done) problems.push("a stream ended without [DONE]");
  if (usage) tokens += usage.completion_tokens;
  completed++;
}

async function client(id, deadline) {
  for (let i = 0; performance.now() < deadline; i++) {
    try {
      await oneRequest(id, i);
    } catch (e) {
      problems.push(`client ${id}: ${e.message}`);
    }
  }
}

// Warm-up at full concurrency, so the RSS baseline includes the touched weights, the sessions'
// buffers and the server's threads; growth after that would be a leak.
const warmup = Math.min(3, seconds / 3);
await Promise.all(Array.from({ length: clients }, (_, id) => client(id, performance.now() + warmup * 1000)));
ttft.length = 0; statuses.clear(); tokens = 0; completed = 0;
const rssBefore = rssKiB();
const t0 = performance.now();
const deadline = t0 + seconds * 1000;
await Promise.all(Array.from({ length: clients }, (_, id) => client(id, deadline)));
const elapsed = (performance.now() - t0) / 1000;

// Everything must be released: no session or queue place held once the clients are done.
let h = await health();
for (let i = 0; i < 50 && (h.active_sessions !== 0 || h.queue_depth !== 0); i++) {
  await new Promise((r) => setTimeout(r, 100));
  h = await health();
}
if (h.active_sessions !== 0 || h.queue_depth !== 0) problems.push(`still held after the run: ${JSON.stringify(h)}`);
const rssAfter = rssKiB();

ttft.sort((a, b) => a - b);
const pct = (p) => (ttft.length ? ttft[Math.min(ttft.length - 1, Math.floor((p / 100) * ttft.length))] : NaN);
const summary = {
  clients, seconds: Number(elapsed.toFixed(1)), max_tokens: maxTokens,
  completed_streams: completed, statuses: Object.fromEntries(statuses),
  ttft_ms: { p50: Number(pct(50).toFixed(1)), p99: Number(pct(99).toFixed(1)) },
  generated_tokens: tokens, tokens_per_s: Number((tokens / elapsed).toFixed(1)),
  rss_mib_after_warmup_and_at_end: { before: Number((rssBefore / 1024).toFixed(1)), after: Number((rssAfter / 1024).toFixed(1)) },
  problems: problems.slice(0, 10), problem_count: problems.length,
};
console.log(JSON.stringify(summary, null, 2));
if (problems.length || completed === 0) process.exit(1);
