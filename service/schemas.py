"""Pydantic models of the api's request bodies and of what it answers: the handlers validate
bodies with the first, and the OpenAPI document is built from both.

The answer models live in jobwire/resources.py (the client parses answers with them) and are
named here too. The handlers build answers with plain dicts on the hot path (jobwire.job.job_view);
tests validate those dicts against the models, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobwire.events import DEFAULT_WEBHOOK_EVENTS
from jobwire.job import Priority
from jobwire.resources import (
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
    Problem,
    ProblemError,
    SigningSecret,
    Status,
    WebhookEvent,
)
from jobwire.webhooks import ssrf

__all__ = [
    "CreateEndpoint",
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
    "Problem",
    "ProblemError",
    "SigningSecret",
    "Status",
    "SubmitJob",
    "UpdateEndpoint",
    "WebhookEvent",
]

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
