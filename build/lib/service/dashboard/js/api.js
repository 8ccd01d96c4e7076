// jobwire dashboard: The REST API: one call() for every request, and the text of a problem answer.

import { signOut } from "./main.js";
import { session } from "./session.js";

/** One request; never throws. Returns {status, ok, data} (status 0: the api did not answer). */
export async function call(method, path, { body, key } = {}) {
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
export function problemText(r) {
  if (r.status === 0) return "The api is unreachable: no answer (network error).";
  const d = r.data || {};
  const title = d.title || r.statusText || "Error";
  return d.detail ? `${r.status} ${title}: ${d.detail}` : `${r.status} ${title}`;
}
