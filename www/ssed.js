// Shared by the demo pages: a connection badge, EventSource wiring and a
// small line chart. No framework, no build step.
"use strict";

/** The page's own query string, passed on to its stream (e.g. ?interval_ms=100). */
function streamUrl(path, extra) {
  const params = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(extra || {})) params.set(k, v);
  const q = params.toString();
  return q ? `${path}?${q}` : path;
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
  source.onopen = () => showState("connected", "open");
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) showState("disconnected", "closed");
    else showState("reconnecting…", "connecting");
  };
  for (const [type, handle] of Object.entries(handlers)) {
    source.addEventListener(type, (e) => handle(e.data, e));
  }
  return source;
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

/** A line chart of the last `size` values on a canvas. */
class Chart {
  constructor(canvas, { size = 60, min = 0, max = null, color = "#2b6cb0" } = {}) {
    this.canvas = canvas;
    this.size = size;
    this.min = min;
    this.max = max;
    this.color = color;
    this.values = [];
  }

  push(value) {
    this.values.push(value);
    if (this.values.length > this.size) this.values.shift();
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const ctx = c.getContext("2d");
    const w = (c.width = c.clientWidth * devicePixelRatio);
    const h = (c.height = c.clientHeight * devicePixelRatio);
    ctx.clearRect(0, 0, w, h);
    const vs = this.values;
    if (vs.length < 2) return;
    let lo = this.min === null ? Math.min(...vs) : this.min;
    let hi = this.max === null ? Math.max(...vs) : this.max;
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    ctx.strokeStyle = this.color;
    ctx.lineWidth = 2 * devicePixelRatio;
    ctx.beginPath();
    vs.forEach((v, i) => {
      const x = (i / (this.size - 1)) * w;
      const y = h - ((v - lo) / (hi - lo)) * (h - 4) - 2;
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
    c.dataset.points = String(vs.length);
  }
}
