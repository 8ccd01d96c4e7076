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

/** RFC 9457 problem details: every error answer of the api. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string | null;
  errors?: { loc: (string | number)[]; msg: string; type: string }[] | null;
}
