"""The transitions every job goes through, group-committed across the jobs a worker runs at once.

A job that runs without trouble is started (pending → running), reports progress, and is completed
(running → completed). Done one job at a time, each is a statement, a commit and a publish of its
own: at a few hundred short jobs a second that is most of a worker's time. Here the starts (and the
progress writes, and the completions) of all the jobs that reach that point together share one
statement, one commit and one Redis round trip for their events and metrics; each job still waits
for its own row to be committed before it goes on, exactly as before. A lone item is written at
once; batches form only under load (jobwire/batching.py).

A job's last progress, when its completion comes before that progress was written, is written with
the completion: in its transaction, just before it (its event one seq before the `completed` one,
and published just before it in the same message), so it is never lost and never arrives after the
terminal event, and costs no commit of its own.

A job's `started` event is published after its start commits, but the job does not wait for that
publish: its function starts at once. Every later event of the job waits for it
(`started_published`), so events still reach the channel in seq order.

The rarer transitions (retries, failures, cancellation, release) stay one job at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from redis.asyncio import Redis

from jobwire import db, dependencies, events, jobmetrics, jobstore
from jobwire.batching import Batcher
from jobwire.events import EventType, Message
from jobwire.keys import Keys
from jobwire.logs import get_logger
from jobwire.queue import add_publish
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from workers.progress import Update

log = get_logger("jobwire.transitions")

T = TypeVar("T")

# a batch holds at most one item per job running on the worker, so its size needs no cap of its
# own; two in flight keep the disk busy while the next batch fills
MAX_IN_FLIGHT = 2
# the connections the batches in flight hold at most: three batchers (starts, progress, completions)
POOL_SIZE = 3 * MAX_IN_FLIGHT

LastProgress = tuple[float, str | None]  # percent, message
# job id, the run that ran (its `runs` number), its result, its last progress not yet written
Completion = tuple[UUID, int, Any, LastProgress | None]
ProgressItem = tuple[UUID, int, Update]  # job id, run, the update


class Transitions:
    def __init__(self, pool: asyncpg.Pool, redis: Redis, keys: Keys) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self._starts: Batcher[UUID, jobstore.Row | None] = Batcher(
            self._flush_starts, max_in_flight=MAX_IN_FLIGHT
        )
        self._progress: Batcher[ProgressItem, jobstore.Row | None] = Batcher(
            self._flush_progress, max_in_flight=MAX_IN_FLIGHT
        )
        self._completions: Batcher[Completion, jobstore.Row | None] = Batcher(
            self._flush_completions, max_in_flight=MAX_IN_FLIGHT
        )
        # the publish of each job's `started` event, while it is under way
        self._start_publishes: dict[UUID, asyncio.Task[None]] = {}

    async def run(self) -> None:
        batchers = (self._starts, self._progress, self._completions)
        tasks = [asyncio.ensure_future(b.run()) for b in batchers]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*set(self._start_publishes.values()), return_exceptions=True)

    async def start_pending(self, job_id: UUID) -> jobstore.Row | None:
        """Start a pending job (committed before this returns; its `started` event is published
        meanwhile, see `started_published`); None when the job is not pending. A job whose cancel
        was requested is cancelled instead (the row returned is `cancelled`)."""
        return await self._starts.submit(job_id)

    async def started_published(self, job_ids: Iterable[UUID]) -> None:
        """Until the `started` events of these jobs have been published (or failed to be): any
        later event of a job waits for this, so that it cannot overtake its start."""
        tasks = {t for job_id in job_ids if (t := self._start_publishes.get(job_id)) is not None}
        if tasks:
            await asyncio.wait(tasks)

    async def progress(self, job_id: UUID, run: int, update: Update) -> jobstore.Row | None:
        """Write the run's progress (committed and published before this returns) unless the
        update is withdrawn first (`Update.withdraw`); None when withdrawn, or when the run is not
        the job's running one."""
        return await self._progress.submit((job_id, run, update))

    async def complete(
        self, job_id: UUID, run: int, result: Any, last_progress: LastProgress | None = None
    ) -> jobstore.Row | None:
        """Complete the job's run (committed and published before this returns), writing first,
        in the same transaction, its last progress not yet written; None when the job changed while
        it ran (a superseded run)."""
        return await self._completions.submit((job_id, run, result, last_progress))

    # ---- flushes -------------------------------------------------------------------------------

    async def _publish(
        self, messages: Sequence[Message], outcomes: Sequence[jobmetrics.Outcome], what: str
    ) -> None:
        """Events and the jobs' counters, in one round trip. A lost publish costs live listeners
        a catch-up from job_events, never the jobs anything."""
        if not messages and not outcomes:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                add_publish(pipe, self.keys, messages)
                jobmetrics.add_job_outcomes(pipe, self.keys, outcomes)
                await pipe.execute()
        except REDIS_UNAVAILABLE as exc:
            log.warning("event publish failed", error=str(exc), event_type=what, jobs=len(messages))
        except Exception:
            log.exception("event publish failed", event_type=what, jobs=len(messages))

    async def _flush_starts(self, job_ids: Sequence[UUID]) -> list[jobstore.Row | BaseException | None]:
        answers = await _batch_or_each(
            job_ids,
            lambda: jobstore.start_pending_many(self.pool, job_ids),
            lambda job_id: jobstore.start_pending(self.pool, job_id),
            key=lambda job_id: job_id,
        )
        changed = [a for a in answers if isinstance(a, asyncpg.Record)]
        written = [(r, jobstore.event_written(r, EventType.STARTED)) for r in changed]
        if written:
            messages = [events.message(r, e) for r, e in written]
            # the jobs cancelled instead of started (their cancel was pending) are finished: count them
            outcomes = [(r["type"], e.value, None) for r, e in written if e == EventType.CANCELLED]
            # the jobs go on while their events are published (see the module's docstring)
            task = asyncio.get_running_loop().create_task(self._publish(messages, outcomes, "started"))
            ids = [r["id"] for r, _ in written]
            for job_id in ids:
                self._start_publishes[job_id] = task
            task.add_done_callback(lambda t: self._published(t, ids))
        ended = [r for r, e in written if e == EventType.CANCELLED]
        if ended:
            await dependencies.after_ended(self.pool, self.redis, self.keys, ended)
        return answers

    def _published(self, task: asyncio.Task[None], job_ids: list[UUID]) -> None:
        for job_id in job_ids:
            if self._start_publishes.get(job_id) is task:
                del self._start_publishes[job_id]

    async def _flush_progress(
        self, items: Sequence[ProgressItem]
    ) -> list[jobstore.Row | BaseException | None]:
        # an update withdrawn before this flush took it is written by its job's completion instead
        live = [item for item in items if item[2].take()]
        answers = await _batch_or_each(
            live,
            lambda: jobstore.progress_many(self.pool, [(j, r, u.pct, u.message) for j, r, u in live]),
            lambda item: jobstore.progress(self.pool, item[0], item[1], item[2].pct, item[2].message),
            key=lambda item: item[0],
        )
        rows = [a for a in answers if isinstance(a, asyncpg.Record)]
        if rows:
            await self.started_published(r["id"] for r in rows)
            await self._publish([events.message(r, EventType.PROGRESS) for r in rows], [], "progress")
        by_item = {id(item): answer for item, answer in zip(live, answers, strict=True)}
        return [by_item.get(id(item)) for item in items]

    async def _flush_completions(
        self, done: Sequence[Completion]
    ) -> list[jobstore.Row | BaseException | None]:
        progressed: dict[UUID, jobstore.Row] = {}  # the last progress written with a completion

        async def batch() -> dict[UUID, jobstore.Row]:
            results = [(j, r, result) for j, r, result, _ in done]
            folded = [(j, r, *last) for j, r, _, last in done if last is not None]
            if not folded:
                return await jobstore.complete_many(self.pool, results)
            async with self.pool.acquire() as conn, conn.transaction():
                progress_rows = await jobstore.progress_many(conn, folded)
                rows = await jobstore.complete_many(conn, results)
            progressed.update(progress_rows)  # committed
            return rows

        async def each(d: Completion) -> jobstore.Row | None:
            job_id, run, result, last = d
            if last is None:
                return await jobstore.complete(self.pool, job_id, run, result)
            async with self.pool.acquire() as conn, conn.transaction():
                progress_row = await jobstore.progress(conn, job_id, run, *last)
                row = await jobstore.complete(conn, job_id, run, result)
            if progress_row is not None:
                progressed[job_id] = progress_row
            return row

        answers = await _batch_or_each(done, batch, each, key=lambda d: d[0])
        completed = [a for a in answers if isinstance(a, asyncpg.Record)]
        if completed or progressed:
            await self.started_published([*progressed, *(r["id"] for r in completed)])
            # each job's last progress just before its completion, in one message
            messages = [events.message(r, EventType.PROGRESS) for r in progressed.values()]
            messages += [events.message(r, EventType.COMPLETED) for r in completed]
            outcomes = [(r["type"], EventType.COMPLETED.value, jobstore.run_duration_s(r)) for r in completed]
            await self._publish(messages, outcomes, "completed")
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
