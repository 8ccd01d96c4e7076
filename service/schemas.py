"""Pydantic models of what the api answers, for the OpenAPI document. The handlers build these
shapes with plain dicts on the hot path (common.models.job_view); a test validates those dicts
against these models, so the two cannot drift apart."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["pending", "running", "completed", "failed", "cancelled"]
EventType = Literal["created", "started", "progress", "retrying", "completed", "failed", "cancelled"]


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
