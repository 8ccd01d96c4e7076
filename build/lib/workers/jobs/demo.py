"""Demonstration job types: one that sleeps and reports progress, one that fails."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from jobwire.context import JobContext
from jobwire.errors import PermanentError
from jobwire.registry import Backoff, job_type


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(default=1.0, ge=0, le=3600, description="total time to sleep")
    steps: int = Field(default=1, ge=1, le=10_000, description="progress is reported after each step")


@job_type("demo.sleep", timeout=3700, max_attempts=3)
async def sleep(ctx: JobContext, params: SleepParams) -> dict[str, float | int]:
    """Sleeps `seconds` in `steps` equal steps, reporting progress after each."""
    step = params.seconds / params.steps
    for i in range(1, params.steps + 1):
        await asyncio.sleep(step)
        ctx.progress(100 * i / params.steps, f"step {i}/{params.steps}")
    return {"slept": params.seconds, "steps": params.steps}


class FailParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(default="demo failure", max_length=1000)
    retryable: bool = Field(
        default=False, description="fail with a retryable error instead of a permanent one"
    )


class DemoFailure(Exception):
    """A retryable failure."""


@job_type("demo.fail", timeout=60, max_attempts=3, backoff=Backoff(base_s=0.5, factor=2, max_s=5))
async def fail(ctx: JobContext, params: FailParams) -> None:
    """Raises: a permanent error, or a retryable one that is tried `max_attempts` times."""
    if params.retryable:
        raise DemoFailure(params.message)
    raise PermanentError(params.message)
