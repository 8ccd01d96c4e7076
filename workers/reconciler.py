"""Repairs the gap between PostgreSQL (the truth) and Redis (the queue).

A job is stored before it is enqueued; if the enqueue fails (Redis down) or Redis later loses the
queue (flushed, failed over without persistence), the job is still `pending` or `running` in
PostgreSQL but nothing in Redis will run it. Every few seconds each worker scans the unfinished
jobs that have not changed for a while, in pages, and enqueues the ones without an ARQ job key.
Enqueueing is idempotent, so several workers reconciling at once are harmless.
"""

from __future__ import annotations

import asyncio
import random
from uuid import UUID

import asyncpg
from redis.asyncio import Redis

from jobwire import db, jobstore
from jobwire.keys import Keys
from jobwire.logs import get_logger
from jobwire.queue import enqueue, missing_from_queue, queued
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE

log = get_logger("jobwire.reconciler")

PAGE = 500
PAGES_PER_PASS = 20


class Reconciler:
    def __init__(self, pool: asyncpg.Pool, redis: Redis, keys: Keys, *, interval_s: float) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.interval_s = interval_s
        self._cursor: UUID | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s * random.uniform(0.8, 1.2))
            try:
                await self.pass_once()
            except (*db.UNAVAILABLE, *REDIS_UNAVAILABLE) as exc:
                log.warning("reconciliation pass skipped", error=str(exc))

    async def pass_once(self, *, older_than_s: float | None = None) -> int:
        """One pass; returns how many jobs it put back on the queue."""
        older = self.interval_s if older_than_s is None else older_than_s
        requeued = 0
        for _ in range(PAGES_PER_PASS):
            rows = await jobstore.unfinished_page(
                self.pool, after=self._cursor, older_than_s=older, limit=PAGE
            )
            self._cursor = rows[-1]["id"] if len(rows) == PAGE else None
            missing = set(await missing_from_queue(self.redis, self.keys, [r["id"] for r in rows]))
            if missing:
                # a job that finished between the SELECT and the EXISTS has no key for a good
                # reason (its terminal commit comes before ARQ drops the key): read them again
                missing = set(await jobstore.unfinished_among(self.pool, list(missing)))
            if missing:
                # a scheduled job goes back at its own time: never early because Redis lost it
                jobs = [queued(r) for r in rows if r["id"] in missing]
                await enqueue(self.redis, self.keys, jobs)
                requeued += len(jobs)
                log.warning("re-enqueued jobs missing from the queue", count=len(jobs))
            if self._cursor is None:
                break
        return requeued
