"""Group commit for submissions.

Every accepted job must be durable before its 202, and on a busy api most of a submission's time is
spent waiting for PostgreSQL to flush its commit to disk. The submitter lets concurrent requests
share that wait: requests queue their job here; a batch of everything queued so far is inserted in
one statement and one commit, then enqueued and published in one Redis round trip, and only then is
each request answered. A lone request is written at once (no timer, no added latency); under load
batches grow by themselves while the previous one is being committed.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from redis.asyncio import Redis

from jobwire import dependencies, events, jobstore
from jobwire.batching import Batcher
from jobwire.events import EventType
from jobwire.keys import Keys
from jobwire.logs import get_logger
from jobwire.queue import enqueue, startable
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE

log = get_logger("jobwire.submitter")

MAX_BATCH = 500
# batches in flight at once: one committing while the next fills keeps the disk and CPU busy
MAX_IN_FLIGHT = 3


class Submitter:
    def __init__(self, pool: asyncpg.Pool, redis: Redis, keys: Keys) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self._batcher: Batcher[jobstore.NewJob, tuple[jobstore.Row, bool]] = Batcher(
            self._write, max_batch=MAX_BATCH, max_in_flight=MAX_IN_FLIGHT
        )

    async def submit(self, job: jobstore.NewJob) -> tuple[jobstore.Row, bool]:
        """Returns the committed row and whether the job reached the queue (if not, the
        reconciler enqueues it). Raises what the insert raised (the job is then not stored)."""
        return await self._batcher.submit(job)

    async def run(self) -> None:
        await self._batcher.run()

    async def _write(self, jobs: Sequence[jobstore.NewJob]) -> list[tuple[jobstore.Row, bool]]:
        rows = await jobstore.insert_jobs(self.pool, jobs)
        enqueued = await self._enqueue(list(rows.values()))
        # waiting jobs whose parent ended meanwhile (or had failed) are settled before the answer
        rows = await dependencies.after_insert(self.pool, self.redis, self.keys, jobs, rows)
        return [(rows[job.id], enqueued) for job in jobs]

    async def _enqueue(self, rows: list[jobstore.Row]) -> bool:
        """Committed jobs are owed: whatever goes wrong here, they are answered 202 and the
        reconciler enqueues what did not make it."""
        try:
            await enqueue(
                self.redis,
                self.keys,
                startable(rows),
                [events.message(r, EventType.CREATED) for r in rows],
            )
        except REDIS_UNAVAILABLE as exc:
            log.warning(
                "enqueue failed; the reconciler will enqueue these jobs", jobs=len(rows), error=str(exc)
            )
            return False
        except Exception:
            log.exception("enqueue failed; the reconciler will enqueue these jobs", jobs=len(rows))
            return False
        return True
