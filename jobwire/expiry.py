"""The expiry sweep: unstarted jobs past their `expires_at` end `cancelled` (error `Expired`).

A worker's start refuses an expired job in its own statement, so no job ever starts after its
expiry. The sweep is for the jobs nobody is about to start (no worker running, or all of them busy), so
that they end at their expiry, with their event and webhook, not whenever a worker frees up. Every api and
every worker process runs it (so expiry works with only an api up); the statement skips rows
another sweep or a start holds, so many sweepers at once cancel each job once.
"""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from jobwire import dependencies, events, jobmetrics, jobstore, periodic
from jobwire.events import EventType
from jobwire.keys import Keys
from jobwire.logs import get_logger
from jobwire.queue import add_dequeue, add_publish
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE

log = get_logger("jobwire.expiry")

PAGE = 500


async def sweep_once(pool: asyncpg.Pool, redis: Redis, keys: Keys) -> int:
    """Cancel every job past its expiry, a page at a time; returns how many."""
    total = 0
    while True:
        rows = await jobstore.expire_due(pool, limit=PAGE)
        total += len(rows)
        if rows:
            log.info("expired jobs cancelled", count=len(rows))
            try:
                async with redis.pipeline(transaction=False) as pipe:
                    add_publish(pipe, keys, [events.message(r, EventType.CANCELLED) for r in rows])
                    jobmetrics.add_job_outcomes(pipe, keys, [(r["type"], "cancelled", None) for r in rows])
                    # off the queue: a worker offered one would find it cancelled and do nothing
                    for r in rows:
                        add_dequeue(pipe, keys, r["id"])
                    await pipe.execute()
            except REDIS_UNAVAILABLE as exc:
                log.warning("expired jobs' events not published", error=str(exc), count=len(rows))
            await dependencies.after_ended(pool, redis, keys, rows)
        if len(rows) < PAGE:
            return total


async def run(pool: asyncpg.Pool, redis: Redis, keys: Keys, *, interval_s: float) -> None:
    """Sweep every `interval_s` until cancelled."""
    await periodic.every(interval_s, lambda: sweep_once(pool, redis, keys), what="expiry sweep", log=log)
