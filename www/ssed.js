// Shared by the demo pages: a connection badge, streams that share one
// connection, and a small line chart. No framework, no build step.
//
// This file is also the SharedWorker that holds the shared connection:
// loaded by a page it defines the page's helpers, started as a worker it
// serves the pages of its origin (see SsedSource below).
"use strict";

/**
 * One connection to the server's /mux carrying many streams. It runs in the
 * SharedWorker (one for all the tabs of an origin) or, where there is no
 * SharedWorker, in the page. Each stream is a `sink` that hears open(),
 * event(type, data, id), reconnecting(), refused(status, why, retryAfter)
 * and fallback() (the server has no /mux: use a plain EventSource).
 */
class SsedMux {
  constructor(base) {
    this.base = base;
    this.streams = new Map();
    this.id = null;
    this.es = null;
    this.idle = null;
    this.renewing = null;
    this.failed = false;
  }

  open(key, path, lastEventId, headers, sink) {
    if (this.failed) return sink.fallback();
    this.close(key);
    const s = { key, path, lastEventId: lastEventId || "", headers: headers || {}, sink, timer: null, opened: false, retry: 2000 };
    this.streams.set(key, s);
    clearTimeout(this.idle);
    this.connect();
    if (this.id) this.ask(s);
  }

  close(key) {
    const s = this.streams.get(key);
    if (!s) return;
    this.streams.delete(key);
    clearTimeout(s.timer);
    if (this.id) this.post({ close: key }, {}).catch(() => {});
    // A mux with nothing to carry holds a thread on the server: let it go.
    if (this.streams.size === 0) this.idle = setTimeout(() => this.shut(), 5000);
  }

  shut() {
    if (this.streams.size || !this.es) return;
    this.es.close();
    this.es = null;
    this.id = null;
  }

  connect() {
    if (this.es) return;
    const es = new EventSource(new URL("mux", this.base));
    this.es = es;
    let hello = false;
    es.addEventListener("mux", (e) => {
      hello = true;
      this.id = JSON.parse(e.data).id;
      for (const s of this.streams.values()) {
        clearTimeout(s.timer);
        s.timer = null;
        this.ask(s);
      }
    });
    es.addEventListener("ev", (e) => {
      const m = JSON.parse(e.data);
      const s = this.streams.get(m.k);
      if (!s) return;
      this.opened(s);
      s.lastEventId = m.id;
      s.sink.event(m.event, m.data, m.id);
    });
    es.addEventListener("end", (e) => {
      // The stream ended (a restart, a finished run): as EventSource does,
      // ask again after its retry, from the last id.
      const m = JSON.parse(e.data);
      const s = this.streams.get(m.k);
      if (!s) return;
      if (m.retry != null) s.retry = m.retry;
      s.opened = false;
      s.sink.reconnecting();
      s.timer = setTimeout(() => {
        s.timer = null;
        if (this.streams.get(s.key) === s && this.id) this.ask(s);
      }, s.retry);
    });
    es.onerror = () => {
      if (es.readyState !== EventSource.CLOSED) return this.lost();
      if (!hello) {
        // No /mux here (another server, an older ssed): plain streams.
        this.es = null;
        this.id = null;
        this.failed = true;
        const all = [...this.streams.values()];
        this.streams.clear();
        for (const s of all) s.sink.fallback();
        return;
      }
      // Refused after it worked (the server is full): try again later.
      this.reconnectIn(2000 + Math.random() * 3000);
    };
  }

  /** The stream `s` is live (its request answered, or an event came). */
  opened(s) {
    if (s.opened) return;
    s.opened = true;
    s.sink.open();
  }

  /** The mux is gone: every stream waits for the next one's hello. */
  lost() {
    this.id = null;
    for (const s of this.streams.values()) {
      clearTimeout(s.timer);
      s.timer = null;
      if (s.opened) s.sink.reconnecting();
      s.opened = false;
    }
  }

  /** A new mux in `after` ms, instead of this one: its hello asks for every stream again. */
  reconnectIn(after) {
    if (this.es) this.es.close();
    this.es = null;
    this.lost();
    clearTimeout(this.renewing);
    this.renewing = setTimeout(() => { if (this.streams.size) this.connect(); }, after);
  }

  /** The server does not know this mux: a new one, after a moment. */
  renew() {
    if (this.es) this.reconnectIn(500 + Math.random() * 1500);
  }

  post(body, headers) {
    return fetch(new URL("mux/" + this.id, this.base), {
      method: "POST",
      headers: { "Content-Type": "application/json", ...headers },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
  }

  ask(s) {
    const body = { open: s.key, url: s.path };
    if (s.lastEventId) body.last_event_id = s.lastEventId;
    this.post(body, s.headers).then(async (res) => {
      if (this.streams.get(s.key) !== s) return;
      if (res.status === 200) return this.opened(s);
      // 410: the server does not know this mux (it ended, or a balancer
      // sent the request to another instance): open a new one, which asks
      // for every stream again.
      if (res.status === 410) return this.renew();
      // Refused (or 204: finished), as EventSource is: the stream ends.
      this.streams.delete(s.key);
      let why = res.statusText;
      try { why = (await res.json()).error || why; } catch (err) { /* not JSON */ }
      s.sink.refused(res.status, why, res.headers.get("Retry-After"));
    }, () => {
      if (this.streams.get(s.key) !== s) return;
      s.timer = setTimeout(() => { s.timer = null; if (this.id) this.ask(s); }, s.retry);
    });
  }
}

if (typeof SharedWorkerGlobalScope === "function" && self instanceof SharedWorkerGlobalScope) {
  // The worker: one mux for every tab under this address.
  const mux = new SsedMux(new URL(".", self.location.href));
  self.onconnect = (connected) => {
    const port = connected.ports[0];
    const mine = new Set();
    const forget = () => {
      for (const key of mine) mux.close(key);
      mine.clear();
    };
    const sink = (key) => ({
      open: () => port.postMessage({ key, kind: "open" }),
      event: (type, data, id) => port.postMessage({ key, kind: "event", type, data, id }),
      reconnecting: () => port.postMessage({ key, kind: "reconnecting" }),
      refused: (status, why, retryAfter) => port.postMessage({ key, kind: "refused", status, why, retryAfter }),
      fallback: () => port.postMessage({ key, kind: "fallback" }),
    });
    port.onmessage = (m) => {
      const d = m.data;
      if (d.op === "hello" && self.navigator.locks) {
        // The tab holds this lock while it lives: granted here, it is gone.
        self.navigator.locks.request(d.tab, () => forget());
      } else if (d.op === "open") {
        mine.add(d.key);
        mux.open(d.key, d.path, d.lastEventId, d.headers, sink(d.key));
      } else if (d.op === "close") {
        mine.delete(d.key);
        mux.close(d.key);
      } else if (d.op === "bye") {
        forget();
      }
    };
    port.start();
  };
}

/** Where this script was loaded from: the server's root, under any prefix. */
const SSED_BASE = typeof document !== "undefined" && document.currentScript
  ? new URL(".", document.currentScript.src) : null;
const SSED_SCRIPT = typeof document !== "undefined" && document.currentScript
  ? document.currentScript.src : null;

/**
 * How the page's streams reach the server: "shared" (one connection for
 * every tab, in a SharedWorker), "page" (one for this page) or "off"
 * (an EventSource each). ?mux= in the page's address picks one. A page
 * that came over HTTP/2 or 3 (a proxy in front) needs no mux: its streams
 * share one connection already, and each may go to any instance behind
 * the proxy.
 */
function ssedMode() {
  const asked = new URLSearchParams(location.search).get("mux");
  if (asked === "off" || asked === "page" || asked === "shared") {
    return asked === "shared" && typeof SharedWorker !== "function" ? "page" : asked;
  }
  const nav = performance.getEntriesByType && performance.getEntriesByType("navigation")[0];
  if (nav && /^(h2|h3)/.test(nav.nextHopProtocol || "")) return "off";
  return typeof SharedWorker === "function" ? "shared" : "page";
}

let ssedTransport = null;
/** The page's way to the mux: the SharedWorker's port, or a mux of its own. */
function transport() {
  if (ssedTransport) return ssedTransport;
  const sinks = new Map();
  const inPage = () => {
    const mux = new SsedMux(SSED_BASE);
    return { mode: "page", mux, open: (k, p, l, h, sink) => mux.open(k, p, l, h, sink), close: (k) => mux.close(k) };
  };
  if (ssedMode() === "shared") {
    try {
      const worker = new SharedWorker(SSED_SCRIPT, { name: "ssed" });
      const port = worker.port;
      const tab = "ssed-tab-" + Math.random().toString(36).slice(2) + Date.now().toString(36);
      // The tab holds a lock for as long as it lives; once it holds it, the
      // worker waits for it, and is granted it when the tab is gone.
      if (navigator.locks) {
        navigator.locks.request(tab, () => {
          port.postMessage({ op: "hello", tab });
          return new Promise(() => {});
        });
      }
      port.onmessage = (m) => {
        const sink = sinks.get(m.data.key);
        if (!sink) return;
        const d = m.data;
        if (d.kind === "event") sink.event(d.type, d.data, d.id);
        else if (d.kind === "refused") sink.refused(d.status, d.why, d.retryAfter);
        else sink[d.kind]();
      };
      port.start();
      addEventListener("pagehide", () => port.postMessage({ op: "bye" }));
      ssedTransport = {
        mode: "shared",
        open: (key, path, lastEventId, headers, sink) => {
          sinks.set(key, sink);
          port.postMessage({ op: "open", key, path, lastEventId, headers });
        },
        close: (key) => {
          sinks.delete(key);
          port.postMessage({ op: "close", key });
        },
      };
      return ssedTransport;
    } catch (err) {
      console.warn("no shared worker, one connection for this page:", err);
    }
  }
  ssedTransport = inPage();
  return ssedTransport;
}

let ssedKeys = 0;
/** This page's streams' keys start with this: the tabs share one worker. */
const SSED_PAGE = Math.random().toString(36).slice(2, 10);

/**
 * Like `new EventSource(url)`, but every stream of every tab of this origin
 * shares one connection to the server (`/mux`), so that a browser's six
 * connections per origin over HTTP/1.1 are never used up. The same
 * properties and events: readyState, lastEventId, onopen, onmessage,
 * onerror, addEventListener(type, fn), close(). Also: `status`, `reason`
 * and `retryAfter` when the server refused the stream (401, 403, 404, 503...),
 * which EventSource never tells, and the type "*" for every event whatever
 * its name (over the mux only). `options.headers` (such as Authorization)
 * go with the request over the mux; a plain EventSource cannot send them,
 * so there a bearer token goes as `?token=`, and other headers are not sent.
 * A URL outside this server, or a server without /mux, gets a plain
 * EventSource (`options.withCredentials` passed on).
 */
class SsedSource {
  constructor(url, options = {}) {
    this.url = new URL(url, location.href).href;
    this.readyState = 0;
    this.lastEventId = "";
    this.onopen = null;
    this.onmessage = null;
    this.onerror = null;
    this.status = null;
    this.reason = null;
    this.options = options;
    this.listeners = new Map();
    this.es = null;
    /** With a plain EventSource: the event types passed on from it. */
    this.forwarded = new Set();
    const path = SSED_BASE && muxPath(this.url);
    if (!path || options.mux === false || ssedMode() === "off") {
      this.plain();
      return;
    }
    this.key = `${SSED_PAGE}:${++ssedKeys}`;
    this.via = transport();
    this.mode = this.via.mode;
    this.via.open(this.key, path, "", options.headers || {}, {
      open: () => {
        this.readyState = 1;
        this.fire("open", new Event("open"));
      },
      event: (type, data, id) => {
        this.lastEventId = id;
        const ev = new MessageEvent(type, { data, lastEventId: id, origin: location.origin });
        this.fire(type, ev);
      },
      reconnecting: () => {
        this.readyState = 0;
        this.fire("error", new Event("error"));
      },
      refused: (status, why, retryAfter) => {
        this.readyState = 2;
        this.status = status;
        this.reason = why;
        this.retryAfter = retryAfter;
        this.fire("error", new Event("error"));
      },
      fallback: () => this.plain(),
    });
  }

  /** A plain EventSource, with the listeners added so far. */
  plain() {
    this.mode = "off";
    const es = new EventSource(withToken(this.url, this.options.headers), {
      withCredentials: !!this.options.withCredentials,
    });
    this.es = es;
    es.onopen = (e) => {
      this.readyState = es.readyState;
      this.fire("open", e);
    };
    es.onerror = (e) => {
      this.readyState = es.readyState;
      this.fire("error", e);
    };
    for (const type of this.listeners.keys()) this.forward(type);
    if (!this.listeners.has("message")) this.forward("message");
  }

  forward(type) {
    if (!this.es || type === "open" || type === "error") return;
    if (type === "*") return this.forward("message");
    if (this.forwarded.has(type)) return;
    this.forwarded.add(type);
    this.es.addEventListener(type, (e) => {
      this.lastEventId = e.lastEventId;
      this.fire(type, e);
    });
  }

  fire(type, ev) {
    const handler = this["on" + type];
    if (typeof handler === "function") handler.call(this, ev);
    for (const fn of this.listeners.get(type) || []) fn.call(this, ev);
    if (type !== "open" && type !== "error") {
      for (const fn of this.listeners.get("*") || []) fn.call(this, ev);
    }
  }

  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    this.forward(type);
  }

  removeEventListener(type, fn) {
    const set = this.listeners.get(type);
    if (set) set.delete(fn);
  }

  close() {
    this.readyState = 2;
    if (this.es) this.es.close();
    else if (this.via) this.via.close(this.key);
  }
}
SsedSource.CONNECTING = 0;
SsedSource.OPEN = 1;
SsedSource.CLOSED = 2;

/**
 * A plain EventSource cannot send headers: a bearer token in `headers`
 * goes as `?token=` instead (ssed takes it for streams, and its access
 * log hides it), unless the URL has one.
 */
function withToken(url, headers) {
  const auth = Object.entries(headers || {}).find(([k]) => k.toLowerCase() === "authorization");
  const bearer = auth && /^Bearer\s+(\S+)$/i.exec(auth[1]);
  if (!bearer) return url;
  const u = new URL(url);
  if (!u.searchParams.has("token")) u.searchParams.set("token", bearer[1]);
  return u.href;
}

/** `url`'s path and query on the server that served this script, or null. */
function muxPath(url) {
  const u = new URL(url);
  if (u.origin !== SSED_BASE.origin || !u.pathname.startsWith(SSED_BASE.pathname)) return null;
  return "/" + u.pathname.slice(SSED_BASE.pathname.length) + u.search;
}

/**
 * The page's own query string, passed on to its stream (e.g. ?interval_ms=100).
 * `path` is relative ("stream-time"): the pages work behind a proxy that
 * serves them under a prefix (/live/clock.html reads /live/stream-time).
 * `mux=` is the page's own: how it connects.
 */
function streamUrl(path, extra) {
  const params = new URLSearchParams(location.search);
  params.delete("mux");
  for (const [k, v] of Object.entries(extra || {})) params.set(k, v);
  const q = params.toString();
  return q ? `${path}?${q}` : path;
}

/** "1 event", "2 events", "1,000 lines": a count and its noun. */
function counted(n, noun) {
  return `${n.toLocaleString("en")} ${noun}${n === 1 ? "" : "s"}`;
}

/** Shows the state of a stream in the element #state. */
function showState(text, cls) {
  const el = document.getElementById("state");
  if (!el) return;
  el.textContent = text;
  el.className = "state " + cls;
}

/**
 * Opens a stream on `url` (an SsedSource: one connection for every tab) and
 * calls handlers[type](data, event) for each event type named in `handlers`
 * ("message" for unnamed events). It reconnects by itself when the server
 * goes away; the badge says so, and why when the server refuses it.
 */
function subscribe(url, handlers) {
  const source = new SsedSource(url);
  showState("connecting…", "connecting");
  source.onopen = () => {
    showState("connected", "open");
    explain(null);
  };
  source.onerror = () => {
    if (source.readyState === SsedSource.CLOSED) {
      showState("disconnected", "closed");
      if (source.status === 204) explain(null);
      else if (source.status != null) explain(sentenceFor(source.status, source.reason, "this stream"));
      // A plain EventSource does not say why it was refused: ask once more.
      else refusalOf(url).then(explain);
    } else showState("reconnecting…", "connecting");
  };
  for (const [type, handle] of Object.entries(handlers)) {
    source.addEventListener(type, (e) => handle(e.data, e));
  }
  return source;
}

/**
 * Why the server refuses the stream at `url`, as a sentence for a person,
 * or null if it does not (it was a network error, or it is back).
 */
async function refusalOf(url) {
  const ctl = new AbortController();
  let res;
  try {
    res = await fetch(url, { signal: ctl.signal, headers: { Accept: "text/event-stream" } });
  } catch (err) {
    return null;
  }
  if (res.ok) {
    ctl.abort();
    return null;
  }
  return refusalSentence(res, "this stream");
}

/** A refused response (`what` it was for) as a sentence for a person. */
async function refusalSentence(res, what) {
  let why = res.statusText;
  try { why = (await res.json()).error || why; } catch (err) { /* not JSON */ }
  return sentenceFor(res.status, why, what);
}

/** A refusal's status and reason (for `what`) as a sentence for a person. */
function sentenceFor(status, why, what) {
  const hasToken = new URLSearchParams(location.search).has("token") || /(^|;\s*)ssed_token=/.test(document.cookie);
  if (status === 401 && !hasToken) {
    return `The server needs a token for ${what} (${why}): open the page with ?token=… in its address, or sign in to the application that serves it.`;
  }
  if (status === 401) return `The token was not accepted for ${what}: ${why}.`;
  if (status === 403) return `The token does not allow ${what}: ${why}.`;
  return `The server refused ${what} (${status}): ${why}.`;
}

/** Shows `sentence` under the page's title (null: hides it). */
function explain(sentence) {
  let el = document.getElementById("refusal");
  if (!sentence) {
    if (el) el.hidden = true;
    return;
  }
  if (!el) {
    el = document.createElement("p");
    el.id = "refusal";
    el.className = "refusal";
    const title = document.querySelector("h1");
    if (title) title.after(el);
    else document.body.prepend(el);
  }
  el.textContent = sentence;
  el.hidden = false;
}

/** Parses JSON, or returns null (and logs why) for data that is not JSON. */
function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch (err) {
    console.warn("not JSON:", text);
    return null;
  }
}

/**
 * A line chart of the last `size` samples on a canvas, one line per series
 * (`series`: [{color}]). With `axes`, the value range is labelled on the
 * left (with `unit`) and `xLabels` ([oldest, newest]) under the ends.
 * `push(a, b, ...)` adds one sample: a value per series.
 */
class Chart {
  constructor(canvas, { size = 60, min = 0, max = null, series = [{ color: "#2b6cb0" }], axes = false, unit = "", xLabels = null } = {}) {
    this.canvas = canvas;
    this.size = size;
    this.min = min;
    this.max = max;
    this.series = series;
    this.axes = axes;
    this.unit = unit;
    this.xLabels = xLabels;
    this.samples = [];
  }

  push(...values) {
    this.samples.push(values);
    if (this.samples.length > this.size) this.samples.shift();
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const ctx = c.getContext("2d");
    const dpr = devicePixelRatio;
    const w = (c.width = c.clientWidth * dpr);
    const h = (c.height = c.clientHeight * dpr);
    ctx.clearRect(0, 0, w, h);
    c.dataset.points = String(this.samples.length);
    const all = this.samples.flat();
    if (all.length === 0) return;
    let lo = this.min === null ? Math.min(...all) : this.min;
    let hi = this.max === null ? Math.max(...all) : this.max;
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    // The plot area, inside room for the labels.
    const left = this.axes ? 40 * dpr : 0;
    const bottom = this.axes ? 16 * dpr : 0;
    const top = this.axes ? 6 * dpr : 2 * dpr;
    const pw = w - left - 2 * dpr;
    const ph = h - bottom - top;
    const y = (v) => top + ph - ((v - lo) / (hi - lo)) * ph;
    const x = (i) => left + (i / (this.size - 1)) * pw;
    if (this.axes) {
      ctx.font = `${11 * dpr}px system-ui, sans-serif`;
      ctx.fillStyle = "#5a6478";
      ctx.strokeStyle = "#e2e8f0";
      ctx.lineWidth = dpr;
      ctx.textBaseline = "middle";
      ctx.textAlign = "right";
      for (const v of [lo, (lo + hi) / 2, hi]) {
        ctx.beginPath();
        ctx.moveTo(left, y(v));
        ctx.lineTo(w, y(v));
        ctx.stroke();
        ctx.fillText(`${Math.round(v * 10) / 10}${this.unit}`, left - 4 * dpr, y(v));
      }
      if (this.xLabels) {
        ctx.textBaseline = "bottom";
        ctx.textAlign = "left";
        ctx.fillText(this.xLabels[0], left, h);
        ctx.textAlign = "right";
        ctx.fillText(this.xLabels[1], w, h);
      }
    }
    // The newest sample at the right edge.
    const offset = this.size - this.samples.length;
    this.series.forEach((s, k) => {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 2 * dpr;
      ctx.beginPath();
      this.samples.forEach((vs, i) => {
        if (i === 0) ctx.moveTo(x(offset + i), y(vs[k]));
        else ctx.lineTo(x(offset + i), y(vs[k]));
      });
      // A single sample is a dot.
      if (this.samples.length === 1) ctx.lineTo(x(offset) + dpr, y(this.samples[0][k]));
      ctx.stroke();
    });
    // The newest value of each series by its line's end: a line that lies
    // near the axis (memory at a few percent) is seen for what it is.
    if (this.axes && this.samples.length > 0) {
      const newest = this.samples[this.samples.length - 1];
      ctx.textAlign = "right";
      ctx.textBaseline = "bottom";
      this.series.forEach((s, k) => {
        ctx.fillStyle = s.color;
        ctx.fillText(`${Math.round(newest[k] * 10) / 10}${this.unit}`, w - 2 * dpr, y(newest[k]) - 3 * dpr);
      });
    }
  }
}
