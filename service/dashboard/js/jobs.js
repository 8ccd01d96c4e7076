// jobwire dashboard: The jobs view: a filtered, paged live list of jobs, and the submit form.

import { call, problemText } from "./api.js";
import { PAGE_SIZE, STATUSES } from "./constants.js";
import { fmt, h, isUuid, setText } from "./format.js";
import { session } from "./session.js";
import { JobList, JobTable } from "./table.js";

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
