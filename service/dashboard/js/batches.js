// jobwire dashboard: Batches: the list of batches (progress bar and counts each), and one batch (its
// progress bar, counts, its jobs, and a cancel button that asks first, saying how many jobs it ends).
//
// A batch's counts and progress are one small answer: the views read them again every second while
// a batch runs (and after every action), rather than following its jobs' events one by one.

import { call, problemText } from "./api.js";
import { h, parseTime, relative, setText, shortId, timeEl, updateTime } from "./format.js";
import { progressBar, setProgress, statusBadge } from "./table.js";
import { confirmDialog } from "./widgets.js";

const COUNTED = ["scheduled", "waiting", "pending", "running", "completed", "failed", "cancelled"];
const UNFINISHED = ["scheduled", "waiting", "pending", "running"];
const PAGE = 50;
const JOBS_PAGE = 200;

function countsText(counts) {
  return COUNTED.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`).join(" · ") || "no jobs";
}

function unfinished(batch) {
  return UNFINISHED.reduce((n, s) => n + (batch.counts[s] || 0), 0);
}

// the bar's colour follows the batch, and a settled batch with failures shows as failed
function barState(batch) {
  if (batch.status === "running") return { status: "running", progress: batch.progress };
  const failed = batch.counts.failed || (batch.status === "cancelled" ? 1 : 0);
  return { status: failed ? (batch.status === "cancelled" ? "cancelled" : "failed") : "completed", progress: batch.progress };
}

function tickTimes(root) {
  const now = Date.now();
  for (const el of root.querySelectorAll("time[data-rel]")) {
    if (el.dataset.iso) setText(el, relative(parseTime(el.dataset.iso), now));
  }
}

export class BatchesView {
  constructor() {
    this.rows = new Map(); // batch id -> row
    this.error = h("p", { class: "inline-error", role: "alert", "data-testid": "batches-error", hidden: true });
    this.body = h("tbody");
    this.empty = h("p", {
      class: "muted empty",
      "data-testid": "batches-empty",
      text: "No batches yet. Submit one with POST /v1/batches or jobwire batch submit FILE.jsonl.",
      hidden: true,
    });
    this.table = h(
      "table",
      { class: "jobs-table", "data-testid": "batches-table" },
      h(
        "thead",
        null,
        h("tr", null, ["Batch", "Status", "Progress", "Counts", "Created"].map((t) => h("th", { scope: "col", text: t }))),
      ),
      this.body,
    );
    this.el = h(
      "div",
      { class: "batches-view", "data-testid": "batches-view" },
      h("div", { class: "page-head" }, h("h1", { text: "Batches" })),
      this.error,
      h("div", { class: "card card-flush" }, h("div", { class: "table-wrap" }, this.table, this.empty)),
    );
  }

  mount(main) {
    main.replaceChildren(this.el);
    this.load();
  }

  unmount() {
    this.disposed = true;
  }

  async load() {
    const r = await call("GET", `/v1/batches?${new URLSearchParams({ limit: String(PAGE) })}`);
    if (this.disposed) return;
    if (!r.ok) {
      this.error.hidden = false;
      setText(this.error, `Could not load batches: ${problemText(r)}`);
      return;
    }
    this.error.hidden = true;
    const items = r.data.items;
    const seen = new Set();
    for (const b of items) {
      seen.add(b.id);
      let row = this.rows.get(b.id);
      if (!row) {
        row = this.buildRow(b);
        this.rows.set(b.id, row);
      }
      this.updateRow(row, b);
      this.body.append(row.tr); // the api's order: newest first
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        this.rows.delete(id);
      }
    }
    this.empty.hidden = items.length > 0;
    this.table.hidden = items.length === 0;
    this.running = items.some((b) => b.status === "running" || !b.finished_at);
  }

  buildRow(b) {
    const row = {
      status: h("span"),
      progress: progressBar(`Progress of batch ${b.id}`),
      pct: h("span", { class: "muted small" }),
      counts: h("span", { "data-testid": "batch-counts" }),
      created: timeEl(b.created_at, "batch-created"),
    };
    row.tr = h(
      "tr",
      { "data-testid": "batch-row", "data-batch-id": b.id },
      h(
        "td",
        null,
        h("a", { href: `#/batches/${encodeURIComponent(b.id)}`, "data-testid": "batch-link", text: shortId(b.id) }),
        h("div", { class: "muted small", text: `${b.total} jobs` }),
      ),
      h("td", null, row.status),
      h("td", null, h("div", { class: "progress-line" }, row.progress.bar, row.pct)),
      h("td", null, row.counts),
      h("td", null, row.created),
    );
    return row;
  }

  updateRow(row, b) {
    row.status.replaceChildren(statusBadge(b.status, "batch-status"));
    setProgress(row.progress, barState(b));
    setText(row.pct, `${Math.round(b.progress)}%`);
    setText(row.counts, countsText(b.counts));
  }

  onEvents() {
    // batches are read again every second while one runs (tick)
  }

  resync() {
    this.load();
  }

  tick() {
    tickTimes(this.el);
    if (this.running) this.load();
  }
}

export class BatchView {
  constructor(id) {
    this.id = id;
    this.jobRows = new Map();
    this.error = h("p", { class: "inline-error", role: "alert", "data-testid": "batch-error", hidden: true });
    this.notice = h("div", {
      class: "action-result",
      role: "status",
      "aria-live": "polite",
      "data-testid": "batch-notice",
      hidden: true,
    });
    this.status = h("span");
    this.progress = progressBar(`Progress of batch ${id}`);
    this.pct = h("span", { "data-testid": "batch-progress-text" });
    this.countCells = new Map(
      COUNTED.map((s) => [s, h("dd", { "data-testid": `batch-count-${s}`, text: "0" })]),
    );
    this.finished = timeEl(null, "batch-finished");
    this.cancelButton = h("button", {
      type: "button",
      class: "btn btn-danger",
      "data-testid": "batch-cancel",
      text: "Cancel batch",
    });
    this.cancelButton.addEventListener("click", () => this.cancel());
    this.jobsBody = h("tbody");
    this.el = h(
      "div",
      { class: "batch-view", "data-testid": "batch-view" },
      h(
        "div",
        { class: "page-head" },
        h("h1", null, "Batch ", h("code", { text: shortId(id) })),
        this.status,
        h("div", { class: "page-actions" }, this.cancelButton),
      ),
      this.error,
      this.notice,
      h(
        "section",
        { class: "card", "aria-label": "Progress" },
        h("div", { class: "progress-line progress-line-large" }, this.progress.bar, this.pct),
        h(
          "dl",
          { class: "batch-counts" },
          ...COUNTED.flatMap((s) => [h("dt", { text: s }), this.countCells.get(s)]),
        ),
        h("p", { class: "muted small" }, "Finished ", this.finished),
      ),
      h(
        "section",
        { class: "card card-flush", "aria-label": "Jobs" },
        h("h2", { class: "card-title", text: "Jobs" }),
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "jobs-table", "data-testid": "batch-jobs" },
            h("thead", null, h("tr", null, ["Job", "Type", "Status", "Progress"].map((t) => h("th", { scope: "col", text: t })))),
            this.jobsBody,
          ),
        ),
      ),
    );
  }

  mount(main) {
    main.replaceChildren(this.el);
    this.load();
  }

  unmount() {
    this.disposed = true;
  }

  async load() {
    const r = await call("GET", `/v1/batches/${encodeURIComponent(this.id)}`);
    if (this.disposed) return;
    if (!r.ok) {
      this.error.hidden = false;
      setText(this.error, r.status === 404 ? `No batch ${this.id}.` : `Could not load the batch: ${problemText(r)}`);
      return;
    }
    this.error.hidden = true;
    this.render(r.data);
    await this.loadJobs();
  }

  render(b) {
    this.batch = b;
    this.status.replaceChildren(statusBadge(b.status, "batch-status"));
    setProgress(this.progress, barState(b));
    setText(this.pct, `${Math.round(b.progress * 10) / 10}%`);
    for (const [s, cell] of this.countCells) setText(cell, String(b.counts[s] || 0));
    updateTime(this.finished, b.finished_at);
    this.cancelButton.hidden = b.status !== "running";
  }

  async loadJobs() {
    const items = [];
    let cursor = null;
    do {
      const q = new URLSearchParams({ batch_id: this.id, limit: String(JOBS_PAGE) });
      if (cursor) q.set("cursor", cursor);
      const r = await call("GET", `/v1/jobs?${q}`);
      if (this.disposed || !r.ok) return;
      items.push(...r.data.items);
      cursor = r.data.next_cursor;
    } while (cursor);
    for (const job of items) {
      let row = this.jobRows.get(job.id);
      if (!row) {
        row = { status: h("span"), progress: progressBar(`Progress of job ${job.id}`) };
        row.tr = h(
          "tr",
          { "data-testid": "batch-job-row", "data-job-id": job.id },
          h("td", null, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, text: shortId(job.id) })),
          h("td", null, h("code", { text: job.type })),
          h("td", null, row.status),
          h("td", null, row.progress.bar),
        );
        this.jobRows.set(job.id, row);
        this.jobsBody.append(row.tr);
      }
      row.status.replaceChildren(statusBadge(job.status));
      setProgress(row.progress, job);
    }
  }

  async cancel() {
    const b = this.batch;
    if (!b) return;
    const n = unfinished(b);
    const ok = await confirmDialog({
      title: `Cancel this batch?`,
      body: `This cancels its ${n.toLocaleString()} unfinished job${n === 1 ? "" : "s"} (running ones are interrupted). Finished jobs stay as they are.`,
      ok: `Cancel ${n.toLocaleString()} job${n === 1 ? "" : "s"}`,
      danger: true,
    });
    if (!ok) return;
    const r = await call("POST", `/v1/batches/${encodeURIComponent(this.id)}/cancel`);
    this.notice.hidden = false;
    this.notice.className = `action-result ${r.ok ? "is-ok" : "is-error"}`;
    this.notice.dataset.ok = String(r.ok);
    setText(this.notice, r.ok ? `Cancelled the batch: ${countsText(r.data.counts)}.` : problemText(r));
    this.load();
  }

  onEvents() {}

  resync() {
    this.load();
  }

  tick() {
    tickTimes(this.el);
    if (this.batch && !this.batch.finished_at) this.load();
  }
}
