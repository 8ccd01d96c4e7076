import { problemOf } from "./errors.js";
import { TERMINAL, type Job, type JobList, type Priority, type Status } from "./types.js";

export interface ClientOptions {
  /** where the api is, e.g. https://jobs.example.com (default: the page's origin in a browser) */
  baseUrl?: string;
  /** an API key (`Authorization: Bearer …`); keep it on servers, never in a page's code */
  apiKey?: string;
  /** another fetch (tests, proxies); default: the global one */
  fetch?: typeof fetch;
}

export interface SubmitOptions {
  priority?: Priority;
  /** submitting again with the same key returns the same job */
  idempotencyKey?: string;
  /** receives the job's terminal event, signed */
  webhookUrl?: string;
  /** run at this time (a Date or RFC 3339 with an offset); `scheduled` until then */
  runAt?: Date | string;
  /** run this many seconds from now */
  delayS?: number;
  /** a job not started by then ends cancelled (error Expired) */
  expiresAt?: Date | string;
  /** expires this many seconds from now */
  ttlS?: number;
  /** ids of jobs that must complete first; the job is `waiting` until then */
  dependsOn?: string[];
  signal?: AbortSignal;
}

export interface ListOptions {
  status?: Status | Status[];
  type?: string;
  limit?: number;
  cursor?: string;
  signal?: AbortSignal;
}

export interface WaitOptions {
  /** give up (a TimeoutError) after this many seconds; default: wait for as long as it takes */
  timeoutS?: number;
  signal?: AbortSignal;
}

/** the longest hold the api grants a long-poll (GET /v1/jobs/{id}?wait=) */
const MAX_WAIT_S = 60;

/** jobwire's REST api on fetch: answers as typed objects, failures as ApiError. */
export class Client {
  readonly baseUrl: string;
  private readonly apiKey: string | undefined;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ClientOptions = {}) {
    const base = options.baseUrl ?? globalThis.location?.origin;
    if (!base) throw new TypeError("jobwire: give baseUrl (there is no page origin to default to)");
    this.baseUrl = base.replace(/\/+$/, "");
    this.apiKey = options.apiKey;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** An absolute URL for a path or URL the api answered with (status_url, events_url). */
  url(pathOrUrl: string): string {
    return new URL(pathOrUrl, this.baseUrl + "/").toString();
  }

  /** The job's SSE stream as an absolute URL, ready for followJob (it carries its own token). */
  eventsUrl(job: Pick<Job, "events_url">): string {
    return this.url(job.events_url);
  }

  async submit<Result = unknown>(
    type: string,
    params: Record<string, unknown> = {},
    options: SubmitOptions = {},
  ): Promise<Job<Result>> {
    const body: Record<string, unknown> = { type, params };
    if (options.priority) body.priority = options.priority;
    if (options.webhookUrl) body.webhook_url = options.webhookUrl;
    if (options.runAt !== undefined) body.run_at = time(options.runAt);
    if (options.delayS !== undefined) body.delay_s = options.delayS;
    if (options.expiresAt !== undefined) body.expires_at = time(options.expiresAt);
    if (options.ttlS !== undefined) body.ttl_s = options.ttlS;
    if (options.dependsOn?.length) body.depends_on = options.dependsOn;
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
    const response = await this.request("POST", "/v1/jobs", {
      body: JSON.stringify(body),
      headers,
      signal: options.signal,
    });
    return (await response.json()) as Job<Result>;
  }

  async get<Result = unknown>(jobId: string, signal?: AbortSignal): Promise<Job<Result>> {
    const response = await this.request("GET", jobPath(jobId), { signal });
    return (await response.json()) as Job<Result>;
  }

  /** One page of jobs, newest first; pass `next_cursor` back as `cursor` for the next. */
  async list<Result = unknown>(options: ListOptions = {}): Promise<JobList<Result>> {
    const query = new URLSearchParams();
    if (options.status) query.set("status", [options.status].flat().join(","));
    if (options.type) query.set("type", options.type);
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.cursor) query.set("cursor", options.cursor);
    const suffix = query.size ? `?${query}` : "";
    const response = await this.request("GET", `/v1/jobs${suffix}`, { signal: options.signal });
    return (await response.json()) as JobList<Result>;
  }

  /** The job once it has ended: long-polls (one request per change of the job, none between). */
  async wait<Result = unknown>(jobId: string, options: WaitOptions = {}): Promise<Job<Result>> {
    const deadline = options.timeoutS === undefined ? null : Date.now() + options.timeoutS * 1000;
    let job: Job<Result> | null = null;
    let etag: string | null = null;
    for (;;) {
      let path = jobPath(jobId);
      const headers: Record<string, string> = {};
      if (job !== null && etag !== null) {
        let hold = MAX_WAIT_S;
        if (deadline !== null) {
          const left = (deadline - Date.now()) / 1000;
          if (left <= 0) {
            throw new DOMException(`job ${jobId} is still ${job.status}`, "TimeoutError");
          }
          hold = Math.max(1, Math.min(MAX_WAIT_S, Math.ceil(left)));
        }
        path += `?wait=${hold}`;
        headers["If-None-Match"] = etag;
      }
      const response = await this.request("GET", path, { headers, signal: options.signal, allow304: true });
      if (response.status !== 304) {
        job = (await response.json()) as Job<Result>;
        etag = response.headers.get("ETag");
        if (TERMINAL.has(job.status)) return job;
      }
    }
  }

  async cancel<Result = unknown>(jobId: string, signal?: AbortSignal): Promise<Job<Result>> {
    const response = await this.request("POST", `${jobPath(jobId)}/cancel`, { signal });
    return (await response.json()) as Job<Result>;
  }

  async retry<Result = unknown>(jobId: string, signal?: AbortSignal): Promise<Job<Result>> {
    const response = await this.request("POST", `${jobPath(jobId)}/retry`, { signal });
    return (await response.json()) as Job<Result>;
  }

  private async request(
    method: string,
    path: string,
    init: { body?: string; headers?: Record<string, string>; signal?: AbortSignal | undefined; allow304?: boolean },
  ): Promise<Response> {
    const headers: Record<string, string> = { Accept: "application/json", ...init.headers };
    if (this.apiKey) headers.Authorization = `Bearer ${this.apiKey}`;
    const response = await this.fetchImpl(this.baseUrl + path, {
      method,
      headers,
      body: init.body ?? null,
      signal: init.signal ?? null,
    });
    if (response.ok || (init.allow304 && response.status === 304)) return response;
    throw await problemOf(response);
  }
}

function jobPath(jobId: string): string {
  return `/v1/jobs/${encodeURIComponent(jobId)}`;
}

function time(value: Date | string): string {
  return value instanceof Date ? value.toISOString() : value;
}

