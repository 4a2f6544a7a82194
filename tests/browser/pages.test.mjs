// Every page of ssed in a real browser: Debian's headless Chromium, driven
// by playwright-core. Each test checks what a person would see, fails on any
// console error, and saves a screenshot.
//
// Run alone: make browser-test (SSED_BIN picks the binary; SCREENSHOTS the folder).

import { test, before, after, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import http from "node:http";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
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

/** Starts ssed with fast demos (and `extra` flags); resolves with its address once it is listening. */
function startSsed(addr = "127.0.0.1:0", extra = []) {
  const child = spawn(BIN, [
    ...extra,
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
    if (/^\d\d:\d\d:\d\d$/.test(t)) seen.add(t);
    return seen.size >= 3;
  });
  // "1 event", "2 events": the count reads as English.
  assert.match(await text(page, "#count"), /^(1 event|\d+ events)$/);
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

/** Waits until `url`'s stream (its first chunk) holds at least `n` events. */
async function streamHolds(url, n) {
  await until(`${n} events kept at ${url}`, async () => {
    const res = await fetch(url);
    const reader = res.body.getReader();
    const { value } = await reader.read();
    await reader.cancel();
    // Samples, not the "kept" notice before them.
    return (new TextDecoder().decode(value).match(/^data: \{"cpu_percent/gm) || []).length >= n;
  });
}

test("monitor: opens with the samples the server kept", async () => {
  const own = await startSsed("127.0.0.1:0", ["--stats-interval-ms", "1000"]);
  try {
    await streamHolds(`${own.url}/system-stats?last=60`, 3);
    const page = await context.newPage();
    await page.goto(own.url + "/monitor.html");
    await until("the history note", async () => /^Opened with \d+ samples the server kept, one every \d+ (s|ms)\.$/.test(await text(page, "#history-note")));
    const kept = Number((await text(page, "#history-note")).match(/\d+/)[0]);
    assert.ok(kept >= 3, `only ${kept} samples at once`);
    assert.ok(Number(await page.locator("#chart").getAttribute("data-points")) >= kept);
    await finish(page, "monitor-history");
  } finally {
    await stopSsed(own);
  }
});

test("training: one run fills the bar, shows the loss and completes", async () => {
  // The page's own mux (?mux=page), so that its requests are seen here (a
  // shared worker's are not).
  const page = await open("/training.html?mux=page&epochs=2&steps=5&step_ms=10");
  // Before a run the badge is neutral, not the red of an error.
  assert.equal(await text(page, "#state"), "idle");
  const idle = await page.locator("#state").evaluate((e) => getComputedStyle(e).color);
  assert.notEqual(idle, "rgb(197, 48, 48)", "the idle badge is red");
  let runs = 0;
  page.on("request", (r) => {
    if (r.url().includes("/stream-training") || (r.postData() || "").includes("stream-training")) runs += 1;
  });
  await page.click("#start");
  await until("completion", async () => (await text(page, "#result")) === "Training complete!");
  assert.equal(await page.locator("#bar").evaluate((b) => b.style.width), "100%");
  assert.equal(await text(page, "#loss"), "0.1000");
  assert.equal(await text(page, "#epoch"), "2");
  assert.equal(await page.locator("#start").isEnabled(), true);
  // A stream left open would reconnect after the stream's retry (2 s)
  // and start a second run: wait past that and count.
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

test("ticker: every symbol has its price at once, before it ticks", async () => {
  // One tick an hour: the prices shown come from the server's latest quotes.
  const own = await startSsed("127.0.0.1:0", ["--stocks-interval-ms", "3600000"]);
  try {
    const page = await context.newPage();
    await page.goto(own.url + "/ticker.html");
    await until("a price for every symbol", async () => {
      for (const s of ["AAPL", "GOOGL", "MSFT"]) if (!(await text(page, `#card-${s} .price`)).startsWith("$")) return false;
      return true;
    });
    await finish(page, "ticker-at-once");
  } finally {
    await stopSsed(own);
  }
});

test("messages: both buttons answer at once and broadcast to every page", async () => {
  const a = await open("/messages.html");
  const b = await open("/messages.html");
  for (const p of [a, b]) await p.locator("#state.open").waitFor({ timeout: WAIT });
  await a.fill("#text", "hello from A");
  await a.click("#send-sse");
  await until("the SSE reply", async () =>
    (await text(a, "#reply")) === "Sent to /messages: the server answered “Received” for “hello from A”.");
  assert.equal(await a.locator("#text").inputValue(), "", "the input is cleared");
  await a.fill("#text", "rest from A");
  await a.click("#send-rest");
  await until("the REST reply", async () =>
    (await text(a, "#reply")) === "Sent to /send_rest: the server answered “Received via REST” for “rest from A”.");
  for (const p of [a, b]) {
    await until("both messages in the list", async () => {
      const items = await p.locator("#log li").allInnerTexts();
      return items.includes("Received: hello from A") && items.includes("Received via REST: rest from A");
    });
  }
  // A page opened later shows the last messages.
  const c = await open("/messages.html");
  await until("the history", async () => {
    const items = await c.locator("#log li").allInnerTexts();
    return items.includes("Received: hello from A") && items.includes("Received via REST: rest from A");
  });
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

test("hub: subscribe, publish, see every event with its topic, name and id", async () => {
  const page = await open("/hub.html");
  await page.fill("#topics", "news, alerts");
  await page.click("#subscribe");
  await page.locator("#state.open").waitFor({ timeout: WAIT });
  await page.fill("#pub-topic", "alerts");
  await page.fill("#pub-event", "warning");
  await page.fill("#pub-data", "disk almost full");
  await page.click("#publish");
  await until("the publish reply", async () => (await text(page, "#reply")).startsWith("Published to alerts as "));
  const id = await page.locator("#reply").getAttribute("data-id");
  assert.match(await text(page, "#reply"), /^Published to alerts as \S+-\d+; 1 subscriber was connected\.$/);
  const item = page.locator(`#log li[data-id="${id}"]`);
  await item.waitFor({ timeout: WAIT });
  assert.deepEqual(
    [await text(item, ".topic"), await text(item, ".name"), await text(item, ".data")],
    ["alerts", "warning", "disk almost full"],
  );
  // A name the page never heard of, published from outside (as curl does).
  const res = await fetch(`${base}/events/news?event=overheat`, { method: "POST", body: "92 °C" });
  const outside = (await res.json()).id;
  const hot = page.locator(`#log li[data-id="${outside}"]`);
  await hot.waitFor({ timeout: WAIT });
  assert.deepEqual([await text(hot, ".topic"), await text(hot, ".name"), await text(hot, ".data")], ["news", "overheat", "92 °C"]);
  // The topics, with their subscriber counts.
  await until("the topic list", async () =>
    (await page.locator('table.topics tr[data-topic="alerts"] td.subs').count()) === 1);
  assert.equal(await text(page, 'table.topics tr[data-topic="alerts"] td.subs'), "1");
  // Errors are sentences.
  allowed.push(/status of 400/);
  await page.fill("#pub-topic", "no spaces allowed");
  await page.click("#publish");
  await until("the refusal", async () => (await text(page, "#reply")).startsWith("Publishing refused (400): topic names are"));
  await finish(page, "hub");
});

test("hub: a topic deleted from its row ends for its subscribers, who are told", async () => {
  const page = await open("/hub.html");
  page.on("dialog", (d) => d.accept());
  await page.fill("#topics", "doomed, kept");
  await page.click("#subscribe");
  await page.locator("#state.open").waitFor({ timeout: WAIT });
  await fetch(`${base}/events/doomed`, { method: "POST", body: "soon gone" });
  await until("the topic's row", async () => (await page.locator('table.topics tr[data-topic="doomed"] button.delete').count()) === 1);
  await page.click('table.topics tr[data-topic="doomed"] button.delete');
  await until("the answer", async () => (await text(page, "#reply")) === "Deleted doomed.");
  await until("the notice in the log", async () =>
    (await page.locator("#log li").allInnerTexts()).some((t) => t.includes("the topic doomed was deleted")));
  await until("the row gone", async () => (await page.locator('table.topics tr[data-topic="doomed"]').count()) === 0);
  // The stream goes on for the other topic.
  const res = await fetch(`${base}/events/kept`, { method: "POST", body: "still here" });
  const id = (await res.json()).id;
  await page.locator(`#log li[data-id="${id}"]`).waitFor({ timeout: WAIT });
  await finish(page, "hub-delete");
});

/** On the hub page: subscribes with `token`, then an event published to `url` shows. */
async function hubReads(page, token, url, headers) {
  await page.fill("#token", token);
  await page.click("#subscribe");
  let seen = [];
  await until("the subscription", async () => {
    seen = [await text(page, "#state"), ...(await page.locator("#log li").allInnerTexts())];
    return seen[0] === "subscribed";
  }).catch((err) => assert.fail(`${err.message}; the page says ${JSON.stringify(seen)}`));
  const res = await fetch(url, { method: "POST", body: "for token holders", headers });
  const id = (await res.json()).id;
  await page.locator(`#log li[data-id="${id}"]`).waitFor({ timeout: WAIT });
}

test("hub: a token field for servers that ask for one, with clear 401s", async () => {
  allowed.push(/status of 401/);
  const locked = await startSsed("127.0.0.1:0", ["--subscribe-token", "sub-secret", "--publish-token", "pub-secret"]);
  try {
    const page = await context.newPage();
    page.on("console", (msg) => { if (msg.type() === "error" && !allowed.some((re) => re.test(msg.text()))) problems.push(msg.text()); });
    await page.goto(locked.url + "/hub.html");
    await until("the topics refusal", async () => (await text(page, "#topics-box")).includes("Listing topics refused: the server needs a token"));
    await page.click("#subscribe");
    await until("the subscribe refusal", async () =>
      (await page.locator("#log li.error").allInnerTexts()).some((t) => t.includes("Subscribing refused: the server needs a token (a token is required: send it as Authorization: Bearer TOKEN") && t.includes("). Enter it above.")));
    await page.fill("#token", "wrong");
    await page.fill("#pub-data", "anything");
    await page.click("#publish");
    await until("the publish refusal", async () =>
      (await text(page, "#reply")) === "Publishing refused: the token was not accepted (the token is wrong).");
    // One token for both sides here: the subscribe token lets the page
    // read, the publish token publish.
    await hubReads(page, "sub-secret", `${locked.url}/events/news`, { Authorization: "Bearer pub-secret" });
    await finish(page, "hub-token");
  } finally {
    await stopSsed(locked);
  }
});

test("hub: with a plain EventSource (a page over HTTP/2, or ?mux=off) the token goes as ?token=", async () => {
  // (The topic list is refused until the token is entered.)
  allowed.push(/status of 401/);
  const locked = await startSsed("127.0.0.1:0", ["--subscribe-token", "sub-secret"]);
  try {
    const page = await context.newPage();
    page.on("console", (msg) => { if (msg.type() === "error" && !allowed.some((re) => re.test(msg.text()))) problems.push(msg.text()); });
    await page.goto(locked.url + "/hub.html?mux=off");
    await hubReads(page, "sub-secret", `${locked.url}/events/news`, {});
    await finish(page, "hub-token-plain");
  } finally {
    await stopSsed(locked);
  }
});

test("private streams: a page reads with its cookie token, and says why when it may not", async () => {
  allowed.push(/status of 401/, /status of 403/);
  // Tokens signed here, with Node's own HMAC: as an application would.
  const KEY = "a browser test key, thirty-two bytes or more";
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const sign = (claims) => {
    const signing = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
    return `${signing}.${createHmac("sha256", KEY).update(signing).digest("base64url")}`;
  };
  const exp = Math.floor(Date.now() / 1000) + 600;
  const priv = await startSsed("127.0.0.1:0", ["--token-key", KEY]);
  try {
    const visit = async (cookie) => {
      await context.clearCookies();
      if (cookie) await context.addCookies([{ name: "ssed_token", value: cookie, url: priv.url }]);
      const page = await context.newPage();
      page.on("console", (msg) => { if (msg.type() === "error" && !allowed.some((re) => re.test(msg.text()))) problems.push(msg.text()); });
      await page.goto(priv.url + "/messages.html");
      return page;
    };
    // Alice's cookie grants the messages topic: the page reads it.
    const alice = await visit(sign({ sub: "alice", exp, ssed: { subscribe: ["messages"] } }));
    await alice.locator("#state.open").waitFor({ timeout: WAIT });
    const writer = sign({ sub: "app", exp, ssed: { publish: ["messages"] } });
    const res = await fetch(`${priv.url}/messages`, {
      method: "POST", body: JSON.stringify({ message: "for alice" }), headers: { Authorization: `Bearer ${writer}` },
    });
    assert.equal(res.status, 200);
    await until("the message", async () => (await alice.locator("#log li").allInnerTexts()).includes("Received: for alice"));
    await finish(alice, "private-cookie");
    // Bob's grants another topic: the page says so, naming the topic.
    const bob = await visit(sign({ sub: "bob", exp, ssed: { subscribe: ["news"] } }));
    await until("the 403 sentence", async () => (await bob.locator("#refusal").count()) > 0 &&
      (await text(bob, "#refusal")) === 'The token does not allow this stream: no grant to subscribe to "messages".');
    // No cookie: the page says a token is needed.
    const nobody = await visit(null);
    await until("the 401 sentence", async () => (await nobody.locator("#refusal").count()) > 0 &&
      (await text(nobody, "#refusal")).startsWith("The server needs a token for this stream (a token is required: send it as Authorization: Bearer TOKEN"));
    await finish(nobody, "private-no-token");
  } finally {
    await context.clearCookies();
    await stopSsed(priv);
  }
});

test("behind a proxy under a path prefix, every page works", async () => {
  // As nginx's `location /live/ { proxy_pass http://127.0.0.1:8000/; }`:
  // /live/X is ssed's /X, streamed through.
  const target = new URL(base);
  const proxy = http.createServer((req, res) => {
    if (!req.url.startsWith("/live/")) {
      res.writeHead(404).end("not under /live/");
      return;
    }
    const up = http.request({
      host: target.hostname, port: target.port, method: req.method,
      path: req.url.slice("/live".length), headers: req.headers,
    }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
  const at = `http://127.0.0.1:${proxy.address().port}/live`;
  try {
    const page = await context.newPage();
    page.on("pageerror", (err) => problems.push(`exception: ${err.message}`));
    for (const [path, state] of [["/clock.html", "#state.open"], ["/monitor.html", "#state.open"], ["/ticker.html", "#state.open"], ["/messages.html", "#state.open"]]) {
      await page.goto(at + path);
      await page.locator(state).waitFor({ timeout: WAIT });
    }
    // The messages page publishes through the prefix too.
    await page.fill("#text", "through the proxy");
    await page.click("#send-sse");
    await until("the message back", async () => (await page.locator("#log li").allInnerTexts()).includes("Received: through the proxy"));
    // The hub page lists topics and subscribes.
    await page.goto(at + "/hub.html");
    await page.fill("#topics", "prefixed");
    await page.click("#subscribe");
    await page.locator("#state.open").waitFor({ timeout: WAIT });
    await until("the topic listed", async () => (await page.locator('table.topics tr[data-topic="prefixed"]').count()) === 1);
    await finish(page, "prefix-hub");
  } finally {
    proxy.closeAllConnections?.();
    await new Promise((r) => proxy.close(r));
  }
});

test("behind nginx (the Deploy page's recipe) over HTTP/2: a prefix, and more than six streams in one page", async (t) => {
  const NGINX = process.env.NGINX || "/usr/sbin/nginx";
  if (!present(t, NGINX, "SSED_REQUIRE_NGINX", "nginx")) return;
  const dir = certified("ssed-nginx-");
  const port = await freePort();
  const upstream = new URL(base);
  // The Deploy page's recipe as written, with this test's port, files and
  // upstreams (both the shared server).
  const recipe = recipeOf("nginx")
    .replace(/server 127\.0\.0\.1:8001; server 127\.0\.0\.1:8002;/, `server ${upstream.host}; server ${upstream.host};`)
    .replace("listen 443 ssl http2;", `listen 127.0.0.1:${port} ssl http2;`)
    .replace("# ssl_certificate ...; ssl_certificate_key ...;", `ssl_certificate ${dir}/cert.pem; ssl_certificate_key ${dir}/key.pem;`);
  assert.ok(recipe.includes(upstream.host) && recipe.includes(`${dir}/cert.pem`), recipe);
  writeFileSync(path.join(dir, "nginx.conf"), `
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events {}
http {
  access_log off;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
${recipe}
}
`);
  const nginx = spawn(NGINX, ["-p", dir, "-c", path.join(dir, "nginx.conf")], { stdio: "ignore" });
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  try {
    const at = `https://127.0.0.1:${port}/live`;
    const page = await ctx.newPage();
    page.on("pageerror", (err) => problems.push(`exception: ${err.message}`));
    await until("nginx up", async () => {
      try {
        await page.goto(at + "/clock.html");
        return true;
      } catch (err) {
        return false;
      }
    });
    await page.locator("#state.open").waitFor({ timeout: WAIT });
    await tenStreamsOverH2(page);
    await finish(page, "nginx-http2");
  } finally {
    await ctx.close();
    nginx.kill("SIGQUIT");
    await new Promise((r) => nginx.once("exit", r));
    rmSync(dir, { recursive: true, force: true });
  }
});

test("every tab live over HTTP/1.1: nine demo pages in one browser share one connection, and fetch still answers", async () => {
  // HTTP/1.1 gives a browser six connections per origin: with a stream
  // each, the seventh tab would hang. The pages' streams share the /mux
  // of one SharedWorker instead.
  const pages = {};
  const paths = {
    clock: "/clock.html",
    monitor: "/monitor.html",
    ticker: "/ticker.html",
    messages: "/messages.html",
    events: "/events.html?interval_ms=100",
    logs: "/logs.html?topic=demo-log",
    hub: "/hub.html",
    training: "/training.html?epochs=1000&steps=10&step_ms=100",
    clock2: "/clock.html",
  };
  for (const [name, p] of Object.entries(paths)) pages[name] = await open(p);
  await pages.hub.fill("#topics", "tabs");
  await pages.hub.click("#subscribe");
  await pages.training.click("#start");
  for (const [name, page] of Object.entries(pages)) {
    if (name === "training") continue;
    await until(`${name} connected`, async () => (await page.locator("#state.open").count()) === 1);
  }
  // Each is live: it receives after all of them were opened.
  const clock = await text(pages.clock, "#time");
  const clock2 = await text(pages.clock2, "#time");
  await until("both clocks tick", async () =>
    (await text(pages.clock, "#time")) !== clock && (await text(pages.clock2, "#time")) !== clock2);
  // Each sample rewrites the numbers, even when they are the same.
  await pages.monitor.evaluate(() => {
    window.samples = 0;
    new MutationObserver(() => { window.samples += 1; })
      .observe(document.getElementById("mem-used"), { childList: true });
  });
  await until("a new sample", async () => (await pages.monitor.evaluate(() => window.samples)) > 0);
  const price = await text(pages.ticker, "#card-AAPL .price");
  await until("a new price", async () => (await text(pages.ticker, "#card-AAPL .price")) !== price);
  const custom = Number(await text(pages.events, "#n-custom"));
  await until("a custom event", async () => Number(await text(pages.events, "#n-custom")) > custom);
  const lines = await text(pages.logs, "#count");
  await until("new log lines", async () => (await text(pages.logs, "#count")) !== lines);
  await until("training progress", async () => Number(await text(pages.training, "#percent")) > 0);
  const res = await fetch(`${base}/events/tabs`, { method: "POST", body: "to every tab" });
  assert.equal(res.status, 200);
  await until("the hub's event", async () => (await pages.hub.locator("#log li").allInnerTexts()).some((t) => t.includes("to every tab")));
  await fetch(`${base}/messages`, { method: "POST", body: JSON.stringify({ message: "tab nine" }) });
  await until("the message", async () => (await pages.messages.locator("#log li").allInnerTexts()).includes("Received: tab nine"));
  // A request from a page still gets a connection.
  const health = await pages.clock.evaluate(async () => {
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 5000);
    return (await fetch("healthz", { signal: ctl.signal })).status;
  });
  assert.equal(health, 200);
  // Nine pages, one stream each, and a fetch: without the mux the seventh
  // would have waited for a connection (and the fetch with it).
  await finish(pages.clock, "tabs");
});

test("one page, ten streams over HTTP/1.1, in the page's own mux (no SharedWorker), with EventSource's API and the refusal's reason", async () => {
  allowed.push(/status of 400/);
  const page = await open("/clock.html?mux=page");
  await page.locator("#state.open").waitFor({ timeout: WAIT });
  assert.equal(await page.evaluate(() => transport().mode), "page");
  await page.evaluate(() => {
    window.seen = {};
    window.opened = 0;
    for (let i = 0; i < 10; i++) {
      const s = new SsedSource(`events/page${i}`);
      s.onopen = () => { window.opened += 1; };
      s.addEventListener("note", (e) => { window.seen[i] = `${e.type} ${e.data} ${e.lastEventId}`; });
    }
    const bad = new SsedSource("events/page?lst=1");
    bad.onerror = () => { window.refused = `${bad.readyState} ${bad.status} ${bad.reason}`; };
  });
  await until("ten streams open", async () => (await page.evaluate(() => window.opened)) === 10);
  const ids = [];
  for (let i = 0; i < 10; i++) {
    const res = await fetch(`${base}/events/page${i}?event=note`, { method: "POST", body: `n${i}` });
    ids.push((await res.json()).id);
  }
  await until("an event on each", async () => Object.keys(await page.evaluate(() => window.seen)).length === 10);
  const seen = await page.evaluate(() => window.seen);
  for (let i = 0; i < 10; i++) assert.equal(seen[i], `note n${i} ${ids[i]}`);
  assert.equal(await page.evaluate(() => window.refused),
    '2 400 unknown query parameter "lst"; /events/page takes last, last_event_id, since, format, tag, token');
  await finish(page, "page-mux");
});

test("a mux the server does not know (410: it ended, or another instance has it) is opened anew, and its streams resume", async () => {
  allowed.push(/status of 410/);
  const page = await open("/clock.html?mux=page");
  await page.locator("#state.open").waitFor({ timeout: WAIT });
  await page.evaluate(() => {
    window.got = [];
    const mux = transport().mux;
    window.firstMux = mux.id;
    mux.id = "0123456789abcdef0123456789abcdef";   // as if another instance's
    const s = new SsedSource("events/renewed");
    s.onmessage = (e) => window.got.push(e.data);
    s.onopen = () => { window.renewedOpen = true; };
  });
  await until("a new mux, and the stream open on it", async () => page.evaluate(() =>
    window.renewedOpen === true && transport().mux.id && transport().mux.id !== window.firstMux &&
    transport().mux.id !== "0123456789abcdef0123456789abcdef"));
  const res = await fetch(`${base}/events/renewed`, { method: "POST", body: "after 410" });
  assert.equal(res.status, 200);
  await until("the event", async () => (await page.evaluate(() => window.got)).includes("after 410"));
  // The clock's stream came back on the new mux too.
  const first = await text(page, "#time");
  await until("the clock ticks again", async () => (await text(page, "#time")) !== first);
  await finish(page, "mux-renewed");
});

test("behind Caddy (the Deploy page's recipe) over HTTP/2: a prefix, the pages, and more than six streams in one page", async (t) => {
  const CADDY = process.env.CADDY || "/usr/bin/caddy";
  if (!present(t, CADDY, "SSED_REQUIRE_CADDY", "caddy")) return;
  const dir = certified("ssed-caddy-");
  const port = await freePort();
  const upstream = new URL(base);
  // The Deploy page's recipe as written, with this test's address,
  // certificate and upstreams (both the shared server); no admin
  // endpoint, files under the test's folder.
  const recipe = recipeOf("caddy")
    .replace("example.com {", `https://127.0.0.1:${port} {\n    tls ${dir}/cert.pem ${dir}/key.pem`)
    .replace("reverse_proxy 127.0.0.1:8001 127.0.0.1:8002", `reverse_proxy ${upstream.host} ${upstream.host}`);
  assert.ok(recipe.includes(upstream.host) && recipe.includes(`${dir}/cert.pem`), recipe);
  writeFileSync(path.join(dir, "Caddyfile"), `
{
  admin off
  storage file_system ${dir}/data
}
${recipe}
`);
  const caddy = spawn(CADDY, ["run", "--config", path.join(dir, "Caddyfile"), "--adapter", "caddyfile"], {
    stdio: "ignore",
    env: { ...process.env, HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir },
  });
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  try {
    const at = `https://127.0.0.1:${port}/live`;
    const page = await ctx.newPage();
    page.on("pageerror", (err) => problems.push(`exception: ${err.message}`));
    await until("caddy up", async () => {
      try {
        return (await page.goto(at + "/clock.html")).ok();
      } catch (err) {
        return false;
      }
    });
    // Over HTTP/2 the page's SsedSource is a plain EventSource: any
    // instance behind the proxy serves it.
    await page.locator("#state.open").waitFor({ timeout: WAIT });
    assert.equal(await page.evaluate(() => ssedMode()), "off");
    const first = await text(page, "#time");
    await until("the clock ticks", async () => (await text(page, "#time")) !== first);
    await tenStreamsOverH2(page);
    await finish(page, "caddy-http2");
  } finally {
    await ctx.close();
    caddy.kill("SIGTERM");
    await new Promise((r) => caddy.once("exit", r));
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The Deploy page's recipe for `proxy` ("nginx" or "caddy"), as written there. */
function recipeOf(proxy) {
  const page = readFileSync(path.join(root, "docs/deploy.md"), "utf8");
  const re = proxy === "nginx" ? /```nginx\n([\s\S]*?)```/ : /\*\*Caddy\*\*[\s\S]*?```\n([\s\S]*?)```/;
  const m = page.match(re);
  assert.ok(m, `no ${proxy} recipe in docs/deploy.md`);
  return m[1];
}

/** Whether the proxy `bin` is installed; if not, skips `t` (or fails it when `require` is set). */
function present(t, bin, require, pkg) {
  if (existsSync(bin)) return true;
  if (process.env[require]) assert.fail(`${bin} is not installed, and ${require} is set`);
  t.skip(`${pkg} is not installed (apt-get install ${pkg})`);
  return false;
}

/** A new folder with a certificate of its own for 127.0.0.1: browsers speak HTTP/2 over TLS only. */
function certified(prefix) {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
    "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem")], { stdio: "ignore" });
  return dir;
}

/** Ten EventSources in `page`, more than HTTP/1.1's six: all open, over HTTP/2. */
async function tenStreamsOverH2(page) {
  const opened = await page.evaluate(() => new Promise((resolve) => {
    const got = new Set();
    for (let i = 0; i < 10; i++) {
      const es = new EventSource(`events/t${i}`);
      es.onopen = () => { got.add(i); if (got.size === 10) resolve(got.size); };
    }
    setTimeout(() => resolve(got.size), 10000);
  }));
  assert.equal(opened, 10, "every stream opens over one HTTP/2 connection");
  const protocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
  assert.equal(protocol, "h2");
}

/** A free TCP port on the loopback. */
function freePort() {
  return new Promise((resolve) => {
    const srv = http.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

test("hub: a server restart shows as a gap line, then the stream goes on", async () => {
  allowed.push(/ERR_CONNECTION_REFUSED|ERR_INCOMPLETE_CHUNKED_ENCODING|ERR_EMPTY_RESPONSE|ERR_CONNECTION_RESET|network error/);
  let own = await startSsed("127.0.0.1:0", ["--history", "2"]);
  const addr = new URL(own.url).host;
  try {
    const page = await context.newPage();
    page.on("console", (msg) => { if (msg.type() === "error" && !allowed.some((re) => re.test(msg.text()))) problems.push(msg.text()); });
    await page.goto(own.url + "/hub.html");
    await page.fill("#topics", "g");
    await page.click("#subscribe");
    await page.locator("#state.open").waitFor({ timeout: WAIT });
    await fetch(`${own.url}/events/g`, { method: "POST", body: "before" });
    await page.locator("#log li .data", { hasText: "before" }).waitFor({ timeout: WAIT });
    await stopSsed(own);
    own = await startSsed(addr, ["--history", "2"]);
    for (const d of ["x1", "x2", "x3"]) await fetch(`${own.url}/events/g`, { method: "POST", body: d });
    // The page resumes with an id of the old run: a gap, then what the new
    // run still has.
    const gap = page.locator('#log li.gap');
    await gap.waitFor({ timeout: WAIT });
    // (Whether the new run had dropped any yet depends on when the page
    // came back.)
    assert.match(await text(gap, ".data"), /^missed events of g( up to \S+-\d+)?: the server no longer has them\./);
    await page.locator("#log li .data", { hasText: "x3" }).waitFor({ timeout: WAIT });
    await finish(page, "hub-gap");
  } finally {
    await stopSsed(own);
  }
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
  const before = parseInt(await text(page, "#count"), 10);
  server = await startSsed(addr);
  await page.locator("#state.open").waitFor({ timeout: WAIT });
  await until("new events", async () => parseInt(await text(page, "#count"), 10) > before);
  await finish(page, "reconnect");
});

test("logs: a program's lines in order, follow and pause, filter, stderr marked", async () => {
  // The page opens the first topic a source feeds.
  const page = await open("/logs.html");
  await page.locator("#state.open").waitFor({ timeout: WAIT });
  assert.equal(await page.locator("#topic").inputValue(), "demo-log");
  const count = async () => parseInt((await text(page, "#count")).replace(/,/g, ""), 10);
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

test("logs: opens a topic with lines, and says so where there are none", async () => {
  // A source that sorts first but has no line yet (its file is missing).
  const own = await startSsed("127.0.0.1:0", ["--tail", "aaa-empty=/nonexistent/ssed-test.log"]);
  try {
    const page = await context.newPage();
    page.on("pageerror", (err) => problems.push(`exception: ${err.message}`));
    await page.goto(own.url + "/logs.html");
    await page.locator("#state.open").waitFor({ timeout: WAIT });
    assert.equal(await page.locator("#topic").inputValue(), "demo-log");
    await until("lines", async () => (await page.locator("#term .ln").count()) > 0);
    // The empty one, picked by hand: a sentence, not a black box.
    await page.selectOption("#topic-list", "aaa-empty");
    await until("the empty note", async () => (await page.locator("#term").evaluate((t) =>
      getComputedStyle(t, "::before").content)) === '"No lines yet in aaa-empty: they appear here as they are printed."');
    assert.equal(await text(page, "#count"), "0 lines");
    await finish(page, "logs-empty");
  } finally {
    await stopSsed(own);
  }
});

test("logs: on a server with a token, the page says so and takes one as ?token=", async () => {
  allowed.push(/status of 401/);
  const own = await startSsed("127.0.0.1:0", ["--subscribe-token", "tok-logs"]);
  try {
    const page = await context.newPage();
    page.on("pageerror", (err) => problems.push(`exception: ${err.message}`));
    await page.goto(own.url + "/logs.html?topic=demo-log");
    await until("the 401 sentence", async () => (await page.locator("#refusal").count()) > 0 &&
      (await text(page, "#refusal")).startsWith("The server needs a token for"));
    await page.goto(own.url + "/logs.html?topic=demo-log&token=tok-logs");
    await until("lines", async () => (await page.locator("#term .ln").count()) > 0);
    assert.equal(await page.locator("#refusal:visible").count(), 0);
    await finish(page, "logs-token");
  } finally {
    await stopSsed(own);
  }
});

test("cors: a page on a named origin reads a token-guarded stream with its cookie", async () => {
  // Server B allows the pages of A (base), and wants a subscribe token.
  const b = await startSsed("127.0.0.1:0", ["--cors-origin", base, "--subscribe-token", "cookie-secret"]);
  try {
    const page = await open("/clock.html");
    const got = page.evaluate((url) => new Promise((resolve, reject) => {
      // Cookies are per host, not per port: B gets this one.
      document.cookie = "ssed_token=cookie-secret; path=/; SameSite=Lax";
      const es = new EventSource(url + "/events/news", { withCredentials: true });
      es.onmessage = (e) => { es.close(); resolve(e.data); };
      es.onerror = () => { if (es.readyState === EventSource.CLOSED) reject(new Error("refused")); };
    }), b.url);
    await streamSubscribed(b.url, "news");
    await fetch(`${b.url}/events/news`, { method: "POST", body: "for the cookie" });
    assert.equal(await got, "for the cookie");
    // Never credentials with a wildcard.
    const res = await fetch(`${b.url}/healthz`, { headers: { Origin: base } });
    assert.equal(res.headers.get("access-control-allow-credentials"), "true");
    assert.equal(res.headers.get("access-control-allow-origin"), base);
    await page.evaluate(() => { document.cookie = "ssed_token=; path=/; max-age=0"; });
    await finish(page, "cors-credentials");
  } finally {
    await stopSsed(b);
  }
});

/** Waits until `topic` at `url` has a subscriber. */
async function streamSubscribed(url, topic) {
  await until(`a subscriber to ${topic}`, async () => {
    const res = await fetch(`${url}/topics`, { headers: { Authorization: "Bearer cookie-secret" } });
    if (!res.ok) return false;
    return (await res.json()).some((t) => t.topic === topic && t.subscribers > 0);
  });
}

test("logs: 100,000 lines at once keep the page bounded and counted", async () => {
  const page = await open("/logs.html?topic=demo-log");
  await page.locator("#state.open").waitFor({ timeout: WAIT });
  const before = await page.evaluate(() => total);
  await page.evaluate(() => { for (let i = 0; i < 100000; i++) add(`burst ${i}`, ""); });
  await until("the burst counted", async () =>
    parseInt((await text(page, "#count")).replace(/,/g, ""), 10) >= before + 100000);
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

test("narrow screens (390 px): nothing wider than the screen, no code or placeholder cut", async () => {
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
  try {
    // A topic whose count has four digits and whose name is long.
    for (let i = 0; i < 1000; i++) {
      await fetch(`${base}/events/sensors/kitchen/temperature-probe-1`, { method: "POST", body: String(i) });
    }
    for (const path of ["/", "/hub.html", "/logs.html", "/messages.html", "/events.html?interval_ms=50"]) {
      const page = await phone.newPage();
      page.on("pageerror", (err) => problems.push(`exception: ${err.message}`));
      await page.goto(base + path);
      if (path === "/hub.html") await page.locator("table.topics td.n").first().waitFor({ timeout: WAIT });
      if (path.startsWith("/events.html")) await page.locator("ul.log li.custom").first().waitFor({ timeout: WAIT });
      const report = await page.evaluate(() => {
        const out = [];
        if (document.documentElement.scrollWidth > innerWidth) out.push(`the page is ${document.documentElement.scrollWidth} px wide`);
        for (const el of document.querySelectorAll("pre, code, .cmds, table, input, select, button, h1, p")) {
          if (el.closest(".term")) continue; // the log view scrolls sideways on purpose
          const r = el.getBoundingClientRect();
          if (r.right > innerWidth + 0.5) out.push(`${el.tagName} "${(el.textContent || el.placeholder).slice(0, 30)}" ends at ${Math.round(r.right)}`);
          if (el.tagName === "PRE" && el.scrollWidth > el.clientWidth) out.push(`a code block scrolls: ${el.textContent.slice(0, 30)}`);
        }
        // A number is never broken across lines, nor a word of a topic
        // name: lines break after / . _ -.
        for (const td of document.querySelectorAll("table.topics td")) {
          for (const node of td.childNodes) {
            if (node.nodeType !== Node.TEXT_NODE || node.textContent.includes(" ")) continue;
            const r = document.createRange();
            r.selectNodeContents(node);
            if (r.getClientRects().length > 1) out.push(`"${node.textContent}" is broken across lines`);
          }
        }
        // No word of an event line is broken across lines ("custo/m").
        for (const li of document.querySelectorAll("ul.log li")) {
          const node = li.firstChild;
          if (!node || node.nodeType !== Node.TEXT_NODE) continue;
          for (const m of node.textContent.matchAll(/[A-Za-z]+/g)) {
            const r = document.createRange();
            r.setStart(node, m.index);
            r.setEnd(node, m.index + m[0].length);
            if (r.getClientRects().length > 1) out.push(`the word "${m[0]}" is broken across lines`);
          }
        }
        // A route name is never broken across lines.
        for (const el of document.querySelectorAll("table.routes td:first-child code")) {
          if (el.getClientRects().length > 1) out.push(`the route ${el.textContent} is broken across lines`);
        }
        // A placeholder fits its box.
        const ctx = document.createElement("canvas").getContext("2d");
        for (const el of document.querySelectorAll("input[placeholder]")) {
          const cs = getComputedStyle(el);
          ctx.font = `${cs.fontSize} ${cs.fontFamily}`;
          const room = el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
          if (ctx.measureText(el.placeholder).width > room + 0.5) out.push(`the placeholder "${el.placeholder}" is cut`);
        }
        return out;
      });
      assert.deepEqual(report, [], path);
      const name = path === "/" ? "index" : path.slice(1).split(".")[0];
      const file = path === "/" ? "narrow-index" : `narrow-${name}`;
      await page.screenshot({ path: path.includes("/") ? `${SHOTS}/${file}.png` : "", fullPage: true });
      console.log(`screenshot: ${SHOTS}/${file}.png`);
      await page.close();
    }
  } finally {
    await phone.close();
  }
  assert.deepEqual(problems, []);
});
