// The chat page and the swarm dashboard in chromium (see gateway_browser_test.sh).
// Args: GATEWAY_URL WEB_DIR CHROMIUM PROMPT EXPECTED_FILE SCREENSHOT_DIR
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import path from "node:path";

const [url, webDir, chromium, prompt, expectedFile, shots] = process.argv.slice(2);
const require = createRequire(path.join(webDir, "package.json"));
const { chromium: browserType } = require("playwright-core");
const expected = readFileSync(expectedFile, "utf8").replace(/\n$/, "");
assert.ok(expected.length > 0, "omni run gave no text");

const browser = await browserType.launch({
  executablePath: chromium,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  for (const scheme of ["light", "dark"]) {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, colorScheme: scheme, deviceScaleFactor: 1 });
    page.on("pageerror", (e) => { throw new Error(`page error: ${e.message}`); });
    await page.goto(`${url}/#/chat`);
    await page.getByTestId("model").waitFor();
    await page.waitForFunction(() => document.querySelector("[data-testid=model]")?.value);

    // Settings: a fixed seed and length, so the answer is the one `omni run` computed.
    await page.getByLabel("Max tokens").fill("40");
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
    const answer = page.getByTestId("answer").last();
    await page.getByText(/^(length|stop) · \d+ tokens/).waitFor({ timeout: 30000 });
    const text = await answer.innerText();
    assert.equal(text, expected, "the streamed answer differs from omni run's");
    assert.ok(await page.evaluate(() => window.__updates) > 0);
    console.log(`ok   ${scheme}: chat answer streamed (${text.length} chars) and equals omni run's`);

    // The stop button: a long answer, stopped at once.
    await page.getByLabel("Max tokens").fill("1500");
    await page.getByLabel("Message").fill("And now a very long story, please.");
    await page.getByRole("button", { name: "Send" }).click();
    const stop = page.getByRole("button", { name: "Stop" });
    if (await stop.isVisible()) await stop.click().catch(() => {}); // it may already have finished
    await page.getByRole("button", { name: "Send" }).waitFor();
    console.log(`ok   ${scheme}: stop button returns the composer`);
    await page.getByLabel("Max tokens").fill("40");
    await page.screenshot({ path: path.join(shots, `chat-${scheme}.png`) });

    await page.goto(`${url}/#/swarm`);
    await page.getByTestId("nodes").locator("tbody tr").first().waitFor();
    const row = await page.getByTestId("nodes").locator("tbody tr").first().innerText();
    assert.match(row, /synth-llama-q8_0/);
    assert.equal(await page.locator(".cells .cell").count(), 4, "one coverage cell per block");
    await page.waitForTimeout(500);
    await page.screenshot({ path: path.join(shots, `swarm-${scheme}.png`) });
    console.log(`ok   ${scheme}: swarm dashboard shows the node and 4 covered blocks`);
    await page.close();
  }
  // A narrow screen: the layout stacks.
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, colorScheme: "light" });
  await phone.goto(`${url}/#/swarm`);
  await phone.getByTestId("nodes").locator("tbody tr").first().waitFor();
  await phone.screenshot({ path: path.join(shots, "swarm-mobile.png"), fullPage: true });
  console.log("ok   narrow screen renders");
} finally {
  await browser.close();
}
console.log("all checks passed");
