"""Job types for the benchmarks, loaded by the api and the worker through
JOBWIRE_JOB_MODULES='["bench.jobtypes"]' (with the repository root on PYTHONPATH)."""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from jobwire.context import JobContext
from jobwire.registry import job_type


class Ticks(BaseModel):
    count: int = Field(default=20, ge=1)
    every_s: float = Field(default=0.3, gt=0)
    # When set, the job waits (BLPOP) for an element pushed on this Redis list before its first tick,
    # so a benchmark can open every stream first and start the ticks only when all are listening.
    go_key: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    go_timeout_s: float = Field(default=300, gt=0)


async def _wait_for_go(params: Ticks) -> None:
    if params.go_key is None:
        return
    redis = Redis.from_url(params.redis_url)
    try:
        # BLPOP takes whole seconds; a timeout only means the benchmark went away, so tick anyway
        await redis.blpop([params.go_key], timeout=max(1, round(params.go_timeout_s)))
    finally:
        await redis.aclose()


@job_type("bench.ticks", timeout=600, max_attempts=1)
async def ticks(ctx: JobContext, params: Ticks) -> int:
    """Reports progress `count` times, every `every_s`, then rests `every_s` more; each message is the
    send time (time.time())."""
    await _wait_for_go(params)
    for i in range(params.count):
        await asyncio.sleep(params.every_s)
        # the send time travels in the message, so a client on this machine can compute the latency
        ctx.progress(100 * (i + 1) / params.count, repr(time.time()))
    # a rest after the last tick, as the relay's publisher takes before its end message: the
    # terminal event (and every stream closing) must not overlap the last tick's delivery
    await asyncio.sleep(params.every_s)
    return params.count


class Noop(BaseModel):
    # When set, the job pushes time.time() taken at its very start onto this Redis list, so a
    # benchmark can measure submission-to-start latency; without it the job does nothing at all.
    stamp_key: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"


@job_type("bench.noop", timeout=60, max_attempts=1)
async def noop(ctx: JobContext, params: Noop) -> None:
    """Does nothing: what a drain of these measures is the job service's own cost per job."""
    if params.stamp_key is None:
        return
    started = time.time()  # before the connection below, which is not part of the start latency
    redis = Redis.from_url(params.redis_url)
    try:
        await redis.rpush(params.stamp_key, repr(started))
    finally:
        await redis.aclose()
