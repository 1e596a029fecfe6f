// The swarm dashboard of `omni gateway --bootstrap` in chromium (see gateway_swarm_test.sh): the
// 3 live nodes of the covered model, its 4 blocks covered, and the other model's gap in red.
// Args: GATEWAY_URL WEB_DIR CHROMIUM SCREENSHOT
import { createRequire } from "node:module";
import assert from "node:assert/strict";
import path from "node:path";

const [url, webDir, chromium, screenshot] = process.argv.slice(2);
const require = createRequire(path.join(webDir, "package.json"));
const { chromium: browserType } = require("playwright-core");
const browser = await browserType.launch({ executablePath: chromium, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  await page.goto(`${url}/#/swarm`);
  const rows = page.getByTestId("nodes").locator("tbody tr");
  await rows.nth(3).waitFor({ timeout: 15000 });
  const texts = await rows.allInnerTexts();
  const llama = texts.filter((t) => /synth-llama/.test(t));
  assert.equal(llama.length, 3, texts.join("\n"));
  assert.equal(await page.locator("tbody tr.down").count(), 0, "every node is alive");
  assert.ok(llama.every((t) => /direct/.test(t)), llama.join("\n"));
  const covered = page.locator(".coverage", { hasText: "synth-llama" });
  assert.equal(await covered.locator(".cells .cell").count(), 4, "one cell per block");
  assert.equal(await covered.locator(".cells .cell.none").count(), 0, "no gap in synth-llama");
  assert.equal(await covered.getByTestId("coverage-gap").count(), 0);
  const gappy = page.locator(".coverage", { hasText: "synth-qwen2" });
  assert.equal(await gappy.locator(".cells .cell.none").count(), 1, "one gap in synth-qwen2");
  const red = await gappy.locator(".cells .cell.none").evaluate((e) => getComputedStyle(e).backgroundColor);
  assert.equal(red, "rgb(229, 72, 77)", "the gap is red");
  assert.match(await gappy.getByTestId("coverage-gap").innerText(), /block 2\b/);
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log("ok   dashboard: 3 live nodes of synth-llama, 4 blocks covered; synth-qwen2's block 2 in red");
} finally {
  await browser.close();
}
