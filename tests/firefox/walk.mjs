/**
 * One walk through the web chat page in Firefox, for tests/test_web_firefox.py.
 *
 *   node tests/firefox/walk.mjs URL KEY [FIREFOX]
 *
 * Playwright drives only its own patched Firefox, which cannot be downloaded here, so this
 * uses puppeteer-core over WebDriver BiDi with Debian's Firefox ESR. The walk does what a user
 * does (a wrong key, the right key, a plain, an aligned and a search question, an edited
 * reasoning, a phone-width window) and prints what it saw as one JSON object; the pytest side
 * makes the assertions. Page errors and console errors are collected too.
 */

import puppeteer from "puppeteer-core";

const [url, key, firefox = "/usr/bin/firefox-esr"] = process.argv.slice(2);
const by = (id) => `[data-testid="${id}"]`;
const seen = { errors: [] };

const browser = await puppeteer.launch({ browser: "firefox", executablePath: firefox });
try {
  const page = await browser.newPage();
  await resize(page, 1100, 800);
  page.on("pageerror", (error) => seen.errors.push(String(error)));
  page.on("console", (m) => m.type() === "error" && seen.errors.push(m.text()));
  seen.version = await browser.version();

  await page.goto(`${url}/`);
  await enterKey(page, "sk-wrong-key-000");
  await page.waitForSelector(`${by("key-error")}:not([hidden])`);
  seen.refusal = await text(page, by("key-error"));

  await enterKey(page, key);
  await page.waitForSelector(`${by("chat")}:not([hidden])`);
  seen.profiles = await page.$$eval('input[name="profile"]', (inputs) =>
    inputs.map((i) => ({ value: i.value, disabled: i.disabled })),
  );

  const plain = await ask(page, "What is the atomic number of tungsten?", "plain");
  seen.partials = plain.partials;
  seen.answer = await text(plain.message, by("answer"));
  await plain.message.$eval(`${by("reasoning")} summary`, (s) => s.click());
  seen.reasoningOpen = await plain.message.$eval(by("reasoning"), (d) => d.open);
  seen.reasoning = await text(plain.message, by("reasoning-text"));

  const aligned = await ask(page, "How do I stay safe?", "aligned");
  seen.scores = await aligned.message.$$eval(by("score"), (rows) =>
    rows.map((row) => ({
      model: row.dataset.model,
      share:
        row.querySelector('[data-testid="score-bar"]').getBoundingClientRect().width /
        row.querySelector(".bar").getBoundingClientRect().width,
    })),
  );

  const search = await ask(page, "What is the atomic number of tungsten?", "search");
  seen.sources = await search.message.$$eval(`${by("sources")} a`, (links) =>
    links.map((a) => ({ text: a.textContent, href: a.href, target: a.target, rel: a.rel })),
  );
  seen.confidence = await text(search.message, by("confidence"));

  await plain.message.$eval(by("edit-reasoning"), (b) => b.click());
  const editor = await plain.message.waitForSelector(by("edit-text"));
  await editor.evaluate((box) => (box.value = ""));
  await editor.type("Tungsten is W; 79 is gold.");
  await plain.message.$eval(by("edit-submit"), (b) => b.click());
  const id = await plain.message.waitForSelector(by("memory-id"), { timeout: 20_000 });
  seen.memoryId = await id.evaluate((e) => e.textContent);
  seen.corrected = await text(plain.message, by("answer"));

  await resize(page, 375, 740);
  seen.phoneWidth = await page.evaluate(() => document.documentElement.scrollWidth);
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));

/** Set the viewport with WebDriver BiDi's `browsingContext.setViewport`. (Puppeteer's own
 * `setViewport` also overrides the screen orientation, a command Firefox ESR 140 lacks.) */
async function resize(page, width, height) {
  await page.mainFrame().browsingContext.setViewport({ viewport: { width, height } });
  const actual = await page.evaluate(() => window.innerWidth);
  if (actual !== width) throw new Error(`viewport is ${actual} px wide, not ${width}`);
}

async function enterKey(page, value) {
  const input = await page.waitForSelector(`${by("key-input")}:not([hidden])`, { visible: true });
  await input.evaluate((box) => (box.value = ""));
  await input.type(value);
  await page.$eval(by("key-submit"), (b) => b.click());
}

/** Ask on a profile; sample the answer while it streams; the finished message. */
async function ask(page, question, profile) {
  await page.$eval(by(`profile-${profile}`), (radio) => radio.click());
  const count = (await page.$$(by("message-assistant"))).length;
  await page.type(by("prompt"), question);
  await page.keyboard.press("Enter");
  let messages = [];
  while ((messages = await page.$$(by("message-assistant"))).length <= count) await pause();
  const message = messages[count];
  const partials = new Set();
  while ((await message.evaluate((m) => m.getAttribute("aria-busy"))) !== "false") {
    partials.add(await message.$eval(by("answer"), (a) => a.textContent));
    await pause();
  }
  return { message, partials: [...partials].filter(Boolean) };
}

/** A short wait between polls (puppeteer's waitForFunction evaluates code with `Function()`,
 * which the page's Content-Security-Policy rightly blocks). */
function pause() {
  return new Promise((resolve) => setTimeout(resolve, 20));
}

async function text(root, selector) {
  return root.$eval(selector, (e) => e.textContent);
}
