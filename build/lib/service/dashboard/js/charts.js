// jobwire dashboard: The overview's charts: an hour of stats samples, and an SVG line chart with no library.

import { call } from "./api.js";
import { HOUR_MS, SAMPLES_STORAGE } from "./constants.js";
import { $, fmt, h, parseTime, setText, svg } from "./format.js";

/** The stats samples of the last hour: live ones from the feed (kept in sessionStorage across reloads),
 * and completed/failed per minute seeded from recently finished jobs for the time before them. */
export const samples = {
  live: [],
  seed: [],
  seeded: false,
  listeners: new Set(),

  load() {
    try {
      const stored = JSON.parse(sessionStorage.getItem(SAMPLES_STORAGE) || "[]");
      if (Array.isArray(stored)) this.live = stored.filter((s) => s && Number.isFinite(s.t));
    } catch {
      this.live = [];
    }
    this.trim();
  },

  add(queues) {
    const s = {
      t: Date.now(),
      normal: queues.normal,
      high: queues.high,
      running: queues.running,
      completed: queues.completed_per_minute,
      failed: queues.failed_per_minute,
    };
    this.live.push(s);
    this.trim();
    try {
      sessionStorage.setItem(SAMPLES_STORAGE, JSON.stringify(this.live));
    } catch {
      /* storage full or disabled: the chart just starts afresh on reload */
    }
  },

  trim() {
    const since = Date.now() - HOUR_MS - 60000;
    while (this.live.length && this.live[0].t < since) this.live.shift();
  },

  clear() {
    this.live = [];
    this.seed = [];
    this.seeded = false;
    sessionStorage.removeItem(SAMPLES_STORAGE);
  },

  /** Completed and failed per minute before the first live sample, from the newest finished jobs
   * (the same trailing-minute count the server sends, evaluated every minute). */
  async seedFromJobs() {
    if (this.seeded) return;
    this.seeded = true;
    const now = Date.now();
    const from = now - HOUR_MS;
    const finished = [];
    let cursor = null;
    let coveredFrom = from;
    for (let page = 0; page < 3; page += 1) {
      const q = new URLSearchParams({ status: "completed,failed", limit: "200" });
      if (cursor) q.set("cursor", cursor);
      const r = await call("GET", `/v1/jobs?${q}`);
      if (!r.ok) return;
      for (const job of r.data.items) finished.push(job);
      cursor = r.data.next_cursor;
      const oldest = r.data.items.length ? parseTime(r.data.items[r.data.items.length - 1].created_at) : from;
      if (!cursor || oldest < from) break;
      coveredFrom = Math.max(from, oldest); // jobs created before this were not read
    }
    const ends = finished
      .map((j) => ({ t: parseTime(j.finished_at), failed: j.status === "failed" }))
      .filter((e) => Number.isFinite(e.t));
    const until = this.live.length ? this.live[0].t : now;
    const seed = [];
    for (let t = Math.ceil(coveredFrom / 60000) * 60000 + 60000; t < until; t += 60000) {
      let completed = 0;
      let failed = 0;
      for (const e of ends) {
        if (e.t > t - 60000 && e.t <= t) {
          if (e.failed) failed += 1;
          else completed += 1;
        }
      }
      seed.push({ t, completed, failed, seed: true });
    }
    this.seed = seed;
    for (const fn of this.listeners) fn();
  },

  all() {
    const first = this.live.length ? this.live[0].t : Infinity;
    return [...this.seed.filter((s) => s.t < first), ...this.live];
  },
};

let chartIds = 0;

export class LineChart {
  constructor({ title, series, height = 190, minMax = 4, describe }) {
    this.series = series;
    this.height = height;
    this.minMax = minMax;
    this.describe = describe;
    this.id = `chart-${(chartIds += 1)}`;
    this.svg = svg("svg", {
      class: "chart-svg",
      role: "img",
      "aria-label": title,
      preserveAspectRatio: "none",
    });
    this.tooltip = h("div", { class: "chart-tooltip", hidden: true, "aria-hidden": "true" });
    this.legend = h(
      "ul",
      { class: "legend" },
      series.map((s) =>
        h(
          "li",
          null,
          h("span", { class: `swatch swatch-${s.key}`, "aria-hidden": "true" }),
          s.label,
          h("strong", { "data-legend": s.key, text: "—" }),
        ),
      ),
    );
    this.plot = h("div", { class: "chart-plot" }, this.svg, this.tooltip);
    this.el = h("div", { class: "chart" }, this.legend, this.plot);
    this.data = [];
    this.observer = new ResizeObserver(() => this.render());
    this.observer.observe(this.plot);
    this.plot.addEventListener("pointermove", (e) => this.hover(e));
    this.plot.addEventListener("pointerleave", () => this.hover(null));
  }

  dispose() {
    this.observer.disconnect();
  }

  setData(data) {
    this.data = data;
    this.render();
  }

  render() {
    const width = Math.max(200, Math.round(this.plot.clientWidth || 600));
    const height = this.height;
    const pad = { left: 34, right: 8, top: 8, bottom: 22 };
    const now = Date.now();
    const x0 = now - HOUR_MS;
    const data = this.data.filter((d) => d.t >= x0 - 60000);
    let max = this.minMax;
    for (const d of data)
      for (const s of this.series) if (Number.isFinite(d[s.key])) max = Math.max(max, d[s.key]);
    max = niceCeil(max);
    const x = (t) => pad.left + ((t - x0) / HOUR_MS) * (width - pad.left - pad.right);
    const y = (v) => pad.top + (1 - v / max) * (height - pad.top - pad.bottom);
    this.geometry = { x, y, x0, pad, width, height, data };

    const children = [];
    for (let i = 0; i <= 4; i += 1) {
      const v = (max / 4) * i;
      const yy = y(v);
      children.push(svg("line", { class: "grid", x1: pad.left, x2: width - pad.right, y1: yy, y2: yy }));
      children.push(
        svg(
          "text",
          { class: "axis", x: pad.left - 6, y: yy + 3.5, "text-anchor": "end" },
          fmt(Math.round(v * 10) / 10),
        ),
      );
    }
    const tick = (width < 360 ? 30 : width < 560 ? 20 : 10) * 60000; // labels never crowd
    for (let t = Math.ceil(x0 / tick) * tick; t <= now; t += tick) {
      const label = new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      children.push(
        svg("line", { class: "grid grid-v", x1: x(t), x2: x(t), y1: pad.top, y2: height - pad.bottom }),
      );
      children.push(svg("text", { class: "axis", x: x(t), y: height - 6, "text-anchor": "middle" }, label));
    }
    for (const s of this.series) {
      const segments = segmentsOf(data, s.key);
      for (const seg of segments) {
        const points = seg.map((d) => `${x(d.t).toFixed(1)},${y(d[s.key]).toFixed(1)}`);
        if (s.area && seg.length > 1) {
          const area = `M${x(seg[0].t).toFixed(1)},${y(0)} L${points.join(" L")} L${x(seg[seg.length - 1].t).toFixed(1)},${y(0)} Z`;
          children.push(svg("path", { class: `area area-${s.key}`, d: area }));
        }
        if (seg.length > 1) {
          children.push(svg("path", { class: `line line-${s.key}`, d: `M${points.join(" L")}` }));
        } else {
          children.push(
            svg("circle", { class: `dot dot-${s.key}`, cx: x(seg[0].t), cy: y(seg[0][s.key]), r: 2.5 }),
          );
        }
      }
    }
    if (!data.length) {
      children.push(
        svg(
          "text",
          { class: "chart-empty", x: width / 2, y: height / 2, "text-anchor": "middle" },
          "Waiting for the first statistics…",
        ),
      );
    }
    this.cursor = svg("line", {
      class: "cursor",
      x1: 0,
      x2: 0,
      y1: pad.top,
      y2: height - pad.bottom,
      visibility: "hidden",
    });
    children.push(this.cursor);
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.svg.setAttribute("height", String(height));
    this.svg.replaceChildren(...children);

    const latest = {};
    for (const s of this.series) {
      for (let i = data.length - 1; i >= 0; i -= 1) {
        if (Number.isFinite(data[i][s.key])) {
          latest[s.key] = data[i][s.key];
          break;
        }
      }
      setText($(`[data-legend="${s.key}"]`, this.legend), fmt(latest[s.key]));
    }
    if (this.describe) this.svg.setAttribute("aria-label", this.describe(latest));
  }

  hover(e) {
    const g = this.geometry;
    if (!e || !g || !g.data.length) {
      this.tooltip.hidden = true;
      if (this.cursor) this.cursor.setAttribute("visibility", "hidden");
      return;
    }
    const rect = this.svg.getBoundingClientRect();
    const px = ((e.clientX - rect.left) / rect.width) * g.width;
    let best = null;
    for (const d of g.data) if (!best || Math.abs(g.x(d.t) - px) < Math.abs(g.x(best.t) - px)) best = d;
    const cx = g.x(best.t);
    this.cursor.setAttribute("x1", cx);
    this.cursor.setAttribute("x2", cx);
    this.cursor.setAttribute("visibility", "visible");
    this.tooltip.replaceChildren(
      h("div", {
        class: "tooltip-time",
        text: new Date(best.t).toLocaleTimeString() + (best.seed ? " (from job history)" : ""),
      }),
      ...this.series
        .filter((s) => Number.isFinite(best[s.key]))
        .map((s) =>
          h(
            "div",
            null,
            h("span", { class: `swatch swatch-${s.key}` }),
            `${s.label}: `,
            h("strong", { text: fmt(best[s.key]) }),
          ),
        ),
    );
    this.tooltip.hidden = false;
    const left = (cx / g.width) * rect.width;
    this.tooltip.style.left = `${Math.min(Math.max(left, 70), rect.width - 70)}px`;
  }
}

/** The top of the y axis: four grid steps of a round whole number (1, 2, 5, 10, 20, 25, 50, …). */
function niceCeil(v) {
  const raw = Math.max(1, v / 4);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  for (const step of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
    const size = step * magnitude;
    if (size >= raw && Number.isInteger(size)) return size * 4;
  }
  return 10 * magnitude * 4;
}

/** Runs of samples with a value, broken where the dashboard was not listening. */
function segmentsOf(data, key) {
  const segments = [];
  let seg = [];
  let prev = null;
  for (const d of data) {
    if (!Number.isFinite(d[key])) continue;
    const gap = prev ? d.t - prev.t : 0;
    if (prev && gap > (d.seed || prev.seed ? 90000 : 30000)) {
      segments.push(seg);
      seg = [];
    }
    seg.push(d);
    prev = d;
  }
  if (seg.length) segments.push(seg);
  return segments;
}
