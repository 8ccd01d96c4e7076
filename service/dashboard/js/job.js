// jobwire dashboard: One job: its fields, progress, result or error, event history and webhook deliveries.

import { call, problemText } from "./api.js";
import { TERMINAL } from "./constants.js";
import { absolute, duration, h, isUuid, json, parseTime, relative, setText, shortId, tenantOf, timeEl } from "./format.js";
import { applyEvent, mergeFetched, seqOfEtag } from "./jobstate.js";
import { learnTenant } from "./main.js";
import { session } from "./session.js";
import { live } from "./socket.js";
import { jobDuration, progressBar, progressNote, setProgress, statusBadge } from "./table.js";
import { confirmDialog } from "./widgets.js";

export class JobView {
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
      job.depends_on && job.depends_on.length > 0 && ["Depends on", job.depends_on.join(", ")],
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
        } else if (g.type === "released") {
          detail = "its dependencies completed; queued";
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
