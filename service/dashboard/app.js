// jobwire dashboard: a single ES module, no build step, no dependencies.
//
// Data flow: REST (/v1/jobs…) for snapshots, one WebSocket (/v1/ws, subscribe all) for everything
// live. Incoming frames are queued and applied once per animation frame (coalesced per job, keyed
// row updates), so a busy deployment costs one DOM pass per frame, not one per event. After the
// socket reconnects, or when the server says {"op": "resync"}, the visible view is fetched again.

"use strict";

// ---- constants ----------------------------------------------------------------------------------

const KEY_STORAGE = "jobwire.dashboard.key";
const SAMPLES_STORAGE = "jobwire.dashboard.samples";
const STATUSES = ["pending", "running", "completed", "failed", "cancelled"];
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const PAGE_SIZE = 50;
const RUNNING_SIZE = 8;
const FAILURES_SIZE = 6;
const HOUR_MS = 60 * 60 * 1000;
const REFRESH_MIN_INTERVAL_MS = 500; // at most two list refreshes a second, however busy the feed
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;
const SILENCE_LIMIT_MS = 20000; // stats arrive every 5 s: this long without a frame means a dead socket
const INBOX_LIMIT = 20000; // queued events while the tab sleeps; past this, drop them and resync
// A tenant name can never contain spaces or parentheses: only an admin key may list "another" tenant.
const ADMIN_PROBE_TENANT = "(admin check)";

// ---- small helpers ------------------------------------------------------------------------------

const $ = (selector, root = document) => root.querySelector(selector);

/** Builds an element. Text is always set as text, never parsed as HTML. */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const number = new Intl.NumberFormat();
const fmt = (n) => (n === null || n === undefined ? "—" : number.format(n));
// ids are UUIDv7: the leading digits are a timestamp shared by every job of the day, the tail is random
const shortId = (id) => `…${String(id).slice(-8)}`;
const parseTime = (iso) => (iso ? Date.parse(iso) : NaN);
const isUuid = (text) => /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i.test(text);

function relative(ms, now = Date.now()) {
  if (!Number.isFinite(ms)) return "—";
  const diff = Math.round((now - ms) / 1000);
  const future = diff < 0;
  const s = Math.abs(diff);
  let text;
  if (s < 5) return future ? "in a moment" : "just now";
  if (s < 60) text = `${s} s`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h`;
  else text = `${Math.floor(s / 86400)} d`;
  return future ? `in ${text}` : `${text} ago`;
}

function duration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function absolute(iso) {
  const t = parseTime(iso);
  return Number.isFinite(t) ? new Date(t).toLocaleString() : "";
}

/** A <time> showing "3 min ago", kept fresh by the ticker. */
function timeEl(iso, testid) {
  const el = h("time", { "data-rel": "", "data-testid": testid });
  updateTime(el, iso);
  return el;
}

function updateTime(el, iso) {
  if (el.dataset.iso === (iso || "")) return;
  el.dataset.iso = iso || "";
  if (iso) {
    el.setAttribute("datetime", iso);
    el.title = absolute(iso);
  } else {
    el.removeAttribute("datetime");
    el.removeAttribute("title");
  }
  setText(el, iso ? relative(parseTime(iso)) : "—");
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

/** The tenant a job belongs to, for admin views. The job representation does not carry it, but the
 * job-scoped stream token in `events_url` names it (`<job>|<tenant>|<expiry>`, base64url, signed). */
function tenantOf(job) {
  if (job.tenant) return job.tenant;
  const known = tenants.get(job.id);
  if (known) return known;
  const match = /[?&]token=([^&]+)/.exec(job.events_url || "");
  if (!match) return null;
  try {
    const payload = decodeURIComponent(match[1]).split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
    const [id, tenant] = atob(payload).split("|");
    if (id === job.id && tenant) {
      tenants.set(job.id, tenant);
      return tenant;
    }
  } catch {
    /* not a token we can read: fine, the column shows a dash */
  }
  return null;
}

const tenants = new Map(); // job id -> tenant, from admin feed frames and tokens
function rememberTenant(id, tenant) {
  if (!tenant) return;
  if (tenants.size > 50000) tenants.clear();
  tenants.set(id, tenant);
}

// ---- session --------------------------------------------------------------------------------------

const session = {
  key: null,
  admin: false,
  tenant: null, // for tenant keys, once a job names it
};

// ---- the API ----------------------------------------------------------------------------------------

/** One request; never throws. Returns {status, ok, data} (status 0: the api did not answer). */
async function call(method, path, { body, key } = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${key || session.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (err) {
    return { status: 0, ok: false, data: { detail: "the api did not answer (network error)" } };
  }
  let data = null;
  const text = await res.text().catch(() => "");
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text.slice(0, 500) };
    }
  }
  if (res.status === 401 && !key && session.key) {
    signOut("The api no longer accepts this key (401 Unauthorized). Sign in again.");
  }
  return {
    status: res.status,
    ok: res.ok,
    statusText: res.statusText,
    data,
    etag: res.headers.get("ETag"),
    retryAfter: Number(res.headers.get("Retry-After")) || null,
  };
}

/** "409 Conflict: the job is completed; …" from a problem+json answer. */
function problemText(r) {
  if (r.status === 0) return "The api is unreachable: no answer (network error).";
  const d = r.data || {};
  const title = d.title || r.statusText || "Error";
  return d.detail ? `${r.status} ${title}: ${d.detail}` : `${r.status} ${title}`;
}

// ---- live connection ----------------------------------------------------------------------------

const live = {
  ws: null,
  stopped: true,
  attempt: 0,
  timer: 0,
  watchdog: 0,
  lastFrame: 0,
  everSubscribed: false,
  nextAttemptAt: 0,
  followed: new Map(), // job id -> seq of the last event received (resubscribed with `since`)

  start() {
    this.stopped = false;
    this.attempt = 0;
    this.everSubscribed = false;
    this.open();
    clearInterval(this.watchdog);
    this.watchdog = setInterval(() => this.checkSilence(), 5000);
  },

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.watchdog);
    this.followed.clear();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      ws.close(1000, "signed out");
    }
  },

  open() {
    clearTimeout(this.timer);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/v1/ws?token=${encodeURIComponent(session.key)}`);
    this.ws = ws;
    if (!this.everSubscribed) setConnection("connecting");
    ws.onopen = () => {
      this.lastFrame = Date.now();
      ws.send(JSON.stringify({ op: "subscribe", all: true }));
      for (const [id, seq] of this.followed) {
        ws.send(JSON.stringify({ op: "subscribe", jobs: [id], since: { [id]: seq } }));
      }
    };
    ws.onmessage = (e) => {
      this.lastFrame = Date.now();
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return;
      }
      onLiveMessage(msg);
    };
    ws.onerror = () => {}; // a close event follows
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!this.stopped) this.reconnectLater(e);
    };
  },

  subscribed() {
    this.attempt = 0;
    this.everSubscribed = true;
    setConnection("live");
  },

  reconnectLater(closeEvent) {
    // exponential backoff with jitter: 0.5-1 × min(max, base × 2^attempt)
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    this.attempt += 1;
    this.nextAttemptAt = Date.now() + delay;
    setConnection("reconnecting", closeEvent);
    this.timer = setTimeout(() => this.open(), delay);
    if (this.attempt === 3) checkKeyStillValid();
  },

  reconnectNow() {
    if (this.stopped) return;
    if (this.ws) this.drop();
    clearTimeout(this.timer);
    this.open();
  },

  /** Abandon the current socket (dead or silent) and reconnect on the backoff schedule. */
  drop() {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
    try {
      ws.close(4000, "no frames");
    } catch {
      /* already closing */
    }
    if (!this.stopped) this.reconnectLater({ code: 4000, reason: "no frames from the server" });
  },

  checkSilence() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && Date.now() - this.lastFrame > SILENCE_LIMIT_MS) {
      this.drop();
    }
  },

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  },

  follow(id, since = 0) {
    this.followed.set(id, since);
    this.send({ op: "subscribe", jobs: [id], since: { [id]: since } });
  },

  unfollow(id) {
    if (!this.followed.delete(id)) return;
    this.send({ op: "unsubscribe", jobs: [id] });
  },
};

async function checkKeyStillValid() {
  const r = await call("GET", "/v1/jobs?limit=1"); // a 401 signs out (see call)
  return r.status !== 401;
}

function setConnection(state, closeEvent) {
  $("#app").dataset.connection = state;
  const pill = $("#connection");
  pill.dataset.state = state;
  const text = { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…" }[state] || state;
  setText($(".conn-text", pill), text);
  pill.title =
    state === "live"
      ? "Receiving live updates over a WebSocket"
      : state === "reconnecting"
        ? "The live connection dropped"
        : "";
  const banner = $("#banner");
  if (state === "reconnecting") {
    const reason = closeEvent && closeEvent.reason ? ` (${closeEvent.reason})` : "";
    banner.hidden = false;
    banner.replaceChildren(
      h("span", { class: "spinner", "aria-hidden": "true" }),
      h("strong", { text: "Connection lost, reconnecting" }),
      h("span", { class: "banner-detail", "data-countdown": "", text: "" }),
      h("span", { class: "muted", text: reason }),
      h("button", {
        type: "button",
        class: "btn btn-small",
        onclick: () => live.reconnectNow(),
        text: "Reconnect now",
      }),
    );
    updateCountdown();
  } else {
    banner.hidden = true;
    banner.replaceChildren();
  }
}

function updateCountdown() {
  const el = $("#banner [data-countdown]");
  if (!el) return;
  const s = Math.max(0, Math.ceil((live.nextAttemptAt - Date.now()) / 1000));
  setText(
    el,
    live.ws ? "trying now…" : `next attempt ${s > 0 ? `in ${s} s` : "now"} (attempt ${live.attempt})`,
  );
}

// ---- the inbox: frames queued, applied once per animation frame --------------------------------

const inbox = {
  events: new Map(), // job id -> [events], consecutive progress events coalesced
  count: 0,
  stats: null,
  overflow: false,
  frame: 0,
};

function onLiveMessage(msg) {
  switch (msg.op) {
    case "event":
      queueEvent(msg.event, msg.tenant);
      break;
    case "stats":
      // recorded at once (a hidden tab runs no animation frames, and the chart must not have a hole)
      onStats(msg.queues || {});
      inbox.stats = msg.queues || {};
      scheduleFrame();
      break;
    case "subscribed":
      if (msg.all) {
        live.subscribed();
        // the view's first fetch may predate the subscription, and after a reconnect anything could
        // have changed while we were away: fetch again now that the feed covers every change
        resync();
      }
      break;
    case "resync":
      resync();
      break;
    case "error":
      if (!/^no job /.test(msg.detail || "")) console.warn("jobwire websocket:", msg.detail);
      break;
    default:
      break;
  }
}

function queueEvent(event, tenant) {
  if (!event || !event.job_id) return;
  rememberTenant(event.job_id, tenant);
  const id = event.job_id;
  if (live.followed.has(id) && event.seq > live.followed.get(id)) live.followed.set(id, event.seq);
  let list = inbox.events.get(id);
  if (!list) inbox.events.set(id, (list = []));
  const last = list[list.length - 1];
  if (last && last.type === "progress" && event.type === "progress" && !live.followed.has(id)) {
    list[list.length - 1] = event; // only the newest progress matters to a table row
  } else {
    list.push(event);
    inbox.count += 1;
  }
  if (inbox.count > INBOX_LIMIT) {
    // the tab slept through a flood: drop the backlog and fetch the view again instead (but keep the
    // events of followed jobs: their timelines are built from them, and they are few)
    for (const key of [...inbox.events.keys()]) if (!live.followed.has(key)) inbox.events.delete(key);
    inbox.count = [...inbox.events.values()].reduce((n, l) => n + l.length, 0);
    inbox.overflow = true;
  }
  scheduleFrame();
}

function scheduleFrame() {
  if (inbox.frame) return;
  inbox.frame = requestAnimationFrame(flush);
}

function flush() {
  inbox.frame = 0;
  const events = inbox.events;
  const stats = inbox.stats;
  const overflow = inbox.overflow;
  inbox.events = new Map();
  inbox.count = 0;
  inbox.stats = null;
  inbox.overflow = false;
  if (!current) return;
  if (events.size) current.onEvents(events);
  if (overflow) resync();
  if (stats && current.onStats) current.onStats(stats);
}

function resync() {
  if (current && current.resync) current.resync();
}

// ---- job state --------------------------------------------------------------------------------

/** Applies one feed event to a job object; false if it was not newer than what the job has. */
function applyEvent(job, ev) {
  if (job._seq !== undefined && ev.seq <= job._seq) return false;
  const before = job.status;
  job._seq = ev.seq;
  job._eventAt = performance.now();
  job.status = ev.status;
  job.progress = ev.progress;
  job.message = ev.message;
  switch (ev.type) {
    case "started":
      job.started_at = ev.at;
      job.finished_at = null;
      job.attempts = (job.attempts || 0) + 1;
      break;
    case "retrying":
      job.finished_at = null;
      if (ev.error) job.error = ev.error;
      if (TERMINAL.has(before)) job.attempts = 0; // an explicit retry: a fresh attempt budget
      break;
    case "completed":
      job.finished_at = ev.at;
      if ("result" in ev) job.result = ev.result;
      break;
    case "failed":
      job.finished_at = ev.at;
      if (ev.error) job.error = ev.error;
      break;
    case "cancelled":
      job.finished_at = ev.at;
      break;
    default:
      break;
  }
  return true;
}

const LIVE_FIELDS = [
  "status",
  "progress",
  "message",
  "result",
  "error",
  "attempts",
  "started_at",
  "finished_at",
];

/** A fetched job, merged with what the feed told us meanwhile. With the job's event seq (from its
 * ETag) the newer of the two wins. Without it (lists), an event received after the fetch was sent
 * may be newer than the answer, so its fields win; one received before cannot be. */
function mergeFetched(fresh, known, fetchStartedAt, seq) {
  const keepKnown = () => {
    for (const field of LIVE_FIELDS) fresh[field] = known[field];
    fresh._eventAt = known._eventAt;
  };
  if (Number.isFinite(seq)) {
    fresh._seq = seq;
    if (known && known._seq !== undefined && known._seq > seq) {
      keepKnown();
      fresh._seq = known._seq;
    }
    return fresh;
  }
  if (!known) return fresh;
  fresh._seq = known._seq;
  if (known._eventAt !== undefined && known._eventAt > fetchStartedAt) keepKnown();
  return fresh;
}

/** The seq of a job's last event, from the weak ETag of GET /v1/jobs/{id} (W/"<seq>"). */
function seqOfEtag(etag) {
  const match = /^W\/"(\d+)"$/.exec(etag || "");
  return match ? Number(match[1]) : undefined;
}

// ---- job table ----------------------------------------------------------------------------------

function statusBadge(status, testid = "job-status") {
  return h("span", { class: `badge status-${status}`, "data-testid": testid, text: status });
}

function progressBar(label) {
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

function setProgress(parts, job) {
  const pct = Math.max(0, Math.min(100, Number(job.progress) || 0));
  const value = String(Math.round(pct * 10) / 10);
  if (parts.bar.getAttribute("aria-valuenow") !== value) {
    parts.bar.setAttribute("aria-valuenow", value);
    parts.bar.setAttribute("aria-valuetext", `${Math.round(pct)} %`);
    parts.fill.style.transform = `scaleX(${pct / 100})`;
  }
  parts.bar.dataset.status = job.status;
}

function progressNote(job) {
  if (job.status === "failed" && job.error) return `${job.error.type}: ${job.error.message}`;
  if (job.status === "pending" && job.error && job.attempts) return `retrying after ${job.error.type}`;
  if (job.status === "cancelled") return job.message || "cancelled";
  if (job.status === "pending" && !job.message) return "waiting for a worker";
  if (job.status === "running" && !job.message) return "started";
  return job.message || "";
}

function jobDuration(job, now = Date.now()) {
  const started = parseTime(job.started_at);
  if (!Number.isFinite(started)) {
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

class JobTable {
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

class JobList {
  constructor(table, { limit, onChange = () => {}, onError = () => {} }) {
    this.table = table;
    this.limit = limit;
    this.filters = { status: [], type: "", tenant: "" };
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

// ---- charts -----------------------------------------------------------------------------------------

/** The stats samples of the last hour: live ones from the feed (kept in sessionStorage across reloads),
 * and completed/failed per minute seeded from recently finished jobs for the time before them. */
const samples = {
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

class LineChart {
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

// ---- stats (every view shows the connection; the overview shows the numbers) -------------------

let lastStats = null;
function onStats(queues) {
  lastStats = queues;
  samples.add(queues);
}

// ---- confirm dialog ---------------------------------------------------------------------------------

function confirmDialog({ title, body, ok = "Confirm", danger = false }) {
  const dialog = $("#confirm");
  setText($("#confirm-title"), title);
  setText($("#confirm-body"), body);
  const okButton = $("#confirm-ok");
  setText(okButton, ok);
  okButton.className = `btn ${danger ? "btn-danger" : "btn-primary"}`;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    okButton.focus();
  });
}

// ---- views --------------------------------------------------------------------------------------------

let current = null; // the mounted view

function card(title, ...children) {
  return h(
    "section",
    { class: "card", "aria-label": title },
    h("h2", { class: "card-title", text: title }),
    ...children,
  );
}

class OverviewView {
  constructor() {
    this.stats = {};
    const stat = (key, label, hint) => {
      const value = h("div", { class: "stat-value", "data-testid": `stat-${key}`, text: "—" });
      this.stats[key] = value;
      return h(
        "div",
        { class: `stat stat-${key}`, role: "group", "aria-label": label },
        h("div", { class: "stat-label", text: label }),
        value,
        h("div", { class: "stat-hint", text: hint }),
      );
    };
    this.deliveries = {
      pending: h("span", { class: "stat-value", "data-testid": "stat-deliveries-pending", text: "—" }),
      failed: h("span", {
        class: "stat-value stat-value-failed",
        "data-testid": "stat-deliveries-failed",
        text: "—",
      }),
    };
    const deliveries = h(
      "div",
      { class: "stat stat-deliveries", role: "group", "aria-label": "Webhook deliveries" },
      h("div", { class: "stat-label", text: "Webhook deliveries" }),
      h(
        "div",
        { class: "stat-pair" },
        h("div", null, this.deliveries.pending, h("div", { class: "stat-hint", text: "pending" })),
        h("div", null, this.deliveries.failed, h("div", { class: "stat-hint", text: "failed" })),
      ),
    );
    this.throughput = new LineChart({
      title: "Completed and failed jobs per minute, last hour",
      series: [
        { key: "completed", label: "completed / min", area: true },
        { key: "failed", label: "failed / min" },
      ],
      describe: (v) =>
        `Jobs finished per minute over the last hour: now ${fmt(v.completed)} completed and ${fmt(v.failed)} failed per minute`,
    });
    this.queue = new LineChart({
      title: "Queue depth and running jobs, last hour",
      series: [
        { key: "running", label: "running", area: true },
        { key: "normal", label: "queued normal" },
        { key: "high", label: "queued high" },
      ],
      describe: (v) =>
        `Queue over the last hour: now ${fmt(v.running)} running, ${fmt(v.normal)} queued normal, ${fmt(v.high)} queued high`,
    });
    this.running = new JobTable({
      columns: ["job", "tenant", "progress", "duration"],
      compact: true,
      empty: "Nothing is running right now.",
    });
    this.failures = new JobTable({
      columns: ["job", "tenant", "error", "finished"],
      compact: true,
      empty: "No failed jobs.",
    });
    const onError = (r) => this.showError(r);
    this.lists = [
      new JobList(this.running, { limit: RUNNING_SIZE, onError }),
      new JobList(this.failures, { limit: FAILURES_SIZE, onError }),
    ];
    this.lists[0].filters.status = ["running"];
    this.lists[1].filters.status = ["failed"];
    this.error = h("p", { class: "inline-error", role: "alert", hidden: true });
    this.el = h(
      "div",
      { class: "overview", "data-testid": "overview" },
      h(
        "div",
        { class: "page-head" },
        h("h1", { text: "Overview" }),
        h("p", { class: "muted", text: session.admin ? "Every tenant" : "Your tenant's jobs" }),
      ),
      h(
        "div",
        { class: "stats" },
        stat("normal", "Queued · normal", "waiting for a worker"),
        stat("high", "Queued · high", "start before normal"),
        stat("running", "Running", "on workers now"),
        stat("completed", "Completed / min", "last minute"),
        stat("failed", "Failed / min", "last minute"),
        deliveries,
      ),
      h(
        "div",
        { class: "charts" },
        card("Throughput, last hour", this.throughput.el),
        card("Queue and workers, last hour", this.queue.el),
      ),
      this.error,
      h(
        "div",
        { class: "panels" },
        h(
          "section",
          { class: "card", "aria-label": "Running now", "data-testid": "running-now" },
          h("h2", { class: "card-title", text: "Running now" }),
          h("a", { class: "card-link", href: "#/jobs?status=running", text: "All running →" }),
          this.running.el,
        ),
        h(
          "section",
          { class: "card", "aria-label": "Recent failures", "data-testid": "recent-failures" },
          h("h2", { class: "card-title", text: "Recent failures" }),
          h("a", { class: "card-link", href: "#/jobs?status=failed", text: "All failed →" }),
          this.failures.el,
        ),
      ),
    );
    this.onSamples = () => this.drawCharts();
  }

  mount(main) {
    main.replaceChildren(this.el);
    samples.listeners.add(this.onSamples);
    if (lastStats) this.showStats(lastStats);
    this.drawCharts();
    for (const list of this.lists) list.load();
    samples.seedFromJobs();
  }

  unmount() {
    samples.listeners.delete(this.onSamples);
    for (const list of this.lists) list.dispose();
    this.throughput.dispose();
    this.queue.dispose();
  }

  drawCharts() {
    const data = samples.all();
    this.throughput.setData(data);
    this.queue.setData(data);
  }

  showError(r) {
    this.error.hidden = false;
    setText(this.error, `Could not load jobs: ${problemText(r)}`);
  }

  onEvents(events) {
    for (const list of this.lists) list.onEvents(events);
  }

  onStats(queues) {
    this.showStats(queues);
    this.drawCharts();
  }

  showStats(q) {
    setText(this.stats.normal, fmt(q.normal));
    setText(this.stats.high, fmt(q.high));
    setText(this.stats.running, fmt(q.running));
    setText(this.stats.completed, fmt(q.completed_per_minute));
    setText(this.stats.failed, fmt(q.failed_per_minute));
    const d = q.deliveries;
    setText(this.deliveries.pending, d ? fmt(d.pending) : "—");
    setText(this.deliveries.failed, d ? fmt(d.failed) : "—");
    this.deliveries.failed.classList.toggle("is-alert", Boolean(d && d.failed));
  }

  resync() {
    this.error.hidden = true;
    for (const list of this.lists) list.refreshSoon(0);
  }

  tick() {
    this.running.tick();
    this.failures.tick();
  }
}

let jobTypes = null; // from /openapi.json, once
async function loadJobTypes() {
  if (jobTypes) return jobTypes;
  try {
    const res = await fetch("/openapi.json", { cache: "no-store" });
    const doc = await res.json();
    jobTypes = Object.keys(doc["x-job-types"] || {}).sort();
  } catch {
    jobTypes = [];
  }
  return jobTypes;
}

class JobsView {
  constructor(query) {
    const statuses = (query.get("status") || "").split(",").filter((s) => STATUSES.includes(s));
    this.filters = {
      status: statuses,
      type: query.get("type") || "",
      tenant: session.admin ? query.get("tenant") || "" : "",
    };
    this.table = new JobTable({
      columns: ["status", "job", "tenant", "progress", "attempts", "created", "duration"],
      empty: "No jobs yet.",
    });
    this.list = new JobList(this.table, {
      limit: PAGE_SIZE,
      onChange: () => this.afterLoad(),
      onError: (r) => this.showError(problemText(r)),
    });
    this.list.filters = { ...this.filters };

    this.chips = STATUSES.map((status) =>
      h("button", {
        type: "button",
        class: `chip chip-${status}`,
        "aria-pressed": String(statuses.includes(status)),
        "data-status": status,
        "data-testid": `filter-status-${status}`,
        onclick: () => this.toggleStatus(status),
        text: status,
      }),
    );
    this.allChip = h("button", {
      type: "button",
      class: "chip",
      "aria-pressed": String(!statuses.length),
      "data-testid": "filter-status-all",
      onclick: () => this.clearStatus(),
      text: "all",
    });
    this.typeSelect = h(
      "select",
      {
        id: "filter-type",
        "aria-label": "Filter by job type",
        "data-testid": "filter-type",
        onchange: () => this.apply({ type: this.typeSelect.value }),
      },
      h("option", { value: "", text: "All types" }),
    );
    if (this.filters.type)
      this.typeSelect.append(
        h("option", { value: this.filters.type, text: this.filters.type, selected: true }),
      );
    this.tenantInput = h("input", {
      type: "search",
      id: "filter-tenant",
      placeholder: "All tenants",
      value: this.filters.tenant,
      "aria-label": "Filter by tenant",
      "data-testid": "filter-tenant",
      autocomplete: "off",
      spellcheck: "false",
    });
    let tenantTimer = 0;
    this.tenantInput.addEventListener("input", () => {
      clearTimeout(tenantTimer);
      tenantTimer = setTimeout(() => this.apply({ tenant: this.tenantInput.value.trim() }), 350);
    });
    this.searchInput = h("input", {
      type: "search",
      id: "search-id",
      placeholder: "Job id",
      "aria-label": "Find a job by id",
      "data-testid": "search-id",
      autocomplete: "off",
      spellcheck: "false",
    });
    this.searchError = h("p", {
      class: "inline-error",
      role: "alert",
      "data-testid": "search-error",
      hidden: true,
    });
    const search = h(
      "form",
      { class: "search", role: "search", onsubmit: (e) => this.search(e) },
      this.searchInput,
      h("button", { type: "submit", class: "btn", "data-testid": "search-submit", text: "Open" }),
    );
    this.error = h("p", { class: "inline-error", role: "alert", hidden: true });
    this.summary = h("span", { class: "muted", "data-testid": "jobs-summary" });
    this.liveTag = h("span", { class: "live-tag", "data-testid": "jobs-live", text: "live" });
    this.newestButton = h("button", {
      type: "button",
      class: "btn btn-small",
      "data-testid": "page-newest",
      onclick: () => this.list.newest(),
      text: "⇤ Newest",
    });
    this.newerButton = h("button", {
      type: "button",
      class: "btn btn-small",
      "data-testid": "page-newer",
      onclick: () => this.list.newer(),
      text: "← Newer",
    });
    this.olderButton = h("button", {
      type: "button",
      class: "btn btn-small",
      "data-testid": "page-older",
      onclick: () => this.list.older(),
      text: "Older →",
    });

    this.el = h(
      "div",
      { class: "jobs-view", "data-testid": "jobs-view" },
      h("div", { class: "page-head" }, h("h1", { text: "Jobs" }), search),
      this.searchError,
      h(
        "div",
        { class: "filters", role: "toolbar", "aria-label": "Filters" },
        h(
          "div",
          { class: "chips", role: "group", "aria-label": "Filter by status" },
          this.allChip,
          this.chips,
        ),
        h("label", { class: "field" }, h("span", { class: "field-label", text: "Type" }), this.typeSelect),
        session.admin &&
          h(
            "label",
            { class: "field" },
            h("span", { class: "field-label", text: "Tenant" }),
            this.tenantInput,
          ),
      ),
      this.error,
      h(
        "div",
        { class: "card card-flush" },
        this.table.el,
        h(
          "div",
          { class: "pager" },
          h("div", { class: "pager-info" }, this.liveTag, this.summary),
          h("div", { class: "pager-buttons" }, this.newestButton, this.newerButton, this.olderButton),
        ),
      ),
    );
  }

  mount(main) {
    main.replaceChildren(this.el);
    this.updateEmptyText();
    this.list.load();
    loadJobTypes().then((types) => {
      for (const type of types) {
        if (type !== this.filters.type) this.typeSelect.append(h("option", { value: type, text: type }));
      }
    });
  }

  unmount() {
    this.list.dispose();
  }

  toggleStatus(status) {
    const set = new Set(this.filters.status);
    if (set.has(status)) set.delete(status);
    else set.add(status);
    this.apply({ status: STATUSES.filter((s) => set.has(s)) });
  }

  clearStatus() {
    this.apply({ status: [] });
  }

  apply(change) {
    this.filters = { ...this.filters, ...change };
    for (const chip of this.chips)
      chip.setAttribute("aria-pressed", String(this.filters.status.includes(chip.dataset.status)));
    this.allChip.setAttribute("aria-pressed", String(!this.filters.status.length));
    const q = new URLSearchParams();
    if (this.filters.status.length) q.set("status", this.filters.status.join(","));
    if (this.filters.type) q.set("type", this.filters.type);
    if (this.filters.tenant) q.set("tenant", this.filters.tenant);
    const hash = `#/jobs${q.toString() ? `?${q}` : ""}`;
    history.replaceState(null, "", hash); // no hashchange: the view stays mounted
    this.error.hidden = true;
    this.updateEmptyText();
    this.list.setFilters(this.filters);
  }

  updateEmptyText() {
    const filtered = this.filters.status.length || this.filters.type || this.filters.tenant;
    this.table.setEmptyText(
      filtered
        ? "No jobs match these filters."
        : "No jobs yet. Submit one with POST /v1/jobs or jobwire submit.",
    );
  }

  afterLoad() {
    this.error.hidden = true;
    const n = this.table.rows.size;
    const page = this.list.page;
    setText(
      this.summary,
      n
        ? `${page ? `Page ${page + 1} · ` : ""}${fmt(n)} job${n === 1 ? "" : "s"}${this.list.next ? ", more below" : ""}`
        : "",
    );
    this.liveTag.hidden = !this.list.isLive;
    this.newestButton.disabled = page < 2;
    this.newerButton.disabled = page === 0;
    this.olderButton.disabled = !this.list.next;
  }

  showError(text) {
    this.error.hidden = false;
    setText(this.error, `Could not load jobs: ${text}`);
  }

  async search(e) {
    e.preventDefault();
    const id = this.searchInput.value.trim();
    this.searchError.hidden = true;
    if (!id) return;
    if (!isUuid(id)) {
      this.searchError.hidden = false;
      setText(this.searchError, `"${id}" is not a job id (a UUID such as 5f0c1e2a-…).`);
      return;
    }
    const r = await call("GET", `/v1/jobs/${encodeURIComponent(id)}`);
    if (r.ok) {
      location.hash = `#/jobs/${r.data.id}`;
    } else {
      this.searchError.hidden = false;
      setText(
        this.searchError,
        r.status === 404 ? `No job ${id} (or it belongs to another tenant).` : problemText(r),
      );
    }
  }

  onEvents(events) {
    this.list.onEvents(events);
  }

  resync() {
    this.list.refreshSoon(0);
  }

  tick() {
    this.table.tick();
  }
}

class JobView {
  constructor(id) {
    this.id = id;
    this.job = null;
    this.timeline = new Map(); // seq -> event
    this.deliveries = null; // null: not loaded; [] none
    this.deliveriesMissing = false;
    this.openHistories = new Set(); // deliveries whose attempt history is unfolded
    this.jobFetch = { inflight: false, again: false };
    this.deliveryFetch = { inflight: false, again: false };
    this.lastDeliveryRefresh = 0;
    this.el = h(
      "div",
      { class: "job-view", "data-testid": "job-view" },
      h("p", { class: "muted loading", text: "Loading job…" }),
    );
  }

  mount(main) {
    main.replaceChildren(this.el);
    this.fetchJob(true);
    this.fetchDeliveries();
    if (isUuid(this.id)) live.follow(this.id, 0); // replays the whole timeline, then live
  }

  unmount() {
    this.disposed = true;
    live.unfollow(this.id);
  }

  // -- data

  async fetchJob(first = false) {
    if (this.jobFetch.inflight) {
      this.jobFetch.again = true;
      return;
    }
    this.jobFetch.inflight = true;
    const startedAt = performance.now();
    const r = await call("GET", `/v1/jobs/${encodeURIComponent(this.id)}`);
    this.jobFetch.inflight = false;
    if (this.disposed) return;
    if (r.ok) {
      const fresh = mergeFetched(r.data, this.job, startedAt, seqOfEtag(r.etag));
      const wasNull = !this.job;
      this.job = fresh;
      if (!session.admin && !session.tenant) learnTenant(fresh);
      if (wasNull) this.render();
      else this.patch();
    } else if (first || r.status === 404) {
      this.renderMissing(r);
    }
    if (this.jobFetch.again) {
      this.jobFetch.again = false;
      setTimeout(() => this.fetchJob(), 200);
    }
  }

  async fetchDeliveries() {
    if (this.deliveryFetch.inflight) {
      this.deliveryFetch.again = true;
      return;
    }
    this.deliveryFetch.inflight = true;
    this.lastDeliveryRefresh = Date.now();
    const r = await call("GET", `/v1/jobs/${encodeURIComponent(this.id)}/deliveries?limit=50`);
    this.deliveryFetch.inflight = false;
    if (this.disposed) return;
    if (r.ok) {
      this.deliveries = r.data.items || [];
      this.deliveriesMissing = false;
    } else if (r.status === 404) {
      this.deliveries = []; // no such route yet, or no such job: nothing to show
      this.deliveriesMissing = true;
    }
    if (this.job) this.renderDeliveries();
    if (this.deliveryFetch.again) {
      this.deliveryFetch.again = false;
      setTimeout(() => this.fetchDeliveries(), 200);
    }
  }

  onEvents(events) {
    const list = events.get(this.id);
    if (!list) return;
    let stateChange = false;
    let terminal = false;
    let changed = false;
    for (const ev of list) {
      if (!this.timeline.has(ev.seq)) {
        this.timeline.set(ev.seq, ev);
        changed = true;
      }
      if (this.job && applyEvent(this.job, ev)) {
        changed = true;
        if (ev.type !== "progress") stateChange = true;
        if (TERMINAL.has(ev.type)) terminal = true;
      }
    }
    if (!changed || !this.job) return;
    this.patch();
    // the representation has what events do not carry (attempts, timestamps): read it again
    if (stateChange) this.fetchJob();
    if (terminal) this.fetchDeliveries();
  }

  onStats() {
    // deliveries have no feed events: while one is pending, refresh with the stats heartbeat
    const pending = (this.deliveries || []).some((d) => d.status === "pending");
    if (pending && Date.now() - this.lastDeliveryRefresh > 4000) this.fetchDeliveries();
  }

  resync() {
    this.fetchJob();
    this.fetchDeliveries();
  }

  // -- rendering

  renderMissing(r) {
    const text =
      r.status === 404
        ? `No job ${this.id}. It does not exist, or it belongs to another tenant.`
        : `Could not load the job: ${problemText(r)}`;
    this.el.replaceChildren(
      h("a", { class: "back", href: "#/jobs", text: "← All jobs" }),
      h(
        "div",
        { class: "card empty-card", "data-testid": "job-missing" },
        h("h1", { text: "Job not found" }),
        h("p", { text }),
      ),
    );
  }

  render() {
    const job = this.job;
    this.statusEl = statusBadge(job.status, "detail-status");
    this.progress = progressBar(`Progress of job ${job.id}`);
    this.pct = h("span", { class: "pct pct-large", "data-testid": "detail-percent" });
    this.message = h("span", { class: "detail-message", "data-testid": "detail-message" });
    this.cancelButton = h("button", {
      type: "button",
      class: "btn btn-danger-outline",
      "data-testid": "action-cancel",
      onclick: () => this.cancel(),
      text: "Cancel job",
    });
    this.retryButton = h("button", {
      type: "button",
      class: "btn btn-primary",
      "data-testid": "action-retry",
      onclick: () => this.retry(),
      text: "Retry job",
    });
    this.result = h("div", {
      class: "action-result",
      role: "status",
      "aria-live": "polite",
      "data-testid": "action-result",
      hidden: true,
    });
    this.facts = h("dl", { class: "facts", "data-testid": "job-facts" });
    this.paramsEl = h("pre", { class: "code", "data-testid": "job-params" });
    this.outcome = h("div", { "data-testid": "job-outcome" });
    this.outcomeTitle = h("h2", { class: "card-title" });
    this.timelineEl = h("ol", {
      class: "timeline",
      "data-testid": "timeline",
      "aria-label": "Event timeline",
    });
    this.deliveriesEl = h(
      "div",
      { "data-testid": "deliveries" },
      h("p", { class: "muted", text: "Loading deliveries…" }),
    );
    this.typeEl = h("span", { class: "detail-type" });
    this.el.replaceChildren(
      h("a", { class: "back", href: "#/jobs", text: "← All jobs" }),
      h(
        "div",
        { class: "detail-head" },
        h(
          "div",
          { class: "detail-title" },
          h("h1", null, this.typeEl, this.statusEl),
          h("div", { class: "detail-id mono", "data-testid": "detail-id", title: "Job id" }, job.id),
        ),
        h("div", { class: "detail-actions" }, this.cancelButton, this.retryButton),
      ),
      this.result,
      h(
        "div",
        { class: "detail-progress" },
        h("div", { class: "progress-line progress-line-large" }, this.progress.bar, this.pct),
        this.message,
      ),
      h(
        "div",
        { class: "detail-grid" },
        h(
          "div",
          { class: "detail-main" },
          h(
            "section",
            { class: "card", "aria-label": "Timeline" },
            h("h2", { class: "card-title", text: "Timeline" }),
            this.timelineEl,
          ),
          h(
            "section",
            { class: "card", "aria-label": "Webhook deliveries" },
            h(
              "div",
              { class: "card-head" },
              h("h2", { class: "card-title", text: "Webhook deliveries" }),
              h("button", {
                type: "button",
                class: "btn btn-small btn-ghost",
                onclick: () => this.fetchDeliveries(),
                text: "Refresh",
              }),
            ),
            this.deliveriesEl,
          ),
        ),
        h(
          "div",
          { class: "detail-side" },
          h(
            "section",
            { class: "card", "aria-label": "Details" },
            h("h2", { class: "card-title", text: "Details" }),
            this.facts,
          ),
          h(
            "section",
            { class: "card outcome-card", "aria-label": "Outcome" },
            this.outcomeTitle,
            this.outcome,
          ),
          h(
            "section",
            { class: "card", "aria-label": "Params" },
            h("h2", { class: "card-title", text: "Params" }),
            this.paramsEl,
          ),
        ),
      ),
    );
    this.patch();
    if (this.deliveries) this.renderDeliveries();
    document.title = `${job.type} ${shortId(job.id)} · jobwire`;
  }

  patch() {
    const job = this.job;
    if (!this.statusEl) return;
    setText(this.typeEl, job.type);
    this.statusEl.className = `badge badge-large status-${job.status}`;
    setText(this.statusEl, job.status);
    setProgress(this.progress, job);
    setText(this.pct, `${Math.round(Number(job.progress) || 0)}%`);
    setText(this.message, progressNote(job) || "");
    this.message.classList.toggle("is-error", job.status === "failed");
    this.cancelButton.disabled = TERMINAL.has(job.status);
    this.retryButton.disabled = !(job.status === "failed" || job.status === "cancelled");
    this.renderFacts();
    const params = json(job.params);
    if (this.paramsEl.textContent !== params) this.paramsEl.textContent = params;
    this.renderOutcome();
    this.renderTimeline();
  }

  renderFacts() {
    const job = this.job;
    const rows = [
      ["Status", job.status],
      ["Priority", job.priority],
      ["Attempts", `${job.attempts} of ${job.max_attempts}`],
      session.admin && ["Tenant", tenantOf(job) || "—"],
      ["Created", job.created_at, true],
      ["Started", job.started_at, true],
      ["Finished", job.finished_at, true],
      ["Duration", jobDuration(job)],
      ["Webhook URL", job.webhook_url || "none"],
    ].filter(Boolean);
    const key = JSON.stringify(rows);
    if (key === this.factsKey) return;
    this.factsKey = key;
    this.facts.replaceChildren(
      ...rows.flatMap(([label, value, isTime]) => [
        h("dt", { text: label }),
        h(
          "dd",
          { "data-testid": `fact-${label.toLowerCase().replace(/\s+/g, "-")}` },
          isTime
            ? value
              ? [timeEl(value), h("span", { class: "muted small", text: ` ${absolute(value)}` })]
              : "—"
            : value,
        ),
      ]),
    );
  }

  renderOutcome() {
    const job = this.job;
    let title;
    let body;
    if (job.status === "completed") {
      title = "Result";
      body = h("pre", { class: "code", "data-testid": "job-result" }, json(job.result));
    } else if (job.error) {
      title = job.status === "failed" ? "Error" : "Last error";
      body = h(
        "div",
        { class: "error-box", "data-testid": "job-error" },
        h("strong", { text: job.error.type }),
        h("span", { text: job.error.message }),
      );
    } else {
      title = "Result";
      body = h("p", {
        class: "muted",
        text: job.status === "cancelled" ? "Cancelled before it finished." : "Not finished yet.",
      });
    }
    const key = JSON.stringify([title, job.status, job.result, job.error]);
    if (key === this.outcomeKey) return;
    this.outcomeKey = key;
    setText(this.outcomeTitle, title);
    this.outcome.replaceChildren(body);
  }

  renderTimeline() {
    const events = [...this.timeline.values()].sort((a, b) => a.seq - b.seq);
    const key = events.length ? `${events.length}:${events[events.length - 1].seq}` : "0";
    if (key === this.timelineKey) return;
    this.timelineKey = key;
    // consecutive progress events collapse into one entry: 0.25 s apart, they would flood the list
    const groups = [];
    for (const ev of events) {
      const last = groups[groups.length - 1];
      if (ev.type === "progress" && last && last.type === "progress") {
        last.count += 1;
        last.to = ev;
      } else {
        groups.push({ type: ev.type, from: ev, to: ev, count: 1 });
      }
    }
    if (!groups.length) {
      this.timelineEl.replaceChildren(h("li", { class: "muted", text: "No events yet." }));
      return;
    }
    this.timelineEl.replaceChildren(
      ...groups.map((g) => {
        const ev = g.to;
        let detail = ev.message || "";
        if (g.type === "progress") {
          const from = Math.round(g.from.progress);
          const to = Math.round(g.to.progress);
          detail = `${g.count > 1 ? `${g.count} updates, ${from}% → ${to}%` : `${to}%`}${ev.message ? ` · ${ev.message}` : ""}`;
        } else if (ev.error) {
          detail = `${ev.error.type}: ${ev.error.message}`;
        } else if (g.type === "completed") {
          detail = "result recorded";
        } else if (g.type === "created") {
          detail = "accepted and queued";
        } else if (g.type === "retrying") {
          detail = detail || "queued again";
        }
        return h(
          "li",
          { class: `tl tl-${g.type}`, "data-testid": "timeline-event", "data-type": g.type },
          h("span", { class: "tl-dot", "aria-hidden": "true" }),
          h(
            "div",
            { class: "tl-body" },
            h(
              "div",
              { class: "tl-head" },
              h("span", { class: "tl-type", text: g.type }),
              h("span", {
                class: "tl-seq mono",
                text: g.count > 1 ? `#${g.from.seq}–${g.to.seq}` : `#${ev.seq}`,
              }),
              timeEl(ev.at),
            ),
            detail && h("div", { class: `tl-detail${ev.error ? " is-error" : ""}`, text: detail }),
          ),
        );
      }),
    );
  }

  renderDeliveries() {
    const items = this.deliveries || [];
    if (!items.length) {
      const text =
        this.deliveriesMissing || !this.job.webhook_url
          ? "No webhook deliveries for this job."
          : "No deliveries yet: they are recorded when the job finishes.";
      this.deliveriesEl.replaceChildren(h("p", { class: "muted", "data-testid": "deliveries-empty", text }));
      return;
    }
    this.deliveriesEl.replaceChildren(
      h(
        "ul",
        { class: "deliveries" },
        items.map((d) => {
          const when =
            d.status === "delivered"
              ? ["delivered ", timeEl(d.delivered_at)]
              : d.status === "pending" && d.next_attempt_at
                ? ["next attempt ", timeEl(d.next_attempt_at)]
                : ["created ", timeEl(d.created_at)];
          const last = d.last_status_code ? `HTTP ${d.last_status_code}` : "";
          const error = d.last_error && !(last && d.last_error.startsWith(last)) ? d.last_error : "";
          return h(
            "li",
            {
              class: "delivery",
              "data-testid": "delivery",
              "data-delivery-id": d.id,
              "data-status": d.status,
            },
            h(
              "div",
              { class: "delivery-head" },
              h("span", {
                class: `badge delivery-${d.status}`,
                "data-testid": "delivery-status",
                text: d.status,
              }),
              h("span", { class: "mono delivery-event", text: d.event_type }),
              h("span", { class: "delivery-url", title: d.url, text: d.url }),
              h("button", {
                type: "button",
                class: "btn btn-small",
                "data-testid": "action-redeliver",
                onclick: () => this.redeliver(d),
                text: "Redeliver",
              }),
            ),
            h(
              "div",
              { class: "delivery-meta muted small" },
              `${d.attempts} attempt${d.attempts === 1 ? "" : "s"}`,
              last &&
                h(
                  "span",
                  null,
                  " · last answer ",
                  h("span", { class: d.status === "delivered" ? "ok" : "is-error", text: last }),
                ),
              error && h("span", { class: "is-error", text: ` · ${error}` }),
              " · ",
              ...when,
            ),
            (d.attempt_history || []).length > 0 &&
              h(
                "details",
                {
                  class: "attempts",
                  open: this.openHistories.has(d.id), // a refresh keeps what the reader opened
                  ontoggle: (e) => {
                    if (e.target.open) this.openHistories.add(d.id);
                    else this.openHistories.delete(d.id);
                  },
                },
                h("summary", { text: `Attempt history (${d.attempt_history.length})` }),
                h(
                  "table",
                  { class: "attempts-table" },
                  h(
                    "thead",
                    null,
                    h(
                      "tr",
                      null,
                      ["#", "When", "Answer", "Error", "Took"].map((t) => h("th", { scope: "col", text: t })),
                    ),
                  ),
                  h(
                    "tbody",
                    null,
                    d.attempt_history.map((a, i) =>
                      h(
                        "tr",
                        null,
                        h("td", { text: String(i + 1) }),
                        h("td", null, timeEl(a.at)),
                        h("td", {
                          class: a.status_code >= 200 && a.status_code < 300 ? "ok" : "is-error",
                          text: a.status_code ? String(a.status_code) : "—",
                        }),
                        h("td", { text: a.error || "" }),
                        h("td", { class: "cell-num", text: duration(a.duration_ms) }),
                      ),
                    ),
                  ),
                ),
              ),
          );
        }),
      ),
    );
  }

  // -- actions

  showResult(ok, text) {
    this.result.hidden = false;
    this.result.className = `action-result ${ok ? "is-ok" : "is-error"}`;
    this.result.dataset.ok = String(ok);
    setText(this.result, text);
  }

  async act({ title, body, ok, danger, method = "POST", path, success }) {
    if (!(await confirmDialog({ title, body, ok, danger }))) return;
    const r = await call(method, path);
    if (this.disposed) return;
    if (r.ok) {
      this.showResult(true, success(r));
      this.fetchJob();
    } else {
      this.showResult(false, problemText(r));
    }
    return r;
  }

  cancel() {
    const job = this.job;
    this.act({
      title: "Cancel this job?",
      body: `${job.type} ${shortId(job.id)} is ${job.status}. ${job.status === "running" ? "Its worker interrupts it." : "It will not run."} This cannot be undone, but a cancelled job can be retried.`,
      ok: "Cancel job",
      danger: true,
      path: `/v1/jobs/${job.id}/cancel`,
      success: (r) =>
        r.status === 202
          ? "202 Accepted: the worker interrupts the job within a second or two."
          : `${r.status}: the job is cancelled.`,
    });
  }

  retry() {
    const job = this.job;
    this.act({
      title: "Retry this job?",
      body: `${job.type} ${shortId(job.id)} is ${job.status}. It goes back to the queue with a fresh budget of ${job.max_attempts} attempts.`,
      ok: "Retry job",
      path: `/v1/jobs/${job.id}/retry`,
      success: (r) => `${r.status} Accepted: the job is queued again.`,
    });
  }

  async redeliver(delivery) {
    const r = await this.act({
      title: "Send this webhook again?",
      body: `${delivery.event_type} to ${delivery.url} is sent again now, with the same webhook-id (receivers dedupe on it).`,
      ok: "Redeliver",
      path: `/v1/deliveries/${delivery.id}/redeliver`,
      success: (res) => `${res.status} Accepted: the delivery is queued for another attempt.`,
    });
    if (r && r.ok) {
      // no feed event tells when a dispatcher got to it: look again shortly (and on each stats frame)
      this.fetchDeliveries();
      setTimeout(() => !this.disposed && this.fetchDeliveries(), 1500);
    }
  }

  tick() {
    if (!this.job) return;
    for (const el of this.el.querySelectorAll("time[data-rel]")) {
      if (el.dataset.iso) setText(el, relative(parseTime(el.dataset.iso)));
    }
    if (!TERMINAL.has(this.job.status)) this.renderFacts();
  }
}

// ---- routing ----------------------------------------------------------------------------------------

function parseRoute() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "jobs" && parts[1]) return { name: "job", id: decodeURIComponent(parts[1]) };
  if (parts[0] === "jobs") return { name: "jobs", query: new URLSearchParams(query) };
  return { name: "overview" };
}

function navigate() {
  if (!session.key) return;
  const route = parseRoute();
  if (current) current.unmount();
  current =
    route.name === "job"
      ? new JobView(route.id)
      : route.name === "jobs"
        ? new JobsView(route.query)
        : new OverviewView();
  for (const link of document.querySelectorAll("[data-nav]")) {
    const active = link.dataset.nav === (route.name === "overview" ? "overview" : "jobs");
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title =
    route.name === "overview"
      ? "Overview · jobwire"
      : route.name === "jobs"
        ? "Jobs · jobwire"
        : "Job · jobwire";
  const main = $("#view");
  current.mount(main);
  window.scrollTo(0, 0);
}

// ---- sign-in ------------------------------------------------------------------------------------------

/** Checks a key against the API: 401 means wrong; listing another tenant's jobs tells an admin key
 * (200) from a tenant's (422). */
async function probeKey(key) {
  const q = new URLSearchParams({ limit: "1", tenant: ADMIN_PROBE_TENANT });
  const r = await call("GET", `/v1/jobs?${q}`, { key });
  if (r.status === 200) return { ok: true, admin: true };
  if (r.status === 422) return { ok: true, admin: false };
  return { ok: false, r };
}

function learnTenant(job) {
  const tenant = tenantOf(job);
  if (tenant && !session.admin) {
    session.tenant = tenant;
    renderIdentity();
  }
}

function renderIdentity() {
  const el = $("#identity");
  el.replaceChildren(
    session.admin
      ? h("span", { class: "tag tag-admin", text: "admin" })
      : h("span", { class: "tag", text: "tenant" }),
    h("span", { class: "identity-name", text: session.admin ? "all tenants" : session.tenant || "key" }),
  );
  el.title = session.admin ? "Admin key: every tenant's jobs" : "Tenant key: this tenant's jobs only";
}

function showSignIn(message) {
  $("#app").hidden = true;
  $("#signin").hidden = false;
  const error = $("#signin-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("#signin-key").setAttribute("aria-invalid", message ? "true" : "false");
  $("#signin-key").focus();
  document.title = "Sign in · jobwire";
}

function showApp() {
  $("#signin").hidden = true;
  $("#app").hidden = false;
  renderIdentity();
  live.start();
  navigate();
}

async function signIn(key) {
  const button = $("#signin-submit");
  button.disabled = true;
  setText(button, "Checking…");
  const probe = await probeKey(key);
  button.disabled = false;
  setText(button, "Sign in");
  if (!probe.ok) {
    const r = probe.r;
    const reason =
      r.status === 401
        ? `The api refused this key (401 Unauthorized): ${(r.data && r.data.detail) || "not a valid API key"}.`
        : problemText(r);
    showSignIn(reason);
    return;
  }
  if (sessionStorage.getItem(KEY_STORAGE) !== key) samples.clear();
  sessionStorage.setItem(KEY_STORAGE, key);
  session.key = key;
  session.admin = probe.admin;
  session.tenant = null;
  $("#signin-key").value = "";
  samples.load();
  showApp();
}

function signOut(message) {
  live.stop();
  if (current) current.unmount();
  current = null;
  session.key = null;
  session.admin = false;
  session.tenant = null;
  tenants.clear();
  lastStats = null;
  sessionStorage.removeItem(KEY_STORAGE);
  samples.clear();
  $("#view").replaceChildren();
  showSignIn(message);
}

// ---- boot -----------------------------------------------------------------------------------------------

function tick() {
  if (document.hidden) return;
  updateCountdown();
  if (current && current.tick) current.tick();
}

async function boot() {
  $("#signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("#signin-key").value.trim();
    if (!key) {
      showSignIn("Paste an API key first.");
      return;
    }
    signIn(key);
  });
  $("#signout").addEventListener("click", () => signOut(""));
  window.addEventListener("hashchange", navigate);
  setInterval(tick, 1000);

  const stored = sessionStorage.getItem(KEY_STORAGE);
  if (!stored) {
    showSignIn("");
    return;
  }
  const probe = await probeKey(stored);
  if (probe.ok) {
    session.key = stored;
    session.admin = probe.admin;
    samples.load();
    showApp();
  } else if (probe.r.status === 401) {
    sessionStorage.removeItem(KEY_STORAGE);
    showSignIn("Your saved key is no longer accepted (401 Unauthorized). Sign in again.");
  } else {
    $("#signin-key").value = stored;
    showSignIn(`Could not check the saved key: ${problemText(probe.r)}`);
  }
}

boot();
