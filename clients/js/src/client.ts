import { problemOf } from "./errors.js";
import {
  TERMINAL,
  type Batch,
  type BatchList,
  type BulkResult,
  type Job,
  type JobList,
  type Priority,
  type Status,
} from "./types.js";

export interface ClientOptions {
  /** where the api is, e.g. https://jobs.example.com (default: the page's origin in a browser) */
  baseUrl?: string;
  /** an API key (`Authorization: Bearer …`); keep it on servers, never in a page's code */
  apiKey?: string;
  /** another fetch (tests, proxies); default: the global one */
  fetch?: typeof fetch;
}

/** What a job is, besides its type and params: for submit, and for each job of a batch. */
export interface JobOptions {
  priority?: Priority;
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
  /** string keys (1-63 characters of a-z 0-9 _ . -) and values; filter list and bulk by them */
  labels?: Record<string, string>;
}

export interface SubmitOptions extends JobOptions {
  /** submitting again with the same key returns the same job */
  idempotencyKey?: string;
  /** ids of jobs that must complete first; the job is `waiting` until then */
  dependsOn?: string[];
  signal?: AbortSignal;
}

/** One job of a batch: a submission, whose dependencies may also be earlier jobs of the batch. */
export interface BatchJob extends JobOptions {
  type: string;
  params?: Record<string, unknown>;
  /** indexes of earlier jobs of this batch (0, 1, …), or ids of existing jobs */
  dependsOn?: (number | string)[];
}

export interface SubmitBatchOptions {
  /** receives batch.completed or batch.cancelled, once, when the batch ends */
  webhookUrl?: string;
  /** the batch's own labels (its jobs carry only their own) */
  labels?: Record<string, string>;
  /** submitting again with the same key (and the same jobs) returns the same batch */
  idempotencyKey?: string;
  signal?: AbortSignal;
}

export interface ListOptions {
  status?: Status | Status[];
  type?: string;
  /** only the jobs carrying every one of these labels */
  labels?: Record<string, string>;
  /** only the jobs of this batch */
  batchId?: string;
  limit?: number;
  cursor?: string;
  signal?: AbortSignal;
}

export interface ListBatchesOptions {
  limit?: number;
  cursor?: string;
  signal?: AbortSignal;
}

export type BulkAction = "cancel" | "retry";

/** Which jobs a bulk action is about (every field given must hold), and how it acts. */
export interface BulkOptions {
  status?: Status | Status[];
  type?: string;
  /** jobs carrying every one of these labels */
  labels?: Record<string, string>;
  batchId?: string;
  scheduleId?: string;
  /** jobs created before this time (a Date or RFC 3339 with an offset) */
  createdBefore?: Date | string;
  /** admin keys: the tenant to act on (they must name one); other keys act on their own */
  tenant?: string;
  /** act on every job of the tenant: required when no filter field is given (else a 422) */
  all?: boolean;
  /** change nothing: `changed` is how many the action would change now */
  dryRun?: boolean;
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

  /** The SSE stream of a job or a batch as an absolute URL, ready for followJob or followBatch
   * (it carries its own token). */
  eventsUrl(jobOrBatch: { events_url: string }): string {
    return this.url(jobOrBatch.events_url);
  }

  async submit<Result = unknown>(
    type: string,
    params: Record<string, unknown> = {},
    options: SubmitOptions = {},
  ): Promise<Job<Result>> {
    const body = jobBody(type, params, options);
    if (options.dependsOn?.length) body.depends_on = options.dependsOn;
    const response = await this.request("POST", "/v1/jobs", {
      body: JSON.stringify(body),
      headers: jsonHeaders(options.idempotencyKey),
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
    for (const [key, value] of Object.entries(options.labels ?? {})) query.append("label", `${key}:${value}`);
    if (options.batchId) query.set("batch_id", options.batchId);
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

  /**
   * Submit up to 1,000 jobs as one batch, all or nothing: a job at fault is a 422 whose `loc` names
   * its index (`["body", "jobs", 3, "params", "seconds"]`) and nothing is stored. Follow it with
   * `followBatch(client.eventsUrl(batch), …)`; its jobs are `list({ batchId: batch.id })`.
   */
  async submitBatch(jobs: BatchJob[], options: SubmitBatchOptions = {}): Promise<Batch> {
    const body: Record<string, unknown> = {
      jobs: jobs.map((job) => {
        const spec = jobBody(job.type, job.params ?? {}, job);
        if (job.dependsOn?.length) spec.depends_on = job.dependsOn;
        return spec;
      }),
    };
    if (options.webhookUrl) body.webhook_url = options.webhookUrl;
    if (options.labels && Object.keys(options.labels).length) body.labels = options.labels;
    const response = await this.request("POST", "/v1/batches", {
      body: JSON.stringify(body),
      headers: jsonHeaders(options.idempotencyKey),
      signal: options.signal,
    });
    return (await response.json()) as Batch;
  }

  async getBatch(batchId: string, signal?: AbortSignal): Promise<Batch> {
    const response = await this.request("GET", batchPath(batchId), { signal });
    return (await response.json()) as Batch;
  }

  /** One page of batches, newest first; pass `next_cursor` back as `cursor` for the next. */
  async listBatches(options: ListBatchesOptions = {}): Promise<BatchList> {
    const query = new URLSearchParams();
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.cursor) query.set("cursor", options.cursor);
    const suffix = query.size ? `?${query}` : "";
    const response = await this.request("GET", `/v1/batches${suffix}`, { signal: options.signal });
    return (await response.json()) as BatchList;
  }

  /** Cancel every unfinished job of the batch (running ones are interrupted); a batch that is not
   * running any more is a 409. */
  async cancelBatch(batchId: string, signal?: AbortSignal): Promise<Batch> {
    const response = await this.request("POST", `${batchPath(batchId)}/cancel`, { signal });
    return (await response.json()) as Batch;
  }

  /**
   * Cancel or retry every job the filter matches, as their own routes would (`dryRun`: only count).
   * An empty filter is a 422 unless `all: true`.
   */
  async bulk(action: BulkAction, options: BulkOptions = {}): Promise<BulkResult> {
    const filter: Record<string, unknown> = {};
    if (options.status) filter.status = [options.status].flat();
    if (options.type) filter.type = options.type;
    if (options.labels && Object.keys(options.labels).length) filter.label = options.labels;
    if (options.batchId) filter.batch_id = options.batchId;
    if (options.scheduleId) filter.schedule_id = options.scheduleId;
    if (options.createdBefore !== undefined) filter.created_before = time(options.createdBefore);
    if (options.tenant) filter.tenant = options.tenant;
    const body = { action, filter, all: options.all ?? false, dry_run: options.dryRun ?? false };
    const response = await this.request("POST", "/v1/jobs/bulk", {
      body: JSON.stringify(body),
      headers: jsonHeaders(),
      signal: options.signal,
    });
    return (await response.json()) as BulkResult;
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

function batchPath(batchId: string): string {
  return `/v1/batches/${encodeURIComponent(batchId)}`;
}

/** A job's body on the wire (POST /v1/jobs, and each job of POST /v1/batches). */
function jobBody(type: string, params: Record<string, unknown>, options: JobOptions): Record<string, unknown> {
  const body: Record<string, unknown> = { type, params };
  if (options.priority) body.priority = options.priority;
  if (options.webhookUrl) body.webhook_url = options.webhookUrl;
  if (options.runAt !== undefined) body.run_at = time(options.runAt);
  if (options.delayS !== undefined) body.delay_s = options.delayS;
  if (options.expiresAt !== undefined) body.expires_at = time(options.expiresAt);
  if (options.ttlS !== undefined) body.ttl_s = options.ttlS;
  if (options.labels && Object.keys(options.labels).length) body.labels = options.labels;
  return body;
}

function jsonHeaders(idempotencyKey?: string): Record<string, string> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  return headers;
}

function time(value: Date | string): string {
  return value instanceof Date ? value.toISOString() : value;
}

