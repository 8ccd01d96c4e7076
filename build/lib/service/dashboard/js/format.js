// jobwire dashboard: DOM building and text formatting: element helpers, numbers, ids, times, tenants of jobs.

export const $ = (selector, root = document) => root.querySelector(selector);

/** Builds an element. Text is always set as text, never parsed as HTML. */
export function h(tag, props, ...children) {
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
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const number = new Intl.NumberFormat();
export const fmt = (n) => (n === null || n === undefined ? "—" : number.format(n));
// ids are UUIDv7: the leading digits are a timestamp shared by every job of the day, the tail is random
export const shortId = (id) => `…${String(id).slice(-8)}`;
export const parseTime = (iso) => (iso ? Date.parse(iso) : NaN);
export const isUuid = (text) => /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i.test(text);

export function relative(ms, now = Date.now()) {
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

export function duration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function absolute(iso) {
  const t = parseTime(iso);
  return Number.isFinite(t) ? new Date(t).toLocaleString() : "";
}

/** A <time> showing "3 min ago", kept fresh by the ticker. */
export function timeEl(iso, testid) {
  const el = h("time", { "data-rel": "", "data-testid": testid });
  updateTime(el, iso);
  return el;
}

export function updateTime(el, iso) {
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

export function json(value) {
  return JSON.stringify(value, null, 2);
}

/** The tenant a job belongs to, for admin views. The job representation does not carry it, but the
 * job-scoped stream token in `events_url` names it (`<job>|<tenant>|<expiry>`, base64url, signed). */
export function tenantOf(job) {
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

export const tenants = new Map(); // job id -> tenant, from admin feed frames and tokens
export function rememberTenant(id, tenant) {
  if (!tenant) return;
  if (tenants.size > 50000) tenants.clear();
  tenants.set(id, tenant);
}
