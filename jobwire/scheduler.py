"""The scheduler: fires each schedule's due slot as a job. It runs in every worker and every api
process; any number of them at once is safe.

- **At most once per slot.** A scheduler claims due schedules with FOR UPDATE SKIP LOCKED, and in
  that transaction inserts the slot's job and moves `next_run_at` past now: the job and the advance
  commit together, or (a crash, a lost connection) neither does and another scheduler fires the
  slot. Under that, a unique index on jobs (schedule_id, schedule_slot) refuses a second job for
  a slot whatever a scheduler believes.
- **At least once while anything runs**, and a slot missed while nothing ran fires once: a claim
  fires the latest slot that is due, not every slot since `next_run_at`, then moves past now.
- **On time.** A scheduler sleeps until the soonest `next_run_at` (by the database's clock), at most
  `poll_s`, and a change made through the api wakes the scheduler of that api at once.

The jobs it fires take the path of every submission: `jobstore.insert_job`, then `queue.enqueue`
after the commit (a job that did not reach Redis is enqueued by the reconciler).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeAlias

import asyncpg
from redis.asyncio import Redis

from jobwire import db, events, jobstore, schedulestore
from jobwire.events import EventType
from jobwire.ids import new_id
from jobwire.keys import Keys
from jobwire.logs import get_logger
from jobwire.queue import enqueue, queued
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from jobwire.registry import Registry
from jobwire.timetable import Timetable, TimetableInvalid

log = get_logger("jobwire.scheduler")

# a string: asyncpg's classes are generic only to the type checker
PoolConnection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[jobstore.Row]"

# schedules claimed in one transaction
BATCH = 100
# after a claim that found due schedules all held by other schedulers: they commit within moments
HELD_RETRY_S = 0.02


def timetable(row: jobstore.Row) -> Timetable:
    """The timetable of a `schedules` row."""
    return Timetable.of(row["cron"], row["timezone"], row["interval_s"], row["anchor_at"])


async def fire(
    conn: jobstore.Conn,
    schedule: jobstore.Row,
    *,
    slot: datetime | None,
    next_run_at: datetime | None,
    registry: Registry | None,
) -> jobstore.Row:
    """Insert the schedule's job (for `slot`, or None: a trigger, outside the timetable) and record
    the run, in the caller's transaction. Raises asyncpg.UniqueViolationError when the slot fired
    already."""
    jt = registry.get(schedule["job_type"]) if registry is not None else None
    row = await jobstore.insert_job(
        conn,
        jobstore.NewJob(
            id=new_id(),
            tenant=schedule["tenant"],
            type=schedule["job_type"],
            params=schedule["job_params"],
            priority=schedule["job_priority"],
            max_attempts=jt.max_attempts if jt is not None else schedule["job_max_attempts"],
            webhook_url=schedule["job_webhook_url"],
            schedule_id=schedule["id"],
            schedule_slot=slot,
        ),
    )
    ran_at = slot if slot is not None else row["created_at"]
    await schedulestore.record_run(conn, schedule["id"], ran_at, row["id"], next_run_at)
    return row


async def enqueue_fired(redis: Redis, keys: Keys, rows: Sequence[jobstore.Row]) -> None:
    """Enqueue committed jobs and publish their `created` events; on a Redis failure the reconciler
    enqueues them later, as for an api submission."""
    if not rows:
        return
    try:
        await enqueue(
            redis, keys, [queued(r) for r in rows], [events.message(r, EventType.CREATED) for r in rows]
        )
    except REDIS_UNAVAILABLE as exc:
        log.warning("enqueue failed; the reconciler will enqueue these jobs", jobs=len(rows), error=str(exc))


class Scheduler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis,
        keys: Keys,
        *,
        registry: Registry | None,
        poll_s: float,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.registry = registry
        self.poll_s = poll_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look at the schedules again now (one was created or changed)."""
        self._wake.set()

    async def run(self) -> None:
        """Fire due slots until cancelled."""
        while True:
            delay = self.poll_s
            try:
                claimed, _ = await self.fire_due()
                until = await schedulestore.seconds_until_due(self.pool)
                if until is not None:
                    delay = min(max(until, 0.0), self.poll_s)
                    if delay == 0 and claimed == 0:
                        delay = HELD_RETRY_S  # due, but held by another scheduler's claim
            except db.UNAVAILABLE as exc:
                log.warning("scheduler: database unavailable", error=str(exc))
            except Exception:
                log.exception("scheduler: claim failed")
            self._wake.clear()
            if delay > 0:
                # asyncio.timeout, not wait_for: a cancel that meets the timeout is never swallowed
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    async def fire_due(self) -> tuple[int, int]:
        """Fire every due schedule (a page at a time); returns (claimed, jobs fired)."""
        claimed = fired = 0
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                due = await schedulestore.claim_due(conn, BATCH)
                rows = [row for s in due if (row := await self._fire_one(conn, s)) is not None]
            await enqueue_fired(self.redis, self.keys, rows)
            claimed += len(due)
            fired += len(rows)
            if len(due) < BATCH:
                return claimed, fired

    async def _fire_one(self, conn: PoolConnection, s: jobstore.Row) -> jobstore.Row | None:
        now: datetime = s["db_now"]
        try:
            tt = timetable(s)
        except TimetableInvalid as exc:
            # written when valid, invalid now (a zone gone from the tz database): stop, say why
            log.error("schedule stopped: its timetable is invalid", schedule_id=str(s["id"]), error=str(exc))
            await schedulestore.advance(conn, s["id"], None)
            return None
        # the latest due slot only: the slots missed while no scheduler ran fire once, together
        slot = max(tt.latest_at_or_before(now) or s["next_run_at"], s["next_run_at"])
        next_run_at = tt.next_after(now)
        if (
            s["overlap"] == "skip"
            and s["last_job_id"] is not None
            and await schedulestore.job_unfinished(conn, s["last_job_id"])
        ):
            log.info(
                "slot skipped: the previous run is not finished",
                schedule_id=str(s["id"]),
                slot=slot.isoformat(),
                job_id=str(s["last_job_id"]),
            )
            await schedulestore.advance(conn, s["id"], next_run_at)
            return None
        try:
            async with conn.transaction():  # a savepoint: a refused slot leaves the others alone
                row = await fire(conn, s, slot=slot, next_run_at=next_run_at, registry=self.registry)
        except asyncpg.UniqueViolationError:
            log.warning("slot fired already", schedule_id=str(s["id"]), slot=slot.isoformat())
            await schedulestore.advance(conn, s["id"], next_run_at)
            return None
        late = now - slot
        if late > timedelta(seconds=2):
            log.info(
                "slot fired late",
                schedule_id=str(s["id"]),
                slot=slot.isoformat(),
                late_s=late.total_seconds(),
            )
        return row
