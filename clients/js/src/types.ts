// The api's answers, as jobwire/resources.py describes them (and /openapi.json documents them).

export type Status = "scheduled" | "waiting" | "pending" | "running" | "completed" | "failed" | "cancelled";
export type EventType =
  | "created"
  | "released"
  | "started"
  | "progress"
  | "retrying"
  | "completed"
  | "failed"
  | "cancelled";
export type Priority = "normal" | "high";

/** The statuses a job never leaves (and the events that end its stream, named the same). */
export const TERMINAL: ReadonlySet<string> = new Set(["completed", "failed", "cancelled"]);

export interface JobError {
  /** the exception's class name, e.g. JobTimeout, WorkerLost, PermanentError, Expired */
  type: string;
  message: string;
}

export interface Job<Result = unknown> {
  id: string;
  type: string;
  status: Status;
  progress: number;
  message: string | null;
  params: Record<string, unknown>;
  priority: Priority;
  result: Result | null;
  error: JobError | null;
  attempts: number;
  max_attempts: number;
  webhook_url: string | null;
  run_at: string | null;
  expires_at: string | null;
  schedule_id: string | null;
  /** the batch it was submitted in */
  batch_id: string | null;
  /** string keys and values given at submission (filter lists and bulk actions by them) */
  labels: Record<string, string>;
  /** the jobs that must complete before it starts */
  depends_on: string[];
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  status_url: string;
  /** the job's SSE stream, with a token scoped to this job: usable without an API key */
  events_url: string;
}

export interface JobList<Result = unknown> {
  items: Job<Result>[];
  next_cursor: string | null;
}

/** One event of a job's stream (the `data` of an SSE frame; its `id` is `seq`). */
export interface JobEvent<Result = unknown> {
  job_id: string;
  /** 1, 2, 3, … per job, gapless */
  seq: number;
  type: EventType;
  status: Status;
  progress: number;
  message: string | null;
  at: string;
  result?: Result | null;
  error?: JobError | null;
}

export type BatchStatus = "running" | "completed" | "cancelled";
export type BatchEventType = "progress" | "completed" | "cancelled";

/** The statuses a batch never leaves (and the events that end its stream, named the same). */
export const BATCH_TERMINAL: ReadonlySet<string> = new Set(["completed", "cancelled"]);

/** How many of a batch's jobs are in each status. */
export type BatchCounts = Record<Status, number>;

export interface Batch {
  id: string;
  /** completed: every job is terminal (`counts` tell how many failed); cancelled: by cancelBatch */
  status: BatchStatus;
  total: number;
  counts: BatchCounts;
  /** 0-100, the mean of its jobs' progress (a failed or cancelled job keeps what it reached) */
  progress: number;
  labels: Record<string, string>;
  /** receives batch.completed or batch.cancelled, once */
  webhook_url: string | null;
  created_at: string;
  /** set when its last job ended: counts and progress are final from then on */
  finished_at: string | null;
  /** GET /v1/jobs?batch_id=… (or `client.list({ batchId })`) */
  jobs_url: string;
  /** the batch's SSE stream, with a token scoped to this batch: usable without an API key */
  events_url: string;
}

export interface BatchList {
  items: Batch[];
  next_cursor: string | null;
}

/** One event of a batch's stream: its state now (`progress`, coalesced), then one `completed` or
 * `cancelled` with the final counts. Its SSE `id` versions the batch (it only grows). */
export interface BatchEvent {
  batch_id: string;
  type: BatchEventType;
  status: BatchStatus;
  total: number;
  counts: BatchCounts;
  progress: number;
  at: string | null;
}

/** The answer of a bulk action: the jobs the filter matched, and those the action changed (with
 * `dryRun`, those it would change). */
export interface BulkResult {
  matched: number;
  changed: number;
}

/** RFC 9457 problem details: every error answer of the api. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string | null;
  errors?: { loc: (string | number)[]; msg: string; type: string }[] | null;
}
