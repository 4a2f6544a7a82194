// Every page of ssed in a real browser: Debian's headless Chromium, driven
// by playwright-core. Each test checks what a person would see, fails on any
// console error, and saves a screenshot.
//
// Run alone: make browser-test (SSED_BIN picks the binary; SCREENSHOTS the folder).

import { test, before, after, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const BIN = process.env.SSED_BIN || path.join(root, "target/debug/ssed");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = path.resolve(process.env.SCREENSHOTS || path.join(root, "screenshots"));
// How long a condition may take before a test fails.
const WAIT = 15_000;

let browser;
let server;
let base;

/** Starts ssed with fast demos; resolves with its address once it is listening. */
function startSsed(addr = "127.0.0.1:0") {
  const child = spawn(BIN, [
    "--addr", addr,
    "--stats-interval-ms", "200",
    "--stocks-interval-ms", "40",
    "--keepalive", "1",
    // Numbered lines, a warning on stderr every tenth, green every 25th.
    "--source", "demo-log=i=0; while :; do i=$((i+1)); " +
      "if [ $((i % 25)) -eq 0 ]; then printf '\\033[32mline %d\\033[0m\\n' $i; else echo \"line $i\"; fi; " +
      "if [ $((i % 10)) -eq 0 ]; then echo \"warn $i\" >&2; fi; sleep 0.02; done",
  ], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", (code) => reject(new Error(`ssed exited with ${code} before listening`)));
    createInterface({ input: child.stdout }).once("line", (line) => {
      const m = line.match(/^ssed listening on (http:\/\/[^/]+)\//);
      if (!m) return reject(new Error(`unexpected start-up line: ${line}`));
      resolve({ child, url: m[1] });
    });
  });
}

function stopSsed(s) {
  return new Promise((resolve) => {
    if (s.child.exitCode !== null) return resolve();
    s.child.once("exit", () => resolve());
    s.child.kill("SIGKILL");
  });
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Playwright gives each launch a fresh profile directory.
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  server = await startSsed();
  base = server.url;
});

after(async () => {
  await browser?.close();
  if (server) await stopSsed(server);
});

// Console errors and uncaught exceptions of the current test's pages.
let problems;
let allowed;
let context;

beforeEach(async () => {
  problems = [];
  allowed = [];
  context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
});

afterEach(async () => {
  await context.close();
});

async function open(pagePath) {
  const page = await context.newPage();
  page.on("console", (msg) => {
    if (msg.type() === "error" && !allowed.some((re) => re.test(msg.text()))) problems.push(`console: ${msg.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`exception: ${err.message}`));
  await page.goto(base + pagePath);
  return page;
}

async function finish(page, name) {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
  assert.deepEqual(problems, [], "the page logged errors");
}

const text = (page, sel) => page.locator(sel).innerText();

/** Waits until fn() (run in the test) returns true. */
async function until(what, fn) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("index: every link resolves", async () => {
  const page = await open("/");
  const hrefs = await page.locator("a[href]").evaluateAll((as) => as.map((a) => a.href));
  assert.ok(hrefs.length >= 7, `only ${hrefs.length} links`);
  for (const href of hrefs) {
    const res = await page.request.get(href);
    assert.equal(res.status(), 200, href);
  }
  await finish(page, "index");
});

test("clock: the time changes", async () => {
  const page = await open("/clock.html?interval_ms=200");
  await page.locator("#state.open").waitFor({ timeout: WAIT });
  const seen = new Set();
  await until("three different times", async () => {
    const t = await text(page, "#time");
    if (/^\d\d:\d\d:\d\d UTC$/.test(t)) seen.add(t);
    return seen.size >= 3;
  });
  await finish(page, "clock");
});

test("monitor: CPU and memory appear, update, and the chart draws", async () => {
  const page = await open("/monitor.html");
  await until("numbers", async () => /^\d+\.\d$/.test(await text(page, "#cpu")) && /^\d+\.\d$/.test(await text(page, "#mem")));
  assert.ok(Number(await text(page, "#mem-total")) > 0);
  await until("five samples charted", async () => Number(await page.locator("#chart").getAttribute("data-points")) >= 5);
  const inked = await page.locator("#chart").evaluate((c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true;
    return false;
  });
  assert.ok(inked, "the chart canvas is blank");
  await finish(page, "monitor");
});

test("training: one run fills the bar, shows the loss and completes", async () => {
  const page = await open("/training.html?epochs=2&steps=5&step_ms=10");
  let runs = 0;
  page.on("request", (r) => { if (r.url().includes("/stream-training")) runs += 1; });
  await page.click("#start");
  await until("completion", async () => (await text(page, "#result")) === "Training complete!");
  assert.equal(await page.locator("#bar").evaluate((b) => b.style.width), "100%");
  assert.equal(await text(page, "#loss"), "0.1000");
  assert.equal(await text(page, "#epoch"), "2");
  assert.equal(await page.locator("#start").isEnabled(), true);
  // An EventSource left open would reconnect after the stream's retry
  // (2 s) and start a second run: wait past that and count.
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal(runs, 1, "the page started a second run");
  await finish(page, "training");
});

test("ticker: three symbols with changing prices", async () => {
  const page = await open("/ticker.html");
  const symbols = ["AAPL", "GOOGL", "MSFT"];
  const first = {};
  await until("a price for every symbol", async () => {
    for (const s of symbols) {
      const p = await text(page, `#card-${s} .price`);
      if (!p.startsWith("$")) return false;
      first[s] ??= p;
    }
    return true;
  });
  await until("every price to change", async () => {
    for (const s of symbols) if ((await text(page, `#card-${s} .price`)) === first[s]) return false;
    return true;
  });
  const classes = await page.locator(".change").evaluateAll((els) => els.map((e) => e.className));
  assert.ok(classes.every((c) => /\b(up|down|muted)\b/.test(c)), classes.join());
  await finish(page, "ticker");
});

test("messages: both buttons answer at once and broadcast to every page", async () => {
  const a = await open("/messages.html");
  const b = await open("/messages.html");
  for (const p of [a, b]) await p.locator("#state.open").waitFor({ timeout: WAIT });
  await a.fill("#text", "hello from A");
  await a.click("#send-sse");
  await until("the SSE reply", async () => (await text(a, "#reply")) === '200 {"status":"Received","message":"hello from A"}');
  await a.fill("#text", "rest from A");
  await a.click("#send-rest");
  await until("the REST reply", async () => (await text(a, "#reply")) === '200 {"status":"Received via REST","message":"rest from A"}');
  for (const p of [a, b]) {
    await until("both messages in the list", async () => {
      const items = await p.locator("#log li").allInnerTexts();
      return items.includes("Received: hello from A") && items.includes("Received via REST: rest from A");
    });
  }
  await finish(b, "messages-second-page");
  await finish(a, "messages");
});

test("event_stream page: regular and custom events", async () => {
  const page = await open("/events.html?interval_ms=50");
  await until("two custom events", async () => Number(await text(page, "#n-custom")) >= 2);
  const items = await page.locator("#messages li").allInnerTexts();
  assert.ok(items.some((t) => /^Message from server: Server time: .+ \(message \d+\)$/.test(t)), items.join("\n"));
  assert.ok(items.includes("Custom event from server: This is a custom event 1"), items.join("\n"));
  assert.ok(items.includes("Connection established."));
  await finish(page, "events");
});

test("hub: subscribe, publish, see the event with its id", async () => {
  const page = await open("/hub.html");
  await page.fill("#topics", "news, alerts");
  await page.click("#subscribe");
  await page.locator("#state.open").waitFor({ timeout: WAIT });
  await page.fill("#pub-topic", "alerts");
  await page.fill("#pub-event", "warning");
  await page.fill("#pub-data", "disk almost full");
  await page.click("#publish");
  await until("the publish reply", async () => (await text(page, "#reply")).startsWith("200 "));
  const reply = JSON.parse((await text(page, "#reply")).slice(4));
  assert.equal(reply.topic, "alerts");
  await until("the event in the list", async () =>
    (await page.locator("#log li").allInnerTexts()).includes(`[warning] id=${reply.id} disk almost full`));
  await page.fill("#pub-topic", "news");
  await page.fill("#pub-event", "");
  await page.fill("#pub-data", "plain news");
  await page.click("#publish");
  await until("the unnamed event", async () =>
    (await page.locator("#log li").allInnerTexts()).some((t) => /^\[message\] id=\S+-\d+ plain news$/.test(t)));
  await finish(page, "hub");
});

test("reconnect: a page shows the outage and receives again after a restart", async () => {
  // While the server is down the browser's reconnection attempts fail,
  // which Chromium logs; those are expected here.
  allowed.push(/ERR_CONNECTION_REFUSED|ERR_INCOMPLETE_CHUNKED_ENCODING|ERR_EMPTY_RESPONSE|ERR_CONNECTION_RESET/);
  const page = await open("/clock.html?interval_ms=100");
  await page.locator("#state.open").waitFor({ timeout: WAIT });
  const addr = new URL(base).host;
  await stopSsed(server);
  await page.locator("#state.connecting").waitFor({ timeout: WAIT });
  assert.equal(await text(page, "#state"), "reconnecting…");
  const before = Number(await text(page, "#count"));
  server = await startSsed(addr);
  await page.locator("#state.open").waitFor({ timeout: WAIT });
  await until("new events", async () => Number(await text(page, "#count")) > before);
  await finish(page, "reconnect");
});

test("logs: a program's lines in order, follow and pause, filter, stderr marked", async () => {
  // The page opens the first topic a source feeds.
  const page = await open("/logs.html");
  await page.locator("#state.open").waitFor({ timeout: WAIT });
  assert.equal(await page.locator("#topic").inputValue(), "demo-log");
  const count = async () => Number((await text(page, "#count")).replace(/,/g, ""));
  await until("60 lines", async () => (await count()) >= 60);

  // stdout lines in order, no number skipped; ANSI colour shown as colour.
  const numbers = (await page.locator("#term .ln:not(.stderr):not(.mark)").allInnerTexts())
    .map((t) => Number(t.match(/^line (\d+)$/)[1]));
  numbers.forEach((n, i) => i > 0 && assert.equal(n, numbers[i - 1] + 1));
  const all = await text(page, "#term");
  assert.ok(!all.includes("\x1b") && !all.includes("[32m"), "raw escape codes on screen");
  assert.match(await page.locator("#term .ln .c32").first().innerText(), /^line \d*25$/);
  // stderr lines are marked.
  const warnings = await page.locator("#term .ln.stderr").allInnerTexts();
  assert.ok(warnings.length > 0 && warnings.every((t) => /^warn \d+0$/.test(t)), warnings.join("|"));

  // Following: the end stays in view as lines come.
  const atEnd = () => page.$eval("#term", (t) => t.scrollTop + t.clientHeight >= t.scrollHeight - 8);
  const seen = await count();
  await until("more lines", async () => (await count()) > seen + 5);
  assert.ok(await atEnd(), "not following the end");

  // Scrolling up pauses following: lines still come, the view stays.
  await page.$eval("#term", (t) => { t.scrollTop = 0; });
  await page.locator("#jump").waitFor({ state: "visible", timeout: WAIT });
  const paused = await count();
  await until("lines while paused", async () => (await count()) > paused + 10);
  assert.equal(await page.$eval("#term", (t) => t.scrollTop), 0);

  // The button resumes following.
  await page.click("#jump");
  await page.locator("#jump").waitFor({ state: "hidden", timeout: WAIT });
  const resumed = await count();
  await until("lines after resuming", async () => (await count()) > resumed + 5);
  assert.ok(await atEnd(), "not following after the jump");

  // The filter hides every line that does not match.
  await page.fill("#filter", "warn");
  const shown = await page.locator("#term .ln:visible").allInnerTexts();
  assert.ok(shown.length > 0 && shown.every((t) => t.startsWith("warn ")), shown.join("|"));
  assert.match(await text(page, "#matching"), /^\d+ match$/);
  await page.fill("#filter", "");
  assert.ok((await page.locator("#term .ln:visible").count()) > shown.length);
  assert.equal(await text(page, "#matching"), "");
  await finish(page, "logs");
});

test("logs: 100,000 lines at once keep the page bounded and counted", async () => {
  const page = await open("/logs.html?topic=demo-log");
  await page.locator("#state.open").waitFor({ timeout: WAIT });
  const before = await page.evaluate(() => total);
  await page.evaluate(() => { for (let i = 0; i < 100000; i++) add(`burst ${i}`, ""); });
  await until("the burst counted", async () =>
    Number((await text(page, "#count")).replace(/,/g, "")) >= before + 100000);
  // At most MAX_LINES stay, the newest.
  assert.ok((await page.locator("#term .ln").count()) <= 5000);
  await until("the burst's last line shown", async () =>
    (await page.locator("#term .ln", { hasText: "burst 99999" }).count()) === 1);
});

test("EventSource sees exactly the events sent: nothing for retry: or keep-alive lines", async () => {
  const topic = "compat-chromium";
  const publish = async (data, name) => {
    const res = await fetch(`${base}/events/${topic}${name ? "?event=" + name : ""}`, {
      method: "POST", body: data, headers: { "Content-Type": "text/plain" },
    });
    return (await res.json()).id;
  };
  const sent = [["hello"], ["two\nlines"], ["disk full", "alert"]];
  const ids = [];
  for (const [data, name] of sent) ids.push(await publish(data, name));
  const page = await open("/");
  await page.evaluate((url) => {
    window.seen = [];
    const source = new EventSource(url);
    const keep = (e) => window.seen.push({ event: e.type, data: e.data, id: e.lastEventId });
    source.onmessage = keep;
    source.addEventListener("alert", keep);
  }, `/events/${topic}?last=3`);
  const seen = () => page.evaluate(() => window.seen.length);
  await until("the replayed events", async () => (await seen()) >= 3);
  // A stream opened after the page's has two keep-alives: the page's, idle
  // as long, has had at least one.
  const watcher = await fetch(`${base}/events/${topic}`);
  const reader = watcher.body.getReader();
  let raw = "";
  while ((raw.match(/: keep-alive\n/g) || []).length < 2) {
    const { value, done } = await reader.read();
    if (done) assert.fail("the watcher's stream ended");
    raw += new TextDecoder().decode(value);
  }
  await reader.cancel();
  const more = [['{"temp": 21.5}'], ["  spaces kept", "alert"]];
  for (const [data, name] of more) ids.push(await publish(data, name));
  sent.push(...more);
  await until("the live events", async () => (await seen()) >= 5);
  assert.deepEqual(
    await page.evaluate(() => window.seen),
    sent.map(([data, name], i) => ({ event: name || "message", data, id: ids[i] })),
  );
  assert.deepEqual(problems, [], "the page logged errors");
});
