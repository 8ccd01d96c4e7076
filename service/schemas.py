"""Pydantic models of the api's request bodies and of what it answers: the handlers validate
bodies with the first, and the OpenAPI document is built from both.

The handlers build answers with plain dicts on the hot path (jobwire.job.job_view); a test validates
those dicts against these models, so the two cannot drift apart. The `Literal`s below spell values
whose truth is in jobwire (statuses, event types, webhook event names) so that the document lists
them as an enum; unit tests bind each to its source.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobwire.events import DEFAULT_WEBHOOK_EVENTS
from jobwire.job import Priority
from jobwire.webhooks import ssrf

Status = Literal["pending", "running", "completed", "failed", "cancelled"]
EventType = Literal["created", "started", "progress", "retrying", "completed", "failed", "cancelled"]
# jobwire.events.WEBHOOK_EVENTS
WebhookEvent = Literal["job.completed", "job.failed", "job.cancelled", "job.started", "job.progress"]

# ---- requests --------------------------------------------------------------------------------


class SubmitJob(BaseModel):
    """The body of POST /v1/jobs."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200, description="a registered job type, e.g. demo.sleep")
    params: dict[str, Any] = Field(default_factory=dict, description="validated by the job type's model")
    priority: Priority = Field(
        default=Priority.NORMAL, description="`high` starts before queued `normal` jobs"
    )
    webhook_url: str | None = Field(default=None, max_length=2048, description="receives the terminal event")

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
    created_at: str
    started_at: str | None
    finished_at: str | None
    status_url: str
    events_url: str = Field(description="the SSE stream, with a token scoped to this job (valid while the job can run, and JOBWIRE_STREAM_TOKEN_TTL_S after it ends)")


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
