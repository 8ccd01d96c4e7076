// jobwire dashboard: The jobs view: a filtered, paged live list of jobs, and the submit form.

import { call, problemText } from "./api.js";
import { PAGE_SIZE, STATUSES } from "./constants.js";
import { fmt, h, isUuid, setText } from "./format.js";
import { session } from "./session.js";
import { JobList, JobTable } from "./table.js";
import { confirmDialog } from "./widgets.js";

// a label filter as the api reads it: key (1-63 of a-z 0-9 _ . -), a colon, the value
const LABEL = /^[a-z0-9_.-]{1,63}:.{0,255}$/;
const BULK = {
  cancel: { verb: "Cancel", done: "cancelled", note: "Running ones are interrupted." },
  retry: { verb: "Retry", done: "retried", note: "Only failed and cancelled ones run again." },
};

/** "customer:acme, env:prod" as a list of labels; the ones that are not key:value are returned too. */
function parseLabels(text) {
  const parts = text
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  return { labels: parts.filter((p) => LABEL.test(p)), bad: parts.filter((p) => !LABEL.test(p)) };
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

export class JobsView {
  constructor(query) {
    const statuses = (query.get("status") || "").split(",").filter((s) => STATUSES.includes(s));
    this.filters = {
      status: statuses,
      type: query.get("type") || "",
      tenant: session.admin ? query.get("tenant") || "" : "",
      label: query.getAll("label").filter((l) => LABEL.test(l)),
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
    this.labelInput = h("input", {
      type: "search",
      id: "filter-label",
      placeholder: "key:value, …",
      value: this.filters.label.join(", "),
      "aria-label": "Filter by labels (key:value, comma-separated; all must match)",
      "data-testid": "filter-label",
      autocomplete: "off",
      spellcheck: "false",
    });
    let labelTimer = 0;
    this.labelInput.addEventListener("input", () => {
      clearTimeout(labelTimer);
      labelTimer = setTimeout(() => this.applyLabels(), 350);
    });
    this.labelError = h("p", {
      class: "inline-error",
      role: "alert",
      "data-testid": "label-error",
      hidden: true,
    });
    this.bulkButtons = Object.entries(BULK).map(([action, { verb }]) =>
      h("button", {
        type: "button",
        class: action === "cancel" ? "btn btn-small btn-danger-outline" : "btn btn-small",
        "data-testid": `bulk-${action}`,
        onclick: () => this.bulk(action),
        text: `${verb} all matching`,
      }),
    );
    this.bulkBar = h(
      "div",
      { class: "bulk-bar", "data-testid": "bulk-bar", hidden: true },
      this.bulkButtons,
    );
    this.bulkResult = h("div", {
      class: "action-result",
      role: "status",
      "aria-live": "polite",
      "data-testid": "bulk-result",
      hidden: true,
    });
    this.matched = null;
    this.countGeneration = 0;
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
        h("label", { class: "field" }, h("span", { class: "field-label", text: "Labels" }), this.labelInput),
        session.admin &&
          h(
            "label",
            { class: "field" },
            h("span", { class: "field-label", text: "Tenant" }),
            this.tenantInput,
          ),
      ),
      this.labelError,
      this.bulkBar,
      this.bulkResult,
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
    this.countMatching();
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
    for (const label of this.filters.label) q.append("label", label);
    const hash = `#/jobs${q.toString() ? `?${q}` : ""}`;
    history.replaceState(null, "", hash); // no hashchange: the view stays mounted
    this.error.hidden = true;
    this.updateEmptyText();
    this.list.setFilters(this.filters);
    this.bulkResult.hidden = true;
    this.countMatching();
  }

  applyLabels() {
    const { labels, bad } = parseLabels(this.labelInput.value);
    this.labelError.hidden = !bad.length;
    if (bad.length)
      setText(this.labelError, `"${bad[0]}" is not a label filter: write key:value (keys: a-z 0-9 _ . -).`);
    if (labels.join("\n") !== this.filters.label.join("\n")) this.apply({ label: labels });
  }

  // ---- bulk actions: on a filtered list, act on every job it matches (not only this page) ----------

  /** The filter of a bulk action, or null when the list is not filtered (the dashboard never acts on
   * every job at once) or an admin has not named the tenant (the api asks an admin for one). */
  bulkFilter() {
    const f = this.filters;
    if (!(f.status.length || f.type || f.label.length)) return null;
    if (session.admin && !f.tenant) return null;
    const filter = {};
    if (f.status.length) filter.status = f.status;
    if (f.type) filter.type = f.type;
    if (f.label.length) {
      const pairs = f.label.map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1)]);
      filter.label = Object.fromEntries(pairs);
    }
    if (session.admin) filter.tenant = f.tenant;
    return filter;
  }

  /** N of "Cancel all N matching": a dry run, again after every change of the filters. */
  async countMatching() {
    const filter = this.bulkFilter();
    const generation = ++this.countGeneration;
    this.matched = null;
    this.bulkBar.hidden = !filter;
    if (!filter) return;
    for (const button of this.bulkButtons) button.disabled = true;
    const r = await call("POST", "/v1/jobs/bulk", { body: { action: "cancel", filter, dry_run: true } });
    if (generation !== this.countGeneration) return; // the filters changed meanwhile
    if (!r.ok) {
      this.bulkBar.hidden = true;
      return;
    }
    this.matched = r.data.matched;
    this.bulkBar.dataset.matched = String(r.data.matched);
    Object.values(BULK).forEach(({ verb }, i) => {
      setText(this.bulkButtons[i], `${verb} all ${fmt(r.data.matched)} matching`);
      this.bulkButtons[i].disabled = r.data.matched === 0;
    });
  }

  showBulkResult(ok, text) {
    this.bulkResult.hidden = false;
    this.bulkResult.className = `action-result ${ok ? "is-ok" : "is-error"}`;
    this.bulkResult.dataset.ok = String(ok);
    setText(this.bulkResult, text);
  }

  async bulk(action) {
    const filter = this.bulkFilter();
    if (!filter) return;
    const { verb, done, note } = BULK[action];
    // how many the action would change now (the rest match but are past it, e.g. completed)
    const counted = await call("POST", "/v1/jobs/bulk", { body: { action, filter, dry_run: true } });
    if (!counted.ok) return this.showBulkResult(false, problemText(counted));
    const { matched, changed } = counted.data;
    if (changed === 0) {
      return this.showBulkResult(true, `None of the ${fmt(matched)} matching jobs can be ${done}.`);
    }
    const confirmed = await confirmDialog({
      title: `${verb} ${fmt(changed)} job${changed === 1 ? "" : "s"}?`,
      body:
        `${fmt(matched)} job${matched === 1 ? "" : "s"} match${matched === 1 ? "es" : ""} these filters; ` +
        `${fmt(changed)} can be ${done}. ${note}`,
      ok: `${verb} ${fmt(changed)}`,
      danger: action === "cancel",
    });
    if (!confirmed) return;
    const r = await call("POST", "/v1/jobs/bulk", { body: { action, filter } });
    if (r.ok) {
      this.showBulkResult(true, `${fmt(r.data.changed)} of ${fmt(r.data.matched)} matching jobs ${done}.`);
    } else {
      this.showBulkResult(false, problemText(r));
    }
    this.list.refreshSoon(0);
    this.countMatching();
  }

  updateEmptyText() {
    const filtered =
      this.filters.status.length || this.filters.type || this.filters.tenant || this.filters.label.length;
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
