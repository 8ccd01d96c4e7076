"""Pydantic models of the api's request bodies and of what it answers: the handlers validate
bodies with the first, and the OpenAPI document is built from both.

The handlers build answers with plain dicts on the hot path (jobwire.job.job_view); a test validates
those dicts against these models, so the two cannot drift apart. The `Literal`s below spell values
whose truth is in jobwire (statuses, event types, webhook event names) so that the document lists
them as an enum; unit tests bind each to its source.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from jobwire.events import DEFAULT_WEBHOOK_EVENTS
from jobwire.job import Priority
from jobwire.webhooks import ssrf

Status = Literal["scheduled", "pending", "running", "completed", "failed", "cancelled"]
EventType = Literal["created", "started", "progress", "retrying", "completed", "failed", "cancelled"]
# jobwire.events.WEBHOOK_EVENTS
WebhookEvent = Literal["job.completed", "job.failed", "job.cancelled", "job.started", "job.progress"]

# ---- requests --------------------------------------------------------------------------------


# how far ahead a job may be delayed (API.md)
MAX_DELAY = timedelta(days=366)
_MAX_DELAY_S = MAX_DELAY.total_seconds()


class JobTimes(BaseModel):
    """When a job runs and until when it may start: absolute (`run_at`, `expires_at`) or relative
    to now (`delay_s`, `ttl_s`), one of each pair. `resolve` turns them into times and names the
    field at fault (a ValueError `(loc, detail)`) when they cannot work."""

    run_at: AwareDatetime | None = Field(
        default=None, description="RFC 3339 with an offset; the job is `scheduled` until then (past: now)"
    )
    delay_s: float | None = Field(
        default=None, ge=0, le=_MAX_DELAY_S, description="run this many seconds from now (not with run_at)"
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="a job not started by then ends `cancelled` with error Expired"
    )
    ttl_s: float | None = Field(
        default=None, gt=0, description="expires this many seconds from now (not with expires_at)"
    )

    def resolve(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """(run_at, expires_at) as times; raises TimesInvalid naming the field at fault."""
        if self.run_at is not None and self.delay_s is not None:
            raise TimesInvalid("delay_s", "give run_at or delay_s, not both")
        if self.expires_at is not None and self.ttl_s is not None:
            raise TimesInvalid("ttl_s", "give expires_at or ttl_s, not both")
        run_at = self.run_at
        if self.delay_s is not None:
            run_at = now + timedelta(seconds=self.delay_s)
        if run_at is not None:
            run_at = run_at.astimezone(UTC)
            if run_at - now > MAX_DELAY:
                raise TimesInvalid("run_at", "run_at may be at most 366 days ahead")
        expires_at = self.expires_at
        if self.ttl_s is not None:
            expires_at = now + timedelta(seconds=self.ttl_s)
        if expires_at is not None:
            expires_at = expires_at.astimezone(UTC)
            if expires_at <= now:
                raise TimesInvalid("expires_at", "expires_at is in the past: the job could never start")
            if run_at is not None and expires_at <= run_at:
                field = "ttl_s" if self.ttl_s is not None else "expires_at"
                raise TimesInvalid(field, "the job would expire before its run_at: it could never start")
        return run_at, expires_at


class TimesInvalid(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


class MoveJob(BaseModel):
    """The body of PATCH /v1/jobs/{id}: a scheduled job's new time, absolute or from now."""

    model_config = ConfigDict(extra="forbid")

    run_at: AwareDatetime | None = Field(default=None, description="the new time (past: now)")
    delay_s: float | None = Field(default=None, ge=0, le=_MAX_DELAY_S, description="from now")

    def resolve(self, now: datetime) -> datetime:
        if (self.run_at is None) == (self.delay_s is None):
            raise TimesInvalid("run_at", "give exactly one of run_at and delay_s")
        if self.delay_s is not None:
            return now + timedelta(seconds=self.delay_s)
        assert self.run_at is not None
        run_at = self.run_at.astimezone(UTC)
        if run_at - now > MAX_DELAY:
            raise TimesInvalid("run_at", "run_at may be at most 366 days ahead")
        return run_at


class SubmitJob(JobTimes):
    """The body of POST /v1/jobs."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200, description="a registered job type, e.g. demo.sleep")
    params: dict[str, Any] = Field(default_factory=dict, description="validated by the job type's model")
    priority: Priority = Field(
        default=Priority.NORMAL, description="`high` starts before queued `normal` jobs"
    )
    webhook_url: str | None = Field(default=None, max_length=2048, description="receives the terminal event")

    _webhook_url = field_validator("webhook_url")(ssrf.canonical_url_field)


class ScheduleJob(BaseModel):
    """The job a schedule submits: validated like a submission (params by the type's model)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200, description="a registered job type")
    params: dict[str, Any] = Field(default_factory=dict, description="validated by the job type's model")
    priority: Priority = Field(default=Priority.NORMAL)
    webhook_url: str | None = Field(default=None, max_length=2048, description="receives each terminal event")

    _webhook_url = field_validator("webhook_url")(ssrf.canonical_url_field)


def _schedule_name(value: str | None) -> str | None:
    if value is not None and (not value.isprintable() or value != value.strip()):
        raise ValueError("a name is printable, without leading or trailing spaces")
    return value


# the longest interval: a year (a longer one is a cron expression)
_MAX_INTERVAL_S = 366 * 86400


class CreateSchedule(BaseModel):
    """The body of POST /v1/schedules: `cron` or `interval_s`, exactly one."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="unique among the tenant's schedules")
    description: str = Field(default="", max_length=500)
    cron: str | None = Field(
        default=None,
        max_length=200,
        description="5 fields, 6 with seconds first, or @yearly @monthly @weekly @daily @hourly",
    )
    interval_s: float | None = Field(
        default=None, ge=1, le=_MAX_INTERVAL_S, description="every this many seconds"
    )
    timezone: str = Field(default="UTC", max_length=100, description="IANA name; the cron's local time")
    job: ScheduleJob
    overlap: Literal["skip", "allow"] = Field(
        default="skip", description="skip: no new run while the previous one is not finished"
    )
    paused: bool = False

    _name = field_validator("name")(_schedule_name)


class UpdateSchedule(BaseModel):
    """The body of PATCH /v1/schedules/{id}: any subset of the fields (`job` replaces the whole
    job); `cron` and `interval_s` replace one another."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=500)
    cron: str | None = Field(default=None, max_length=200)
    interval_s: float | None = Field(default=None, ge=1, le=_MAX_INTERVAL_S)
    timezone: str | None = Field(default=None, max_length=100)
    job: ScheduleJob | None = None
    overlap: Literal["skip", "allow"] | None = None
    paused: bool | None = Field(default=None, description="true pauses, false resumes")

    _name = field_validator("name")(_schedule_name)


def _default_events() -> list[WebhookEvent]:
    return cast(list[WebhookEvent], list(DEFAULT_WEBHOOK_EVENTS))  # a test binds the two


def _distinct_events(value: list[str] | None) -> list[str] | None:
    if value is not None and len(set(value)) != len(value):
        raise ValueError("list each event type once")
    return value


class CreateEndpoint(BaseModel):
    """The body of POST /v1/webhooks."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="an absolute http(s) URL on a public address")
    events: list[WebhookEvent] = Field(
        default_factory=_default_events,
        min_length=1,
        description="the event types to receive (default: the terminal ones)",
    )
    description: str = Field(default="", max_length=500)

    _url = field_validator("url")(ssrf.canonical_url_field)
    _unique = field_validator("events")(_distinct_events)


class UpdateEndpoint(BaseModel):
    """The body of PATCH /v1/webhooks/{id}: any subset of the fields."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2048)
    events: list[WebhookEvent] | None = Field(default=None, min_length=1)
    description: str | None = Field(default=None, max_length=500)
    disabled: bool | None = Field(
        default=None, description="false re-enables an endpoint disabled by failures"
    )

    _url = field_validator("url")(ssrf.canonical_url_field)
    _unique = field_validator("events")(_distinct_events)


# ---- answers ---------------------------------------------------------------------------------


class JobError(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(description="the exception's class name, e.g. JobTimeout, WorkerLost, PermanentError")
    message: str


class Job(BaseModel):
    model_config = ConfigDict(extra="forbid")
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
    created_at: str
    started_at: str | None
    finished_at: str | None
    status_url: str
    events_url: str = Field(description="the SSE stream, with a short-lived token scoped to this job")


class JobList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Job]
    next_cursor: str | None


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job_id: str
    seq: int = Field(ge=1, description="per job: 1, 2, 3, … gapless")
    type: EventType
    status: Status
    progress: float
    message: str | None
    at: str
    result: Any = Field(default=None, description="on completed")
    error: JobError | None = Field(default=None, description="on failed and retrying")


class ScheduleJobView(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    params: dict[str, Any]
    priority: Literal["normal", "high"]
    webhook_url: str | None


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
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


class ScheduleList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Schedule]
    next_cursor: str | None


class ProblemError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details (application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ProblemError] | None = None


class Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
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


class EndpointList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Endpoint]
    next_cursor: str | None


class SigningSecret(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: str = Field(description="signs deliveries to jobs' own webhook_url")
    created_at: str
    rotated_at: str | None
    previous_secret_expires_at: str | None = Field(description="until then the old secret signs too")


class DeliveryAttempt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: str
    status_code: int | None = Field(description="null when there was no answer (timeout, refused)")
    error: str | None
    duration_ms: float


class Delivery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    job_id: str
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


class DeliveryList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Delivery]
    next_cursor: str | None
