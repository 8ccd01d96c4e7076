"""Demonstration job types: one that sleeps and reports progress, one that fails, and one that adds
up the results of the jobs it depends on (fan-in)."""

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


class SumParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add: float = Field(default=0, description="a number added to the sum of the dependencies' results")


def _number(result: object) -> float:
    """A dependency's result as a number: a number, or a demo job's `{"sum": …}`."""
    if isinstance(result, dict):
        result = result.get("sum")
    if isinstance(result, bool) or not isinstance(result, int | float):
        raise PermanentError(f"a dependency's result is not a number or a demo.sum result: {result!r}")
    return float(result)


@job_type("demo.sum", timeout=60, max_attempts=1)
async def sum_(ctx: JobContext, params: SumParams) -> dict[str, float | int]:
    """Fan-in: adds `add` to the sums its dependencies returned (`ctx.dependency_results`). With no
    dependencies it returns `add`, so a first layer of jobs is `demo.sum` with `add` alone."""
    total = params.add + sum(_number(r) for r in ctx.dependency_results.values())
    return {"sum": total, "inputs": len(ctx.dependency_results)}
