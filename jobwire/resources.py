"""The api's answers as typed models: jobs, events, problems, webhook endpoints and deliveries.

The api documents its answers with them (service/openapi.py) and the client (`jobwire.Client`)
parses them, so both speak one vocabulary. They accept fields they do not know (extra="allow"): a
client keeps working against a newer api; the api's tests check that its answers hold no field
these models do not name. The `Literal`s spell values whose truth is elsewhere in jobwire (statuses,
event types, webhook event names) so that the OpenAPI document lists them as an enum; unit tests
bind each to its source.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["scheduled", "waiting", "pending", "running", "completed", "failed", "cancelled"]
EventType = Literal[
    "created", "released", "started", "progress", "retrying", "completed", "failed", "cancelled"
]
# jobwire.events.WEBHOOK_EVENTS, then BATCH_WEBHOOK_EVENTS
JobWebhookEvent = Literal["job.completed", "job.failed", "job.cancelled", "job.started", "job.progress"]
BatchWebhookEvent = Literal["batch.completed", "batch.cancelled"]
WebhookEvent = Literal[
    "job.completed", "job.failed", "job.cancelled", "job.started", "job.progress", "batch.completed",
    "batch.cancelled",
]  # fmt: skip


class Resource(BaseModel):
    model_config = ConfigDict(extra="allow")


class JobError(Resource):
    type: str = Field(description="the exception's class name, e.g. JobTimeout, WorkerLost, PermanentError")
    message: str


class Job(Resource):
    id: str = Field(description="UUIDv7")
    type: str
    status: Status
    progress: float = Field(ge=0, le=100)
    message: str | None
    params: dict[str, Any]
    priority: Literal["normal", "high"]
    result: Any = Field(description="what the job function returned, on completed")
    error: JobError | None
    attempts: int
    max_attempts: int
    webhook_url: str | None
    run_at: str | None = Field(description="a delayed job's due time; null when it was not delayed")
    expires_at: str | None = Field(description="not started by then, it ends cancelled (Expired)")
    schedule_id: str | None = Field(description="the schedule that submitted it")
    batch_id: str | None = Field(description="the batch it was submitted in")
    labels: dict[str, str] = Field(description="string keys and values, filterable with ?label=k:v")
    depends_on: list[str] = Field(description="the jobs that must complete before it starts")
    created_at: str
    started_at: str | None
    finished_at: str | None
    status_url: str
    events_url: str = Field(
        description="the SSE stream, with a token scoped to this job (valid while the job can run, and"
        " JOBWIRE_STREAM_TOKEN_TTL_S after it ends)"
    )


class JobList(Resource):
    items: list[Job]
    next_cursor: str | None


class Event(Resource):
    job_id: str
    seq: int = Field(ge=1, description="per job: 1, 2, 3, … gapless")
    type: EventType
    status: Status
    progress: float
    message: str | None
    at: str
    result: Any = Field(default=None, description="on completed")
    error: JobError | None = Field(default=None, description="on failed and retrying")


class ProblemError(Resource):
    loc: list[str | int]
    msg: str
    type: str


class Problem(Resource):
    """RFC 9457 problem details (application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ProblemError] | None = None


class Endpoint(Resource):
    id: str
    url: str
    events: list[str]
    description: str
    disabled: bool
    disabled_reason: str | None
    disabled_at: str | None
    failing_since: str | None = Field(description="the first failure since the last success")
    created_at: str
    updated_at: str


class EndpointWithSecret(Endpoint):
    secret: str = Field(description="whsec_…; shown only when created or rotated")


class EndpointList(Resource):
    items: list[Endpoint]
    next_cursor: str | None


class SigningSecret(Resource):
    secret: str = Field(description="signs deliveries to jobs' own webhook_url")
    created_at: str
    rotated_at: str | None
    previous_secret_expires_at: str | None = Field(description="until then the old secret signs too")


class DeliveryAttempt(Resource):
    at: str
    status_code: int | None = Field(description="null when there was no answer (timeout, refused)")
    error: str | None
    duration_ms: float


class Delivery(Resource):
    id: str
    job_id: str | None = Field(description="null for a batch's webhook")
    batch_id: str | None = Field(default=None, description="set for a batch's webhook (batch.*)")
    endpoint_id: str | None = Field(description="null: the job's own webhook_url")
    url: str
    event_type: str
    webhook_id: str = Field(description="the webhook-id header: the same on every attempt and redelivery")
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    delivered_at: str | None
    attempt_history: list[DeliveryAttempt]


class WebhookPayload(Resource):
    """The body of a webhook delivery (signed per Standard Webhooks: see verify_webhook)."""

    type: JobWebhookEvent
    timestamp: str = Field(description="when the event happened (the job's updated_at), RFC 3339")
    data: Job = Field(description="the job right after the event")


class DeliveryList(Resource):
    items: list[Delivery]
    next_cursor: str | None


class ScheduleJobView(Resource):
    type: str
    params: dict[str, Any]
    priority: Literal["normal", "high"]
    webhook_url: str | None


class Schedule(Resource):
    id: str
    name: str
    description: str
    cron: str | None
    interval_s: float | None
    timezone: str
    job: ScheduleJobView
    overlap: Literal["skip", "allow"]
    paused: bool
    next_run_at: str | None = Field(description="the next slot; null while paused")
    last_run_at: str | None = Field(description="the slot last fired, or the time of the last trigger")
    last_job_id: str | None
    created_at: str
    updated_at: str


class ScheduleList(Resource):
    items: list[Schedule]
    next_cursor: str | None


class BulkResult(Resource):
    matched: int = Field(ge=0, description="jobs the filter matched when the action started")
    changed: int = Field(
        ge=0,
        description="those the action applied to (cancel: unfinished ones, a running one's cancel "
        "requested; retry: failed and cancelled ones); with dry_run, those it would apply to",
    )


class BatchCounts(Resource):
    """How many of the batch's jobs are in each status."""

    scheduled: int
    waiting: int
    pending: int
    running: int
    completed: int
    failed: int
    cancelled: int


class Batch(Resource):
    id: str = Field(description="UUIDv7")
    status: Literal["running", "completed", "cancelled"] = Field(
        description="completed: every job is terminal (counts tell how many failed); cancelled: by"
        " POST /v1/batches/{id}/cancel"
    )
    total: int
    counts: BatchCounts
    progress: float = Field(
        ge=0, le=100, description="the mean of its jobs' progress (a failed or cancelled job keeps its own)"
    )
    labels: dict[str, str]
    webhook_url: str | None = Field(description="receives batch.completed or batch.cancelled, once")
    created_at: str
    finished_at: str | None
    jobs_url: str = Field(description="GET /v1/jobs?batch_id=…")
    events_url: str = Field(description="the batch's SSE stream, with a token scoped to this batch")


class BatchList(Resource):
    items: list[Batch]
    next_cursor: str | None


class BatchEvent(Resource):
    """One event of a batch's stream: `progress` (coalesced), then one `completed` or `cancelled`
    with the final counts."""

    batch_id: str
    type: Literal["progress", "completed", "cancelled"]
    status: Literal["running", "completed", "cancelled"]
    total: int
    counts: BatchCounts
    progress: float
    at: str | None


class BatchWebhookPayload(Resource):
    """The body of a batch's webhook: once per batch, after every job's own."""

    type: BatchWebhookEvent
    timestamp: str = Field(description="when the batch settled, RFC 3339")
    data: Batch = Field(description="the batch with its final counts")
