// jobwire dashboard: routing between the views, sign-in and sign-out, the one-second tick, boot()
// (which app.js, the page's module script, calls).
//
// Data flow: REST (/v1/jobs…) for snapshots, one WebSocket (/v1/ws, subscribe all) for everything
// live. Incoming frames are queued and applied once per animation frame (coalesced per job, keyed
// row updates), so a busy deployment costs one DOM pass per frame, not one per event. After the
// socket reconnects, or when the server says {"op": "resync"}, the visible view is fetched again.

import { call, problemText } from "./api.js";
import { BatchesView, BatchView } from "./batches.js";
import { samples } from "./charts.js";
import { ADMIN_PROBE_TENANT, KEY_STORAGE } from "./constants.js";
import { $, h, setText, tenantOf, tenants } from "./format.js";
import { JobView } from "./job.js";
import { JobsView } from "./jobs.js";
import { OverviewView } from "./overview.js";
import { SchedulesView } from "./schedules.js";
import { page, session } from "./session.js";
import { live, updateCountdown } from "./socket.js";

function parseRoute() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "jobs" && parts[1]) return { name: "job", id: decodeURIComponent(parts[1]) };
  if (parts[0] === "jobs") return { name: "jobs", query: new URLSearchParams(query) };
  if (parts[0] === "schedules") return { name: "schedules" };
  if (parts[0] === "batches" && parts[1]) return { name: "batch", id: decodeURIComponent(parts[1]) };
  if (parts[0] === "batches") return { name: "batches" };
  return { name: "overview" };
}

function navigate() {
  if (!session.key) return;
  const route = parseRoute();
  if (page.view) page.view.unmount();
  const views = {
    job: () => new JobView(route.id),
    jobs: () => new JobsView(route.query),
    schedules: () => new SchedulesView(),
    batches: () => new BatchesView(),
    batch: () => new BatchView(route.id),
    overview: () => new OverviewView(),
  };
  page.view = views[route.name]();
  const section = route.name === "job" ? "jobs" : route.name === "batch" ? "batches" : route.name;
  for (const link of document.querySelectorAll("[data-nav]")) {
    const active = link.dataset.nav === section;
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const titles = {
    overview: "Overview",
    jobs: "Jobs",
    job: "Job",
    schedules: "Schedules",
    batches: "Batches",
    batch: "Batch",
  };
  document.title = `${titles[route.name]} · jobwire`;
  const main = $("#view");
  page.view.mount(main);
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

export function learnTenant(job) {
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

export function signOut(message) {
  live.stop();
  if (page.view) page.view.unmount();
  page.view = null;
  session.key = null;
  session.admin = false;
  session.tenant = null;
  tenants.clear();
  page.stats = null;
  sessionStorage.removeItem(KEY_STORAGE);
  samples.clear();
  $("#view").replaceChildren();
  showSignIn(message);
}

// ---- boot -----------------------------------------------------------------------------------------------

function tick() {
  if (document.hidden) return;
  updateCountdown();
  if (page.view && page.view.tick) page.view.tick();
}

export async function boot() {
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
