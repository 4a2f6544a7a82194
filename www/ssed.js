// Shared by the demo pages: a connection badge, EventSource wiring and a
// small line chart. No framework, no build step.
"use strict";

/**
 * The page's own query string, passed on to its stream (e.g. ?interval_ms=100).
 * `path` is relative ("stream-time"): the pages work behind a proxy that
 * serves them under a prefix (/live/clock.html reads /live/stream-time).
 */
function streamUrl(path, extra) {
  const params = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(extra || {})) params.set(k, v);
  const q = params.toString();
  return q ? `${path}?${q}` : path;
}

/** "1 event", "2 events", "1,000 lines": a count and its noun. */
function counted(n, noun) {
  return `${n.toLocaleString("en")} ${noun}${n === 1 ? "" : "s"}`;
}

/** Shows the state of an EventSource in the element #state. */
function showState(text, cls) {
  const el = document.getElementById("state");
  if (!el) return;
  el.textContent = text;
  el.className = "state " + cls;
}

/**
 * Opens an EventSource on `url` and calls handlers[type](data, event) for each
 * event type named in `handlers` ("message" for unnamed events). The browser
 * reconnects by itself when the server goes away; the badge says so.
 */
function subscribe(url, handlers) {
  const source = new EventSource(url);
  showState("connecting…", "connecting");
  source.onopen = () => {
    showState("connected", "open");
    explain(null);
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      showState("disconnected", "closed");
      // The browser does not say why a stream was refused: ask once more.
      refusalOf(url).then(explain);
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
  const hasToken = new URLSearchParams(location.search).has("token") || /(^|;\s*)ssed_token=/.test(document.cookie);
  if (res.status === 401 && !hasToken) {
    return `The server needs a token for ${what} (${why}): open the page with ?token=… in its address, or sign in to the application that serves it.`;
  }
  if (res.status === 401) return `The token was not accepted for ${what}: ${why}.`;
  if (res.status === 403) return `The token does not allow ${what}: ${why}.`;
  return `The server refused ${what} (${res.status}): ${why}.`;
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
