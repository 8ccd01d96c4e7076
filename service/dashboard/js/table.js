// jobwire dashboard: The job table (rows keyed by id, updated in place) and JobList, a page of GET /v1/jobs kept current
// by the feed.

import { call } from "./api.js";
import { REFRESH_MIN_INTERVAL_MS, TERMINAL } from "./constants.js";
import {
  absolute,
  duration,
  h,
  parseTime,
  relative,
  setText,
  shortId,
  tenantOf,
  tenants,
  timeEl,
  updateTime,
} from "./format.js";
import { applyEvent, mergeFetched } from "./jobstate.js";
import { learnTenant } from "./main.js";
import { session } from "./session.js";

export function statusBadge(status, testid = "job-status") {
  return h("span", { class: `badge status-${status}`, "data-testid": testid, text: status });
}

export function progressBar(label) {
  const fill = h("span", { class: "progress-fill" });
  const bar = h(
    "span",
    {
      class: "progress",
      role: "progressbar",
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": "0",
      "aria-label": label,
      "data-testid": "job-progress",
    },
    fill,
  );
  return { bar, fill };
}

export function setProgress(parts, job) {
  const pct = Math.max(0, Math.min(100, Number(job.progress) || 0));
  const value = String(Math.round(pct * 10) / 10);
  if (parts.bar.getAttribute("aria-valuenow") !== value) {
    parts.bar.setAttribute("aria-valuenow", value);
    parts.bar.setAttribute("aria-valuetext", `${Math.round(pct)} %`);
    parts.fill.style.transform = `scaleX(${pct / 100})`;
  }
  parts.bar.dataset.status = job.status;
}

export function progressNote(job) {
  if (job.status === "failed" && job.error) return `${job.error.type}: ${job.error.message}`;
  if (job.status === "pending" && job.error && job.attempts) return `retrying after ${job.error.type}`;
  if (job.status === "cancelled") return job.message || "cancelled";
  if (job.status === "pending" && !job.message) return "waiting for a worker";
  if (job.status === "scheduled") return `runs ${absolute(job.run_at)}`;
  if (job.status === "running" && !job.message) return "started";
  return job.message || "";
}

export function jobDuration(job, now = Date.now()) {
  const started = parseTime(job.started_at);
  if (!Number.isFinite(started)) {
    if (job.status === "scheduled") return `runs ${relative(parseTime(job.run_at), now)}`;
    return job.status === "pending"
      ? `queued ${relative(parseTime(job.created_at), now).replace(" ago", "")}`
      : "—";
  }
  const end = TERMINAL.has(job.status) ? parseTime(job.finished_at) : now;
  return duration((Number.isFinite(end) ? end : now) - started);
}

/** The columns a job table can have: a header, the cell's class, and how it is built and patched. */
const COLUMNS = {
  status: { head: "Status", cls: "cell-status" },
  job: { head: "Job", cls: "cell-job" },
  tenant: { head: "Tenant", cls: "cell-tenant" },
  progress: { head: "Progress", cls: "cell-progress" },
  error: { head: "Error", cls: "cell-error" },
  attempts: { head: "Attempts", cls: "cell-num" },
  created: { head: "Created", cls: "cell-time" },
  finished: { head: "Finished", cls: "cell-time" },
  duration: { head: "Duration", cls: "cell-num cell-duration" },
};

export class JobTable {
  constructor({ columns, compact = false, empty = "No jobs yet." }) {
    this.columns = columns.filter((c) => c !== "tenant" || session.admin);
    this.rows = new Map();
    this.tbody = h("tbody");
    this.table = h(
      "table",
      { class: `jobs-table${compact ? " compact" : ""}`, "data-testid": "jobs-table" },
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          this.columns.map((c) => h("th", { scope: "col", class: COLUMNS[c].cls, text: COLUMNS[c].head })),
        ),
      ),
      this.tbody,
    );
    this.emptyEl = h("div", { class: "empty", "data-testid": "jobs-empty", text: empty });
    this.el = h("div", { class: "table-wrap" }, this.table, this.emptyEl);
    this.setJobs([]);
  }

  get(id) {
    const row = this.rows.get(id);
    return row ? row.job : undefined;
  }

  setEmptyText(text) {
    setText(this.emptyEl, text);
  }

  /** Keyed reconcile: rows are reused by job id, moved only when out of place. */
  setJobs(jobs, { highlightNew = false } = {}) {
    const seen = new Set();
    let prev = null;
    for (const job of jobs) {
      let row = this.rows.get(job.id);
      if (!row) {
        row = this.createRow(job);
        this.rows.set(job.id, row);
        if (highlightNew) row.tr.classList.add("row-new");
      } else {
        row.job = job;
      }
      this.patch(row);
      seen.add(job.id);
      const expected = prev ? prev.tr.nextSibling : this.tbody.firstChild;
      if (expected !== row.tr) this.tbody.insertBefore(row.tr, expected);
      prev = row;
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        this.rows.delete(id);
      }
    }
    this.table.hidden = jobs.length === 0;
    this.emptyEl.hidden = jobs.length > 0;
  }

  createRow(job) {
    const row = { job, last: {}, cells: {} };
    const cells = row.cells;
    const tds = this.columns.map((column) => {
      const td = h("td", { class: COLUMNS[column].cls });
      if (column === "status") {
        cells.status = h("span", { class: "badge", "data-testid": "job-status" });
        td.append(cells.status);
      } else if (column === "job") {
        cells.type = h("span", { class: "job-type" });
        cells.priority = h("span", { class: "tag tag-high", text: "high", hidden: true });
        const link = h(
          "a",
          { class: "job-link", href: `#/jobs/${job.id}`, "aria-label": `Job ${job.id}` },
          cells.type,
          h("span", { class: "job-id mono", title: job.id, text: shortId(job.id) }),
        );
        td.append(link, cells.priority);
      } else if (column === "progress") {
        cells.progress = progressBar(`Progress of job ${job.id}`);
        cells.pct = h("span", { class: "pct", "data-testid": "job-percent" });
        cells.note = h("span", { class: "progress-note", "data-testid": "job-message" });
        td.append(h("span", { class: "progress-line" }, cells.progress.bar, cells.pct), cells.note);
      } else if (column === "created" || column === "finished") {
        cells[column] = timeEl(null);
        td.append(cells[column]);
      } else {
        cells[column] = td;
        if (column === "tenant") td.dataset.testid = "job-tenant";
        if (column === "error") td.dataset.testid = "job-error";
      }
      return td;
    });
    row.tr = h("tr", { "data-testid": "job-row", "data-job-id": job.id }, tds);
    row.tr.addEventListener("click", (e) => {
      if (e.target.closest("a, button") || getSelection().toString()) return;
      location.hash = `#/jobs/${job.id}`;
    });
    return row;
  }

  patch(row) {
    const { job, last, cells } = row;
    if (last.status !== job.status) {
      row.tr.dataset.status = job.status;
      if (cells.status) {
        cells.status.className = `badge status-${job.status}`;
        setText(cells.status, job.status);
      }
      last.status = job.status;
    }
    if (cells.type) {
      setText(cells.type, job.type || "…");
      cells.priority.hidden = job.priority !== "high";
    }
    if (cells.progress) {
      setProgress(cells.progress, job);
      setText(cells.pct, `${Math.round(Number(job.progress) || 0)}%`);
      const note = progressNote(job);
      setText(cells.note, note);
      cells.note.title = note;
      cells.note.classList.toggle("is-error", job.status === "failed");
    }
    if (cells.error) {
      const text = job.error ? `${job.error.type}: ${job.error.message}` : "";
      setText(cells.error, text);
      cells.error.title = text;
    }
    if (cells.tenant) setText(cells.tenant, tenantOf(job) || "—");
    if (cells.attempts) setText(cells.attempts, `${job.attempts ?? 0}/${job.max_attempts ?? "?"}`);
    if (cells.created) updateTime(cells.created, job.created_at);
    if (cells.finished) updateTime(cells.finished, job.finished_at);
    if (cells.duration) setText(cells.duration, jobDuration(job));
  }

  update(id) {
    const row = this.rows.get(id);
    if (row) this.patch(row);
  }

  tick() {
    const now = Date.now();
    for (const row of this.rows.values()) {
      for (const el of [row.cells.created, row.cells.finished]) {
        if (el && el.dataset.iso) setText(el, relative(parseTime(el.dataset.iso), now));
      }
      if (row.cells.duration && !TERMINAL.has(row.job.status))
        setText(row.cells.duration, jobDuration(row.job, now));
    }
  }
}

// ---- a live list of jobs: a page of GET /v1/jobs kept current by the feed ---------------------

export class JobList {
  constructor(table, { limit, onChange = () => {}, onError = () => {} }) {
    this.table = table;
    this.limit = limit;
    this.filters = { status: [], type: "", tenant: "", label: [] };
    this.cursors = [null]; // cursor of each page visited; page 0 is the live head
    this.next = null;
    this.loaded = false;
    this.inflight = false;
    this.dirty = false;
    this.timer = 0;
    this.lastFetch = 0;
    this.generation = 0;
    this.onChange = onChange;
    this.onError = onError;
    this.disposed = false;
  }

  get page() {
    return this.cursors.length - 1;
  }

  get isLive() {
    return this.page === 0;
  }

  setFilters(filters) {
    this.filters = { ...this.filters, ...filters };
    this.cursors = [null];
    this.generation += 1;
    this.load();
  }

  older() {
    if (!this.next) return;
    this.cursors.push(this.next);
    this.generation += 1;
    this.load();
  }

  newer() {
    if (this.cursors.length > 1) this.cursors.pop();
    this.generation += 1;
    this.load();
  }

  newest() {
    this.cursors = [null];
    this.generation += 1;
    this.load();
  }

  query() {
    const q = new URLSearchParams({ limit: String(this.limit) });
    if (this.filters.status.length) q.set("status", this.filters.status.join(","));
    if (this.filters.type) q.set("type", this.filters.type);
    if (this.filters.tenant) q.set("tenant", this.filters.tenant);
    for (const label of this.filters.label) q.append("label", label);
    const cursor = this.cursors[this.cursors.length - 1];
    if (cursor) q.set("cursor", cursor);
    return q;
  }

  async load() {
    if (this.inflight) {
      this.dirty = true;
      return;
    }
    this.inflight = true;
    this.dirty = false;
    clearTimeout(this.timer);
    this.timer = 0;
    const generation = this.generation;
    const startedAt = performance.now();
    this.lastFetch = startedAt;
    const r = await call("GET", `/v1/jobs?${this.query()}`);
    this.inflight = false;
    if (this.disposed) return;
    if (generation === this.generation) {
      if (r.ok) {
        const items = r.data.items.map((job) => mergeFetched(job, this.table.get(job.id), startedAt));
        this.next = r.data.next_cursor;
        this.table.setJobs(items, { highlightNew: this.loaded && this.isLive });
        this.loaded = true;
        if (!session.admin && !session.tenant && items.length) learnTenant(items[0]);
        this.onChange();
      } else if (r.status !== 401) {
        this.onError(r);
        // rate-limited, or the database is down for a moment: try again when the api says
        if (r.status === 429 || r.status === 503)
          this.retryTimer = setTimeout(() => this.refreshSoon(0), (r.retryAfter || 2) * 1000);
      }
    } else {
      this.dirty = true; // filters or page changed while this was in flight
    }
    if (this.dirty) this.refreshSoon(generation === this.generation ? REFRESH_MIN_INTERVAL_MS : 0);
  }

  /** A throttled reload: the live head at most every REFRESH_MIN_INTERVAL_MS. */
  refreshSoon(minInterval = REFRESH_MIN_INTERVAL_MS) {
    if (this.disposed) return;
    if (this.inflight) {
      this.dirty = true;
      return;
    }
    if (this.timer) return;
    const wait = Math.max(0, this.lastFetch + minInterval - performance.now());
    this.timer = setTimeout(() => {
      this.timer = 0;
      this.load();
    }, wait);
  }

  matchesStatus(status) {
    return !this.filters.status.length || this.filters.status.includes(status);
  }

  /** Feed events, grouped by job: keyed row updates; new jobs fetch the head again. */
  onEvents(events) {
    let refresh = false;
    for (const [id, list] of events) {
      const job = this.table.get(id);
      if (job) {
        let changed = false;
        for (const ev of list) changed = applyEvent(job, ev) || changed;
        if (changed) {
          this.table.update(id);
          if (this.isLive && !this.matchesStatus(job.status)) refresh = true; // it left the filter
        }
      } else if (this.isLive && this.mayBelong(id, list)) {
        refresh = true;
      }
    }
    if (refresh) this.refreshSoon();
  }

  /** Could an event of a job not on the page put it on the live head? */
  mayBelong(id, list) {
    if (this.filters.tenant && tenants.get(id) && tenants.get(id) !== this.filters.tenant) return false;
    return list.some((ev) => {
      if (ev.type === "created") return this.matchesStatus(ev.status);
      // a job entering the status filter (e.g. started, with "running" selected)
      return this.filters.status.length > 0 && ev.type !== "progress" && this.matchesStatus(ev.status);
    });
  }

  dispose() {
    this.disposed = true;
    clearTimeout(this.timer);
    clearTimeout(this.retryTimer);
  }
}
