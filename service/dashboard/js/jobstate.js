// jobwire dashboard: A job as the page knows it: live events applied in order, REST snapshots merged without going back.

import { TERMINAL } from "./constants.js";

/** Applies one feed event to a job object; false if it was not newer than what the job has. */
export function applyEvent(job, ev) {
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
export function mergeFetched(fresh, known, fetchStartedAt, seq) {
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
export function seqOfEtag(etag) {
  const match = /^W\/"(\d+)"$/.exec(etag || "");
  return match ? Number(match[1]) : undefined;
}
