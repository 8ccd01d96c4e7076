// jobwire dashboard: The overview: queue numbers, charts, running jobs and recent failures.

import { problemText } from "./api.js";
import { LineChart, samples } from "./charts.js";
import { FAILURES_SIZE, RUNNING_SIZE } from "./constants.js";
import { fmt, h, setText } from "./format.js";
import { page, session } from "./session.js";
import { JobList, JobTable } from "./table.js";
import { card } from "./widgets.js";

export class OverviewView {
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
    if (page.stats) this.showStats(page.stats);
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
