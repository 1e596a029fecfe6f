// The chat page and the swarm dashboard in chromium (see gateway_browser_test.sh).
// Args: GATEWAY_URL WEB_DIR CHROMIUM PROMPT EXPECTED_FILE SCREENSHOT_DIR
// Env: GATEWAY_PID, and OMNI, MODEL, GATEWAY_CTX to restart the gateway on the same port after
// this test killed it mid-answer (its pid goes to RESTARTED_PID_FILE, for the script to stop).
import { createRequire } from "node:module";
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import assert from "node:assert/strict";
import path from "node:path";

const [url, webDir, chromium, prompt, expectedFile, shots] = process.argv.slice(2);
const require = createRequire(path.join(webDir, "package.json"));
const { chromium: browserType } = require("playwright-core");
const expected = readFileSync(expectedFile, "utf8").replace(/\n$/, "");
assert.ok(expected.length > 0, "omni run gave no text");
const conversationsKey = "omni.chat.conversations.v1";
const started = Date.now();
const ok = (what) => console.log(`ok   ${what} [${((Date.now() - started) / 1000).toFixed(1)} s]`);

// --- the gateway this test restarts --------------------------------------------------------------
let gatewayPid = Number(process.env.GATEWAY_PID);
let restarted = null;

function killGateway() {
  process.kill(gatewayPid, "SIGKILL");
}

async function restartGateway() {
  const port = new URL(url).port;
  const child = spawn(process.env.OMNI, ["gateway", "--model", process.env.MODEL, "--listen", `127.0.0.1:${port}`,
    "--threads", "1", "--ctx-size", process.env.GATEWAY_CTX, "--web-dir", path.join(webDir, "dist")],
  { stdio: ["ignore", "ignore", "pipe"] });
  restarted = child;
  gatewayPid = child.pid;
  writeFileSync(process.env.RESTARTED_PID_FILE, String(child.pid));
  let log = "";
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the gateway did not restart in 20 s: ${log}`)), 20000);
    child.stderr.on("data", (d) => {
      log += d;
      if (/listening on port/.test(log)) { clearTimeout(timer); resolve(); }
    });
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`the restarted gateway exited (${code}): ${log}`)); });
  });
}

// --- helpers on a page ---------------------------------------------------------------------------
async function openChat(page) {
  await page.goto(`${url}/#/chat`);
  await page.waitForFunction(() => document.querySelector("[data-testid=model]")?.value);
}

// The conversations as the page stored them (the raw Markdown of each answer, not its rendering).
async function stored(page) {
  return page.evaluate((key) => JSON.parse(localStorage.getItem(key) ?? "null"), conversationsKey);
}

async function activeConversation(page) {
  await page.waitForTimeout(400); // the page saves 300 ms after a change
  const chats = await stored(page);
  return chats.conversations.find((c) => c.id === chats.activeId);
}

// The bodies of the chat requests the page makes from now on.
function recordChatRequests(page) {
  const bodies = [];
  page.on("request", (r) => {
    if (r.url().endsWith("/v1/chat/completions")) bodies.push({ body: r.postDataJSON(), headers: r.headers() });
  });
  return bodies;
}

async function send(page, text) {
  await page.getByLabel("Message").fill(text);
  await page.getByRole("button", { name: "Send" }).click();
}

// Waits for the last answer to end; returns its note ("length · 40 tokens · ...") or failure text.
async function lastAnswerEnd(page, timeout = 60000) {
  await page.getByRole("button", { name: "Send" }).waitFor({ timeout });
  const last = page.locator(".message.assistant").last();
  if (await last.locator("[data-testid=failure]").count()) return { failed: true, text: await last.locator("[data-testid=failure]").innerText() };
  return { failed: false, text: await last.locator(".note").innerText() };
}

async function setMaxTokens(page, n) {
  await page.getByLabel("Max tokens").fill(String(n));
}

const browser = await browserType.launch({
  executablePath: chromium,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  for (const scheme of ["light", "dark"]) {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, colorScheme: scheme, deviceScaleFactor: 1 });
    page.on("pageerror", (e) => { throw new Error(`page error: ${e.message}`); });
    await openChat(page);

    // Settings: a fixed seed and length, so the answer is the one `omni run` computed.
    await setMaxTokens(page, 40);
    await page.getByLabel("Seed").fill("42");
    await page.getByLabel("System prompt").fill("");
    await page.getByLabel("Message").fill(prompt);
    // Count the answer's text updates while it streams.
    await page.evaluate(() => {
      window.__updates = 0;
      new MutationObserver(() => window.__updates++).observe(document.querySelector("[data-testid=messages]"), {
        subtree: true, childList: true, characterData: true,
      });
    });
    await page.getByRole("button", { name: "Send" }).click();
    const end = await lastAnswerEnd(page, 30000);
    assert.match(end.text, /^(length|stop) · \d+ tokens/);
    const answer = (await activeConversation(page)).turns.at(-1);
    assert.equal(answer.content, expected, "the streamed answer differs from omni run's");
    assert.equal(answer.state, "done");
    assert.ok((await page.getByTestId("answer").last().innerText()).trim().length > 0, "the answer is not shown");
    assert.ok(await page.evaluate(() => window.__updates) > 0);
    ok(`${scheme}: chat answer streamed (${answer.content.length} chars) and equals omni run's`);

    // The stop button: a long answer, stopped at once.
    await setMaxTokens(page, 400);
    await send(page, "And now a very long story, please.");
    const stop = page.getByRole("button", { name: "Stop" });
    if (await stop.isVisible()) await stop.click().catch(() => {}); // it may already have finished
    await page.getByRole("button", { name: "Send" }).waitFor();
    ok(`${scheme}: stop button returns the composer`);
    await setMaxTokens(page, 40);
    await page.screenshot({ path: path.join(shots, `chat-${scheme}.png`) });

    await page.goto(`${url}/#/swarm`);
    await page.getByTestId("nodes").locator("tbody tr").first().waitFor();
    const row = await page.getByTestId("nodes").locator("tbody tr").first().innerText();
    assert.match(row, /synth-llama-q8_0/);
    assert.equal(await page.locator(".cells .cell").count(), 4, "one coverage cell per block");
    await page.waitForTimeout(500);
    await page.screenshot({ path: path.join(shots, `swarm-${scheme}.png`) });
    ok(`${scheme}: swarm dashboard shows the node and 4 covered blocks`);
    await page.close();
  }

  // --- what is stored is checked on load: garbage is dropped, a valid conversation beside it kept --
  {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on("pageerror", (e) => { throw new Error(`page error: ${e.message}`); });
    await page.goto(`${url}/#/chat`);
    await page.evaluate((key) => localStorage.setItem(key, "not json"), conversationsKey);
    await page.reload();
    await page.getByText("Ask the swarm").waitFor();
    await page.evaluate(([key, value]) => localStorage.setItem(key, value), [conversationsKey, JSON.stringify({
      activeId: "ok", conversations: [1, { id: 7 }, { id: "x", turns: "y" }, { id: "ok", title: "kept", turns: [
        { id: "u", role: "user", content: "hi" }, { id: "a", role: "assistant", state: "streaming", content: "partial" },
        { role: "bogus" }] }],
    })]);
    await page.reload();
    await page.getByText("partial").waitFor();
    assert.equal(await page.getByTestId("conversations").locator("li").count(), 1, "garbage conversations listed");
    assert.equal(await page.locator(".message").count(), 2, "a garbage turn shown");
    assert.match(await page.getByTestId("failure").innerText(), /interrupted/, "an answer streaming at unload is not failed");
    await page.close();
    ok("stored garbage is dropped on load; an answer left streaming is failed");
  }

  // --- conversations survive a reload; several, with new, switch and delete ----------------------
  {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on("pageerror", (e) => { throw new Error(`page error: ${e.message}`); });
    await openChat(page);
    await setMaxTokens(page, 8);
    await send(page, "first conversation");
    assert.equal((await lastAnswerEnd(page)).failed, false);
    const first = await activeConversation(page);
    await page.getByRole("button", { name: "+ New chat" }).click();
    await send(page, "second conversation");
    assert.equal((await lastAnswerEnd(page)).failed, false);
    const list = page.getByTestId("conversations").locator("li");
    assert.equal(await list.count(), 2);

    await page.reload();
    await page.waitForFunction(() => document.querySelector("[data-testid=model]")?.value);
    assert.equal(await list.count(), 2, "the conversations did not survive the reload");
    assert.equal(await page.locator(".chat-title").innerText(), "second conversation", "the open one changed");
    assert.equal(await page.getByLabel("Max tokens").inputValue(), "8", "the settings did not survive the reload");
    await page.getByRole("button", { name: "first conversation", exact: true }).click();
    assert.equal(await page.locator(".message.user .text").first().innerText(), "first conversation");
    assert.equal((await page.getByTestId("answer").last().innerText()).length > 0, true);
    assert.deepEqual((await activeConversation(page)).turns, first.turns, "the reloaded conversation differs");
    await page.getByRole("button", { name: "Delete second conversation" }).click();
    await page.reload();
    await page.waitForFunction(() => document.querySelector("[data-testid=model]")?.value);
    assert.equal(await list.count(), 1, "the deleted conversation came back");
    assert.equal(await list.first().locator(".chat-item").innerText(), "first conversation");
    ok("conversations survive a reload, switch and delete");
    await page.close();
  }

  // --- a failed answer is shown with "retry" and does not poison the conversation ------------------
  {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on("pageerror", (e) => { throw new Error(`page error: ${e.message}`); });
    const requests = recordChatRequests(page);
    await openChat(page);
    await page.getByLabel("Seed").fill("7");

    // A message longer than the model's context: the gateway rejects it.
    await setMaxTokens(page, 16);
    const tooLong = Array.from({ length: 900 }, (_, i) => `word${i}`).join(" ");
    await send(page, tooLong);
    const rejected = await lastAnswerEnd(page);
    assert.equal(rejected.failed, true, "an over-long message did not fail");
    assert.match(rejected.text, /context/);
    assert.equal(await page.getByRole("button", { name: "Retry" }).count(), 1);
    await send(page, "a short question");
    assert.equal((await lastAnswerEnd(page)).failed, false, "the answer after a failed one failed too");
    const after = requests.at(-1).body.messages;
    assert.deepEqual(after, [{ role: "user", content: "a short question" }], "the failed exchange was sent as history");
    ok("an over-long message fails with the gateway's error; the next message is answered without it");

    // The gateway dies mid-answer: the cut-off answer is a failure, and retry works once it is back.
    await setMaxTokens(page, 400);
    await send(page, "tell me everything");
    await page.waitForFunction(() => {
      const answers = document.querySelectorAll(".message.assistant");
      return answers[answers.length - 1]?.querySelector(".markdown")?.textContent?.length > 0;
    });
    killGateway();
    const cut = await lastAnswerEnd(page);
    assert.equal(cut.failed, true, "an answer cut off by the gateway's death is not a failure");
    assert.match(cut.text, /cut off|cannot reach/);
    await restartGateway();
    await setMaxTokens(page, 16);
    await send(page, "are you back?");
    assert.equal((await lastAnswerEnd(page)).failed, false, "the answer after a cut-off one failed");
    assert.deepEqual(requests.at(-1).body.messages.map((m) => m.content),
      ["a short question", (await activeConversation(page)).turns[3].content, "are you back?"],
      "the history is not the answered exchanges only");
    const retries = page.getByRole("button", { name: "Retry" });
    assert.equal(await retries.count(), 2);
    await retries.last().click();
    await page.getByRole("button", { name: "Send" }).waitFor();
    const conversation = await activeConversation(page);
    const retried = conversation.turns[5]; // the answer to "tell me everything"
    assert.equal(retried.state, "done", `the retry failed: ${retried.note}`);
    assert.equal(await retries.count(), 1, "only the over-long message's failure is left");
    assert.deepEqual(requests.at(-1).body.messages.map((m) => m.content),
      ["a short question", conversation.turns[3].content, "tell me everything"], "the retry's history");
    ok("a cut-off answer fails with retry; the next message and the retry are answered");
    await page.close();
  }

  // --- history trimmed to the context; max tokens bounded by it ------------------------------------
  {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on("pageerror", (e) => { throw new Error(`page error: ${e.message}`); });
    const requests = recordChatRequests(page);
    await page.goto(`${url}/#/chat`);
    // 12 stored exchanges of some 50 tokens each: together more than the 512-token context.
    const turns = [];
    for (let i = 0; i < 12; i++) {
      const filler = Array.from({ length: 4 }, (_, j) => `q${i}w${j}`).join(" ");
      turns.push({ id: `u${i}`, role: "user", content: `question ${i}: ${filler}` });
      turns.push({ id: `a${i}`, role: "assistant", state: "done", content: `answer ${i}: ${filler}` });
    }
    await page.evaluate(([key, value]) => localStorage.setItem(key, value), [conversationsKey,
      JSON.stringify({ activeId: "long", conversations: [{ id: "long", title: "long", sentFrom: 0, updatedAt: 1, turns }] })]);
    await page.reload();
    await page.waitForFunction(() => document.querySelector("[data-testid=model]")?.value);
    await page.getByLabel("System prompt").fill("You are terse.");
    await setMaxTokens(page, 100000);
    await send(page, "and the last question");
    const end = await lastAnswerEnd(page);
    assert.equal(end.failed, false, `a long conversation failed: ${end.text}`);
    const lowered = /max tokens lowered to (\d+)/.exec(end.text);
    // Halved down to 256 (see web/src/contextFit.ts) before history makes room for it.
    assert.ok(lowered && Number(lowered[1]) === 256, `max tokens not bounded by the context: ${end.text}`);
    const sent = requests.at(-1).body;
    assert.equal(sent.max_tokens, Number(lowered[1]));
    // The first try already asked for no more than /v1/models' context_length (512) allows.
    assert.equal(requests[0].body.max_tokens, 511, `the first try asked for ${requests[0].body.max_tokens} tokens`);
    assert.deepEqual(sent.messages[0], { role: "system", content: "You are terse." }, "the system prompt was dropped");
    assert.deepEqual(sent.messages.at(-1), { role: "user", content: "and the last question" });
    const kept = (sent.messages.length - 2) / 2;
    assert.ok(kept >= 2 && kept < 12, `${kept} of 12 exchanges kept`);
    // The newest exchanges, in order.
    assert.deepEqual(sent.messages.slice(1, -1).map((m) => m.content), turns.slice(24 - 2 * kept).map((t) => t.content));
    assert.equal(await page.locator(".context-cut").count(), 1, "the cut is not shown");
    const sentFrom = (await activeConversation(page)).sentFrom;
    assert.equal(sentFrom, 24 - 2 * kept, "the cut is not remembered");
    ok(`a 12-exchange history is trimmed to the newest ${kept} with the system prompt kept; max tokens ${lowered[1]}`);
    await page.close();
  }

  // --- Markdown in answers, safely --------------------------------------------------------------
  {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: url });
    const page = await context.newPage();
    page.on("pageerror", (e) => { throw new Error(`page error: ${e.message}`); });
    page.on("dialog", (d) => { throw new Error(`a dialog opened: ${d.message()}`); });
    const answer = [
      "## Steps",
      "Use **bold**, *emphasis* and `inline code`; see [the docs](https://example.com/docs).",
      "",
      "```python",
      "def double(x):",
      "    return x * 2  # twice",
      "```",
      "",
      "| a | b |",
      "|---|---|",
      "| 1 | 2 |",
      "",
      "<img src=x onerror=\"window.__xss = 1\"> <script>window.__xss = 2</script>",
      "[click](javascript:window.__xss=3) ![tracker](https://example.com/t.png)",
    ].join("\n");
    await page.goto(`${url}/#/chat`);
    await page.evaluate(([key, value]) => localStorage.setItem(key, value), [conversationsKey, JSON.stringify({
      activeId: "md", conversations: [{ id: "md", title: "Markdown", sentFrom: 0, updatedAt: 1, turns: [
        { id: "u", role: "user", content: "Show me **Markdown**" },
        { id: "a", role: "assistant", state: "done", content: answer },
      ] }],
    })]);
    await page.reload();
    const rendered = page.getByTestId("answer");
    await rendered.waitFor();
    assert.equal(await rendered.locator("h2").innerText(), "Steps");
    assert.equal(await rendered.locator("strong").innerText(), "bold");
    assert.equal(await rendered.locator("em").innerText(), "emphasis");
    assert.equal(await rendered.locator(":not(pre) > code").innerText(), "inline code");
    const link = rendered.locator("a[href='https://example.com/docs']");
    assert.equal(await link.getAttribute("target"), "_blank");
    assert.match(await link.getAttribute("rel"), /noopener/);
    assert.equal(await rendered.locator("pre code").textContent(), "def double(x):\n    return x * 2  # twice\n");
    await rendered.locator("pre code .hljs-keyword").first().waitFor(); // highlight.js loads on the first code block
    assert.equal(await rendered.locator(".table-scroll table td").count(), 2);
    // Untrusted HTML is text, not markup; no script ran, no javascript: link, no remote image.
    assert.equal(await page.locator(".messages img, .messages script").count(), 0);
    assert.ok((await rendered.innerText()).includes("<img src=x onerror="), "raw HTML is not shown as text");
    assert.equal(await rendered.locator("a[href^='javascript']").count(), 0);
    await page.waitForTimeout(200);
    assert.equal(await page.evaluate(() => window.__xss), undefined, "model output ran a script");
    // The user's message is plain text.
    assert.equal(await page.locator(".message.user .text").innerText(), "Show me **Markdown**");
    // The copy button copies the code as it is.
    await rendered.getByRole("button", { name: "Copy" }).click();
    await rendered.getByRole("button", { name: "Copied" }).waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), "def double(x):\n    return x * 2  # twice\n");
    // The answer's own copy button copies its Markdown source.
    await page.locator(".message.assistant .note").getByRole("button", { name: "Copy" }).click();
    await page.waitForFunction((text) => navigator.clipboard.readText().then((t) => t === text), answer);
    await page.screenshot({ path: path.join(shots, "chat-markdown.png") });
    ok("Markdown answers: headings, emphasis, links, highlighted code with copy, tables; raw HTML stays text");
    await context.close();
  }

  // --- the API key, when set, is sent as a bearer token -------------------------------------------
  {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on("pageerror", (e) => { throw new Error(`page error: ${e.message}`); });
    const requests = recordChatRequests(page);
    const modelRequests = [];
    page.on("request", (r) => { if (r.url().endsWith("/v1/models")) modelRequests.push(r.headers()); });
    await openChat(page);
    await setMaxTokens(page, 4);
    await send(page, "no key");
    await lastAnswerEnd(page);
    assert.equal(requests.at(-1).headers.authorization, undefined, "an Authorization header without a key");
    await page.getByLabel("API key").fill("sk-test-123");
    await send(page, "with a key");
    await lastAnswerEnd(page);
    assert.equal(requests.at(-1).headers.authorization, "Bearer sk-test-123");
    await page.waitForTimeout(600); // the model list is fetched again with the new key
    assert.equal(modelRequests.at(-1).authorization, "Bearer sk-test-123");
    await page.reload();
    assert.equal(await page.getByLabel("API key").inputValue(), "sk-test-123", "the key was not kept");
    ok("the API key is sent as a bearer token and kept across reloads");
    await page.close();
  }

  // --- a phone: nothing wider than the screen, settings and conversations reachable --------------
  {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, colorScheme: "light", isMobile: true, hasTouch: true });
    phone.on("pageerror", (e) => { throw new Error(`page error: ${e.message}`); });
    await phone.goto(`${url}/#/chat`);
    await phone.getByLabel("Message").waitFor();
    const width = () => phone.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(await width() <= 390, `the chat page is ${await width()} px wide`);
    assert.equal(await phone.getByLabel("Max tokens").count(), 0, "the settings are open on a phone");
    await phone.getByRole("button", { name: "Settings" }).click();
    const maxTokens = phone.getByLabel("Max tokens");
    await maxTokens.scrollIntoViewIfNeeded();
    const box = await maxTokens.boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `the settings are clipped: ${JSON.stringify(box)}`);
    await maxTokens.fill("12");
    await phone.getByLabel("API key").scrollIntoViewIfNeeded();
    assert.ok(await width() <= 390, "the open settings widen the page");
    await phone.getByRole("button", { name: "Done" }).click();
    await send(phone, "Hello from a phone, with a long unbroken word: " + "x".repeat(200));
    assert.equal((await lastAnswerEnd(phone)).failed, false);
    assert.ok(await width() <= 390, "the conversation widens the page");
    await phone.screenshot({ path: path.join(shots, "chat-phone.png") });
    await phone.getByRole("button", { name: "Chats" }).click();
    await phone.getByRole("button", { name: "+ New chat" }).waitFor();
    assert.ok(await width() <= 390);
    await phone.getByRole("button", { name: "+ New chat" }).click();
    ok("phone: the chat fits 390 px; settings and conversations open and fit");

    await phone.goto(`${url}/#/swarm`);
    await phone.getByTestId("nodes").locator("tbody tr").first().waitFor();
    assert.ok(await width() <= 390, `the swarm page is ${await width()} px wide`);
    const cell = await phone.getByTestId("nodes").locator("td").last().boundingBox();
    assert.ok(cell && cell.x + cell.width <= 390, "the nodes table is clipped");
    await phone.screenshot({ path: path.join(shots, "swarm-phone.png"), fullPage: true });
    ok("phone: the swarm dashboard fits 390 px, the nodes as cards");
  }
} finally {
  await browser.close();
  if (restarted) {
    restarted.kill("SIGTERM");
    await new Promise((resolve) => (restarted.exitCode !== null ? resolve() : restarted.on("exit", resolve)));
    writeFileSync(process.env.RESTARTED_PID_FILE, ""); // stopped: nothing for the script to stop
  }
}
console.log("all checks passed");
