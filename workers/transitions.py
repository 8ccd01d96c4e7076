"""The two transitions every job goes through, group-committed across the jobs a worker runs at once.

A job that runs without trouble is started (pending → running) and completed (running →
completed). Done one job at a time, each is a statement, a commit and a publish of its own: at a
few hundred short jobs a second that is most of a worker's time. Here the starts (and the
completions) of all the jobs that reach that point together share one statement, one commit and
one Redis round trip for their events and metrics; each job still waits for its own row to be
committed before it goes on, exactly as before.

The rarer transitions (progress, retries, failures, cancellation, release) stay one job at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from redis.asyncio import Redis

from jobwire import db, dependencies, events, jobmetrics, jobstore
from jobwire.batching import Batcher
from jobwire.events import EventType
from jobwire.keys import Keys
from jobwire.logs import get_logger
from jobwire.queue import add_publish
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE

log = get_logger("jobwire.transitions")

T = TypeVar("T")

# a batch holds at most one item per job running on the worker, so its size needs no cap of its
# own; two in flight keep the disk busy while the next batch fills
MAX_IN_FLIGHT = 2

Completion = tuple[UUID, int, Any]  # job id, the run that ran (its `runs` number), its result


class Transitions:
    def __init__(self, pool: asyncpg.Pool, redis: Redis, keys: Keys) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self._starts: Batcher[UUID, jobstore.Row | None] = Batcher(
            self._flush_starts, max_in_flight=MAX_IN_FLIGHT
        )
        self._completions: Batcher[Completion, jobstore.Row | None] = Batcher(
            self._flush_completions, max_in_flight=MAX_IN_FLIGHT
        )

    async def run(self) -> None:
        tasks = [asyncio.ensure_future(self._starts.run()), asyncio.ensure_future(self._completions.run())]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)

    async def start_pending(self, job_id: UUID) -> jobstore.Row | None:
        """Start a pending job (committed and its `started` event published before this returns);
        None when the job is not pending. A job whose cancel was requested is cancelled instead
        (the row returned is `cancelled`, its event published)."""
        return await self._starts.submit(job_id)

    async def complete(self, job_id: UUID, run: int, result: Any) -> jobstore.Row | None:
        """Complete the job's run (committed and published before this returns); None when the
        job changed while it ran (a superseded run)."""
        return await self._completions.submit((job_id, run, result))

    # ---- flushes -------------------------------------------------------------------------------

    async def _flush_starts(self, job_ids: Sequence[UUID]) -> list[jobstore.Row | BaseException | None]:
        answers = await _batch_or_each(
            job_ids,
            lambda: jobstore.start_pending_many(self.pool, job_ids),
            lambda job_id: jobstore.start_pending(self.pool, job_id),
            key=lambda job_id: job_id,
        )
        changed = [a for a in answers if isinstance(a, asyncpg.Record)]
        written = [(r, jobstore.event_written(r, EventType.STARTED)) for r in changed]
        # the jobs cancelled instead of started (their cancel was pending) are finished: count them
        outcomes = [(r["type"], e.value, None) for r, e in written if e == EventType.CANCELLED]
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                add_publish(pipe, self.keys, [events.message(r, e) for r, e in written])
                jobmetrics.add_job_outcomes(pipe, self.keys, outcomes)
                await pipe.execute()
        except REDIS_UNAVAILABLE as exc:
            # live listeners catch up from job_events; the jobs themselves must not suffer
            log.warning("event publish failed", error=str(exc), event_type="started", jobs=len(changed))
        ended = [r for r, e in written if e == EventType.CANCELLED]
        if ended:
            await dependencies.after_ended(self.pool, self.redis, self.keys, ended)
        return answers

    async def _flush_completions(
        self, done: Sequence[Completion]
    ) -> list[jobstore.Row | BaseException | None]:
        answers = await _batch_or_each(
            done,
            lambda: jobstore.complete_many(self.pool, done),
            lambda d: jobstore.complete(self.pool, *d),
            key=lambda d: d[0],
        )
        completed = [a for a in answers if isinstance(a, asyncpg.Record)]
        if completed:
            messages = [events.message(r, EventType.COMPLETED) for r in completed]
            outcomes = [(r["type"], EventType.COMPLETED.value, jobstore.run_duration_s(r)) for r in completed]
            try:
                # the last events and the jobs' counters in one round trip
                async with self.redis.pipeline(transaction=False) as pipe:
                    add_publish(pipe, self.keys, messages)
                    jobmetrics.add_job_outcomes(pipe, self.keys, outcomes)
                    await pipe.execute()
            except REDIS_UNAVAILABLE as exc:
                log.warning(
                    "event publish failed", error=str(exc), event_type="completed", jobs=len(completed)
                )
            # the jobs waiting for these are released once all their dependencies completed
            await dependencies.after_ended(self.pool, self.redis, self.keys, completed)
        return answers


async def _batch_or_each(
    items: Sequence[T],
    batch: Callable[[], Awaitable[dict[UUID, jobstore.Row]]],
    each: Callable[[T], Awaitable[jobstore.Row | None]],
    *,
    key: Callable[[T], UUID],
) -> list[jobstore.Row | BaseException | None]:
    """The batch statement's row for each item (None: the item's job was not in the expected state).

    When the batch statement fails for a reason other than an unreachable database (say, one
    result PostgreSQL refuses), the items are written one by one, so that one bad item fails
    alone and the others go through."""
    if len(items) > 1:
        try:
            rows = await batch()
        except db.UNAVAILABLE:
            raise
        except asyncpg.PostgresError as exc:
            log.warning("batched transition failed, writing its jobs one by one", error=str(exc))
        else:
            return [rows.get(key(item)) for item in items]
    answers: list[jobstore.Row | BaseException | None] = []
    for item in items:
        try:
            answers.append(await each(item))
        except db.UNAVAILABLE:
            raise
        except Exception as exc:
            answers.append(exc)
    return answers
