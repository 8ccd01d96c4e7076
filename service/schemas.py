"""Pydantic models of the api's request bodies and of what it answers: the handlers validate
bodies with the first, and the OpenAPI document is built from both.

The answer models live in jobwire/resources.py (the client parses answers with them) and are
named here too. The handlers build answers with plain dicts on the hot path (jobwire.job.job_view);
tests validate those dicts against the models, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, cast
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from jobwire.batch import MAX_JOBS as MAX_BATCH_JOBS
from jobwire.events import DEFAULT_WEBHOOK_EVENTS
from jobwire.job import Priority
from jobwire.jobstore import MAX_DEPENDENCIES
from jobwire.resources import (
    Batch,
    BatchCounts,
    BatchEvent,
    BatchList,
    BatchWebhookEvent,
    BatchWebhookPayload,
    BulkResult,
    Delivery,
    DeliveryAttempt,
    DeliveryList,
    Endpoint,
    EndpointList,
    EndpointWithSecret,
    Event,
    EventType,
    Job,
    JobError,
    JobList,
    JobWebhookEvent,
    Problem,
    ProblemError,
    Schedule,
    ScheduleJobView,
    ScheduleList,
    SigningSecret,
    Status,
    WebhookEvent,
    WebhookPayload,
)
from jobwire.webhooks import ssrf

__all__ = [
    "Batch",
    "BatchCounts",
    "BatchEvent",
    "BatchJob",
    "BatchList",
    "BatchWebhookEvent",
    "BatchWebhookPayload",
    "BulkAction",
    "BulkFilter",
    "BulkResult",
    "CreateEndpoint",
    "CreateSchedule",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryList",
    "Endpoint",
    "EndpointList",
    "EndpointWithSecret",
    "Event",
    "EventType",
    "Job",
    "JobError",
    "JobList",
    "JobSpec",
    "JobTimes",
    "JobWebhookEvent",
    "Labels",
    "MoveJob",
    "Problem",
    "ProblemError",
    "Schedule",
    "ScheduleJob",
    "ScheduleJobView",
    "ScheduleList",
    "SigningSecret",
    "Status",
    "SubmitBatch",
    "SubmitJob",
    "TimesInvalid",
    "UpdateEndpoint",
    "UpdateSchedule",
    "WebhookEvent",
    "WebhookPayload",
]

# ---- requests --------------------------------------------------------------------------------


# how far ahead a job may be delayed (API.md)
MAX_DELAY = timedelta(days=366)
_MAX_DELAY_S = MAX_DELAY.total_seconds()
# a TTL past this would overflow a time (a 500); a century is no limit a job needs
_MAX_TTL_S = 100 * 365.25 * 86400


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
        default=None,
        gt=0,
        le=_MAX_TTL_S,
        description="expires this many seconds from now (not with expires_at; at most 100 years)",
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


# Labels (API.md "Labels and bulk actions"): up to 20 string keys and values; keys 1-63 characters
# of [a-z0-9_.-], values up to 255 characters. Keys are strict so that `?label=k:v` and the CLI's
# `k=v` parse one way only.
MAX_LABELS = 20
MAX_LABEL_VALUE = 255
LABEL_KEY_PATTERN = r"^[a-z0-9_.-]{1,63}$"
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)]
_LABEL_KEY = re.compile(LABEL_KEY_PATTERN)


def label_key_ok(key: str) -> bool:
    """Whether `key` is a valid label key (for filters, parsed outside a model)."""
    return _LABEL_KEY.fullmatch(key) is not None


Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_LABELS)]


class JobSpec(JobTimes):
    """What a job is, as POST /v1/jobs and each job of POST /v1/batches give it."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200, description="a registered job type, e.g. demo.sleep")
    params: dict[str, Any] = Field(default_factory=dict, description="validated by the job type's model")
    priority: Priority = Field(
        default=Priority.NORMAL, description="`high` starts before queued `normal` jobs"
    )
    webhook_url: str | None = Field(default=None, max_length=2048, description="receives the terminal event")
    labels: Labels = Field(
        default_factory=dict,
        description="up to 20 keys (1-63 chars of [a-z0-9_.-]) and values (up to 255 chars)",
    )

    _webhook_url = field_validator("webhook_url")(ssrf.canonical_url_field)


class SubmitJob(JobSpec):
    """The body of POST /v1/jobs."""

    depends_on: list[UUID] = Field(
        default_factory=list,
        max_length=MAX_DEPENDENCIES,
        description="ids of the tenant's jobs that must complete before this one starts (it is"
        " `waiting` until then; cancelled with DependencyFailed if one fails or is cancelled)",
    )

    @field_validator("depends_on")
    @classmethod
    def _distinct_dependencies(cls, value: list[UUID]) -> list[UUID]:
        # a job listed twice is one dependency
        return list(dict.fromkeys(value))


class BulkFilter(BaseModel):
    """Which jobs a bulk action is about: every field given narrows (all must hold)."""

    model_config = ConfigDict(extra="forbid")

    status: list[Status] | None = Field(default=None, min_length=1, description="any of these")
    type: str | None = Field(default=None, min_length=1, max_length=200)
    label: Labels | None = Field(default=None, description="jobs carrying every one of these labels")
    batch_id: UUID | None = None
    schedule_id: UUID | None = None
    created_before: AwareDatetime | None = None
    tenant: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="admin keys: the tenant to act on (an admin key must name one); others: their own",
    )


class BulkAction(BaseModel):
    """The body of POST /v1/jobs/bulk."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["cancel", "retry"]
    filter: BulkFilter = Field(default_factory=BulkFilter)
    all: bool = Field(default=False, description="required to act with an empty filter: every job")
    dry_run: bool = Field(default=False, description="only count: `changed` is what the action would change")


class BatchJob(JobSpec):
    """One job of POST /v1/batches: a submission, plus the jobs it waits for."""

    depends_on: list[Annotated[int, Field(ge=0)] | UUID] = Field(
        default_factory=list,
        max_length=MAX_BATCH_JOBS,
        description="indexes of earlier jobs of this batch, or ids of the tenant's existing jobs",
    )


class SubmitBatch(BaseModel):
    """The body of POST /v1/batches: all of its jobs are stored, or none."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[BatchJob] = Field(min_length=1, max_length=MAX_BATCH_JOBS)
    webhook_url: str | None = Field(
        default=None, max_length=2048, description="receives batch.completed or batch.cancelled, once"
    )
    labels: Labels = Field(default_factory=dict, description="the batch's labels (as a job's)")

    _webhook_url = field_validator("webhook_url")(ssrf.canonical_url_field)


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
