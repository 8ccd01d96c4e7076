"""Group commit for submissions.

Every accepted job must be durable before its 202, and on a busy api most of a submission's time is
spent waiting for PostgreSQL to flush its commit to disk. The submitter lets concurrent requests
share that wait: requests queue their job here; a batch of everything queued so far is inserted in
one statement and one commit, then enqueued and published in one Redis round trip, and only then is
each request answered. A lone request is written at once (no timer, no added latency); under load
batches grow by themselves while the previous one is being committed.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from redis.asyncio import Redis

from common import jobstore
from common.keys import Keys
from common.logs import get_logger
from common.models import EventType
from common.queue import QueuedJob, enqueue
from common.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE

log = get_logger("jobwire.submitter")

MAX_BATCH = 500
# batches in flight at once: one committing while the next fills keeps the disk and CPU busy
MAX_IN_FLIGHT = 3


class Submitter:
    def __init__(self, pool: asyncpg.Pool, redis: Redis, keys: Keys) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self._queue: list[tuple[jobstore.NewJob, asyncio.Future[tuple[jobstore.Row, bool]]]] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._batches: set[asyncio.Task[None]] = set()

    async def submit(self, job: jobstore.NewJob) -> tuple[jobstore.Row, bool]:
        """Returns the committed row and whether the job reached the queue (if not, the
        reconciler enqueues it). Raises what the insert raised (the job is then not stored)."""
        future: asyncio.Future[tuple[jobstore.Row, bool]] = asyncio.get_running_loop().create_future()
        self._queue.append((job, future))
        self._wake.set()
        return await future

    async def run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    await self._slots.acquire()
                    batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                    task = asyncio.get_running_loop().create_task(self._write(batch))
                    self._batches.add(task)
                    task.add_done_callback(self._batches.discard)
        finally:
            for task in list(self._batches):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _write(
        self, batch: list[tuple[jobstore.NewJob, asyncio.Future[tuple[jobstore.Row, bool]]]]
    ) -> None:
        live = [(job, fut) for job, fut in batch if not fut.cancelled()]
        try:
            if live:
                rows = await jobstore.insert_jobs(self.pool, [job for job, _ in live])
                enqueued = await self._enqueue(list(rows.values()))
                for job, fut in live:
                    if not fut.done():
                        fut.set_result((rows[job.id], enqueued))
        except BaseException as exc:
            # every waiting request gets an answer: the insert's error (503 when PostgreSQL is
            # unreachable), never a hang
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._slots.release()

    async def _enqueue(self, rows: list[jobstore.Row]) -> bool:
        """Committed jobs are owed: whatever goes wrong here, they are answered 202 and the
        reconciler enqueues what did not make it."""
        try:
            await enqueue(
                self.redis,
                self.keys,
                [QueuedJob(r["id"], r["priority"], r["created_at"]) for r in rows],
                [jobstore.message_of(r, EventType.CREATED) for r in rows],
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
