// jobwire dashboard: The schedules view: every schedule with its timetable, next run and last run (a
// link to its job), and pause/resume and trigger buttons that ask first.
//
// Schedules have no live events: the list is read again every few seconds and after every action.

import { call, problemText } from "./api.js";
import { h, parseTime, relative, setText, shortId, timeEl, updateTime } from "./format.js";
import { confirmDialog } from "./widgets.js";

const REFRESH_TICKS = 3; // seconds between reads of the list
const PAGE = 200;

function timetable(s) {
  return s.cron !== null ? `${s.cron} (${s.timezone})` : `every ${s.interval_s} s`;
}

export class SchedulesView {
  constructor() {
    this.ticks = 0;
    this.rows = new Map(); // schedule id -> {tr, next, last, ...}
    this.error = h("p", {
      class: "inline-error",
      role: "alert",
      "data-testid": "schedules-error",
      hidden: true,
    });
    this.notice = h("div", {
      class: "action-result",
      role: "status",
      "aria-live": "polite",
      "data-testid": "schedules-notice",
      hidden: true,
    });
    this.body = h("tbody");
    this.empty = h("p", {
      class: "muted empty",
      "data-testid": "schedules-empty",
      text: "No schedules yet. Create one with POST /v1/schedules or jobwire schedules create.",
      hidden: true,
    });
    this.table = h(
      "table",
      { class: "jobs-table", "data-testid": "schedules-table" },
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          ["Name", "Timetable", "Job", "Next run", "Last run", ""].map((t) => h("th", { scope: "col", text: t })),
        ),
      ),
      this.body,
    );
    this.el = h(
      "div",
      { class: "schedules-view", "data-testid": "schedules-view" },
      h("div", { class: "page-head" }, h("h1", { text: "Schedules" })),
      this.error,
      this.notice,
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
    const items = [];
    let cursor = null;
    do {
      const q = new URLSearchParams({ limit: String(PAGE) });
      if (cursor) q.set("cursor", cursor);
      const r = await call("GET", `/v1/schedules?${q}`);
      if (this.disposed) return;
      if (!r.ok) {
        this.error.hidden = false;
        setText(this.error, `Could not load schedules: ${problemText(r)}`);
        return;
      }
      items.push(...r.data.items);
      cursor = r.data.next_cursor;
    } while (cursor);
    this.error.hidden = true;
    this.render(items);
  }

  render(items) {
    const seen = new Set();
    for (const s of items) {
      seen.add(s.id);
      let row = this.rows.get(s.id);
      if (!row) {
        row = this.buildRow(s);
        this.rows.set(s.id, row);
      }
      this.updateRow(row, s);
      this.body.append(row.tr); // keeps the api's order (newest first)
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        this.rows.delete(id);
      }
    }
    this.empty.hidden = items.length > 0;
    this.table.hidden = items.length === 0;
  }

  buildRow(s) {
    const row = {
      name: h("strong", { "data-testid": "schedule-name" }),
      description: h("div", { class: "muted small" }),
      timetable: h("code", { "data-testid": "schedule-timetable" }),
      job: h("code"),
      next: timeEl(null, "schedule-next"),
      paused: h("span", { class: "tag", "data-testid": "schedule-paused", text: "paused" }),
      last: h("span", { "data-testid": "schedule-last" }),
      toggle: h("button", { type: "button", class: "btn btn-small", "data-testid": "schedule-toggle" }),
      trigger: h("button", {
        type: "button",
        class: "btn btn-small",
        "data-testid": "schedule-trigger",
        text: "Run now",
      }),
    };
    row.toggle.addEventListener("click", () => this.togglePaused(row.schedule));
    row.trigger.addEventListener("click", () => this.trigger(row.schedule));
    row.tr = h(
      "tr",
      { "data-testid": "schedule-row", "data-schedule-id": s.id },
      h("td", null, row.name, row.description),
      h("td", null, row.timetable),
      h("td", null, row.job),
      h("td", null, row.next, row.paused),
      h("td", null, row.last),
      h("td", { class: "actions" }, row.toggle, " ", row.trigger),
    );
    return row;
  }

  updateRow(row, s) {
    row.schedule = s;
    setText(row.name, s.name);
    setText(row.description, s.description || "");
    row.description.hidden = !s.description;
    setText(row.timetable, timetable(s));
    setText(row.job, s.job.type);
    row.next.hidden = s.paused;
    row.paused.hidden = !s.paused;
    updateTime(row.next, s.next_run_at);
    setText(row.toggle, s.paused ? "Resume" : "Pause");
    if (row.lastJob !== s.last_job_id || row.lastRun !== s.last_run_at) {
      row.lastJob = s.last_job_id;
      row.lastRun = s.last_run_at;
      row.last.replaceChildren(
        s.last_job_id
          ? h(
              "a",
              { href: `#/jobs/${encodeURIComponent(s.last_job_id)}`, "data-testid": "schedule-last-job" },
              timeEl(s.last_run_at, "schedule-last-run"),
              ` · job ${shortId(s.last_job_id)}`,
            )
          : "never",
      );
    }
  }

  async togglePaused(s) {
    const pausing = !s.paused;
    const ok = await confirmDialog({
      title: pausing ? `Pause ${s.name}?` : `Resume ${s.name}?`,
      body: pausing
        ? "It submits no job until it is resumed."
        : "It runs again from its next slot; the slots that passed while it was paused do not run.",
      ok: pausing ? "Pause" : "Resume",
    });
    if (!ok) return;
    const r = await call("PATCH", `/v1/schedules/${encodeURIComponent(s.id)}`, { body: { paused: pausing } });
    this.report(r, pausing ? `Paused ${s.name}.` : `Resumed ${s.name}.`);
  }

  async trigger(s) {
    const ok = await confirmDialog({
      title: `Run ${s.name} now?`,
      body: `This submits a ${s.job.type} job now, outside its timetable.`,
      ok: "Run now",
    });
    if (!ok) return;
    const r = await call("POST", `/v1/schedules/${encodeURIComponent(s.id)}/trigger`);
    this.report(r, r.ok ? `Submitted job ${shortId(r.data.id)} of ${s.name}.` : "");
  }

  report(r, success) {
    this.notice.hidden = false;
    this.notice.className = `action-result ${r.ok ? "is-ok" : "is-error"}`;
    this.notice.dataset.ok = String(r.ok);
    setText(this.notice, r.ok ? success : problemText(r));
    this.load();
  }

  onEvents() {
    // job events carry no schedule: the next read of the list (within seconds) shows a new last run
  }

  resync() {
    this.load();
  }

  tick() {
    this.ticks += 1;
    const now = Date.now();
    for (const el of this.el.querySelectorAll("time[data-rel]")) {
      if (el.dataset.iso) setText(el, relative(parseTime(el.dataset.iso), now));
    }
    if (this.ticks % REFRESH_TICKS === 0) this.load();
  }
}
