"""Job types used only by the tests (loaded with JOBWIRE_JOB_MODULES=tests.jobtypes)."""

from __future__ import annotations

import asyncio
import os
import time

from pydantic import BaseModel

from jobwire.context import JobContext
from jobwire.errors import PermanentError
from jobwire.registry import Backoff, job_type

# what the in-process workers' job functions observed, by job id
OBSERVED: dict[str, list[str]] = {}
# set by a test to let an in-process `test.stall` run finish, by job id
RELEASE: dict[str, asyncio.Event] = {}


class Empty(BaseModel):
    pass


class Block(BaseModel):
    seconds: float = 30


@job_type("test.block", timeout=120, max_attempts=1)
async def block(ctx: JobContext, params: Block) -> str:
    """Reports progress, then sleeps; records whether it saw a cancellation."""
    seen = OBSERVED.setdefault(str(ctx.job_id), [])
    seen.append(f"start {ctx.attempt}")
    ctx.progress(10, "blocking")
    try:
        await asyncio.sleep(params.seconds)
    except asyncio.CancelledError:
        seen.append("cancelled")
        raise
    seen.append("done")
    return "unblocked"


class Spin(BaseModel):
    calls: int = 10_000


@job_type("test.spin", timeout=60, max_attempts=1)
async def spin(ctx: JobContext, params: Spin) -> int:
    """Calls progress() in a tight loop, yielding now and then."""
    for i in range(1, params.calls + 1):
        ctx.progress(100 * i / params.calls, f"call {i}")
        if i % 500 == 0:
            await asyncio.sleep(0)
    return params.calls


@job_type("test.slow", timeout=0.3, max_attempts=2, backoff=Backoff(base_s=0.05, factor=1, max_s=0.05))
async def slow(ctx: JobContext, params: Empty) -> None:
    """Always exceeds its timeout."""
    await asyncio.sleep(10)


@job_type("test.flaky", timeout=10, max_attempts=3, backoff=Backoff(base_s=0.05, factor=2, max_s=1))
async def flaky(ctx: JobContext, params: Empty) -> dict[str, int]:
    """Fails on its first two attempts, succeeds on the third."""
    if ctx.attempt < 3:
        raise ConnectionError(f"attempt {ctx.attempt} failed")
    return {"attempt": ctx.attempt}


@job_type("test.bad_result", timeout=10, max_attempts=3)
async def bad_result(ctx: JobContext, params: Empty) -> object:
    """Returns something that is not JSON."""
    return object()


@job_type("test.nul_result", timeout=10, max_attempts=3)
async def nul_result(ctx: JobContext, params: Empty) -> object:
    """Returns JSON that PostgreSQL's jsonb cannot hold (a NUL character)."""
    return {"text": "a\x00b"}


@job_type(
    "test.fail_on_cancel", timeout=30, max_attempts=3, backoff=Backoff(base_s=0.05, factor=1, max_s=0.05)
)
async def fail_on_cancel(ctx: JobContext, params: Empty) -> None:
    """Fails with a retryable error the moment its cancel is requested, whether it sees the flag
    itself or is interrupted by the heartbeat delivering it."""
    try:
        # polls the row: the flag is set by another process, nothing here could signal it
        while not await ctx.db.fetchval("SELECT cancel_requested FROM jobs WHERE id = $1", ctx.job_id):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    except asyncio.CancelledError:
        pass
    raise ConnectionError("the connection dropped just as the job was cancelled")


class Stall(BaseModel):
    stall_s: float = 15


@job_type("test.stall", timeout=120, max_attempts=1)
async def stall(ctx: JobContext, params: Stall) -> str:
    """In a worker process started with TEST_STALL_WORKER set: blocks its event loop (its heartbeat
    stops, its lease lapses), then reports progress and returns. In the tests' own worker: waits
    until the test sets RELEASE[job id]."""
    if os.environ.get("TEST_STALL_WORKER"):
        time.sleep(params.stall_s)  # noqa: ASYNC251 (blocking the loop is the point)
        ctx.progress(50, "stale")
        return "stale"
    await RELEASE.setdefault(str(ctx.job_id), asyncio.Event()).wait()
    return "fresh"


class Say(BaseModel):
    text: str
    fail: bool = False


@job_type("test.say", timeout=10, max_attempts=1)
async def say(ctx: JobContext, params: Say) -> dict[str, str]:
    """Puts `text` in everything a job shows: its progress message, its result, or its error's
    message and type (an exception class named `text`)."""
    ctx.progress(50, params.text)
    await asyncio.sleep(0.3)  # a progress event on the stream before the end
    if params.fail:
        raise type(params.text, (PermanentError,), {})(params.text)
    return {"said": params.text}


class Traced(BaseModel):
    seconds: float = 1
    steps: int = 4


@job_type("test.traced", timeout=60, max_attempts=10)
async def traced(ctx: JobContext, params: Traced) -> dict[str, str | int]:
    """Signs every write with the run that made it (`host/pid/attempt`; the host from the
    TEST_HOST variable), so a test can tell a superseded run's writes from the current one's. It
    has attempts to spare: several faults may each cost it one."""
    by = f"{os.environ.get('TEST_HOST', '-')}/{os.getpid()}/{ctx.attempt}"
    for i in range(1, params.steps + 1):
        await asyncio.sleep(params.seconds / params.steps)
        ctx.progress(100 * i / params.steps, by)
    return {"by": by, "attempt": ctx.attempt}
