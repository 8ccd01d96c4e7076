"""Dependencies: a `waiting` job is released when every job it depends on has completed, and cancelled
(DependencyFailed) when one of them failed or was cancelled, and so on down the chain.

Every process that ends a job settles its waiting children after the job's transition commits
(`after_ended`): the worker after completions, failures and cancels, the api after a cancel, the
expiry sweep after it expires jobs, the submitter after it stores jobs that wait (one whose parent
ended while it was being inserted settles itself). The SQL (jobstore's dependencies block) locks the
children and re-reads their parents after the commit, so the parent that ends last releases a child
exactly once. A sweep (`run`, in every api and worker process) settles what was missed: a process that
died between a commit and its settle, or a job ended by a path that does not settle (a bulk action).
A released job is enqueued after its release commits; one that misses the queue (Redis down) is
`pending` in PostgreSQL, where the reconciler finds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from uuid import UUID

import asyncpg
from redis.asyncio import Redis

from jobwire import db, events, jobmetrics, jobstore, periodic
from jobwire.events import EventType
from jobwire.keys import Keys
from jobwire.logs import get_logger
from jobwire.queue import enqueue, queued
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE

log = get_logger("jobwire.dependencies")

PAGE = 500
# pages of waiting jobs one sweep reads (5 ms each, measured with 2,000 waiting): more wait for the
# next pass
PAGES_PER_PASS = 10
# a cascade deeper than this is finished by the sweep (a chain is as deep as it was built: bounded
# only by the submitter's patience)
MAX_DEPTH = 1000


def _ended(rows: Iterable[jobstore.Row]) -> tuple[list[UUID], list[UUID]]:
    """The ids of completed jobs, and of failed or cancelled ones, among these rows."""
    completed, unsuccessful = [], []
    for r in rows:
        if r["status"] == "completed":
            completed.append(r["id"])
        elif r["status"] in ("failed", "cancelled"):
            unsuccessful.append(r["id"])
    return completed, unsuccessful


async def after_ended(pool: asyncpg.Pool, redis: Redis, keys: Keys, rows: Sequence[jobstore.Row]) -> None:
    """Settle the waiting children of these jobs, which have just ended (their transitions
    committed). Never raises for an unreachable database or Redis: the sweep catches up."""
    completed, unsuccessful = _ended(rows)
    try:
        released = await jobstore.release_children(pool, completed) if completed else []
        cancelled = await _cascade(pool, unsuccessful)
    except db.UNAVAILABLE as exc:
        log.warning("dependents not settled; the sweep will", error=str(exc))
        return
    await _announce(redis, keys, released, cancelled)


async def after_insert(
    pool: asyncpg.Pool,
    redis: Redis,
    keys: Keys,
    jobs: Sequence[jobstore.NewJob],
    rows: dict[UUID, jobstore.Row],
) -> dict[UUID, jobstore.Row]:
    """After `jobs` were inserted and committed (as `rows`, by id) and their `created` events
    published: settle those stored `waiting` whose parent may have ended while they were inserted
    (a parent that ended after the insert's snapshot did not see them), so that none is left
    waiting for a parent that already ended. A job whose parents were all inserted by the same
    statement (a batch's jobs depending on each other) has nothing to settle. The rows, with those
    that changed replaced; never raises (the sweep catches up)."""
    waiting = [
        job.id
        for job in jobs
        if rows[job.id]["status"] == "waiting" and any(d not in rows for d in job.depends_on)
    ]
    if not waiting:
        return rows
    try:
        changed = await settle(pool, redis, keys, waiting)
    except db.UNAVAILABLE as exc:
        log.warning("waiting jobs not settled; the sweep will", jobs=len(waiting), error=str(exc))
        return rows
    except Exception:
        log.exception("waiting jobs not settled; the sweep will", jobs=len(waiting))
        return rows
    return {**rows, **{r["id"]: r for r in changed}}


async def settle(pool: asyncpg.Pool, redis: Redis, keys: Keys, job_ids: Sequence[UUID]) -> list[jobstore.Row]:
    """Release or cancel these waiting jobs as their parents say (those still waiting for a parent
    stay so); the rows changed. Raises what PostgreSQL raised."""
    if not job_ids:
        return []
    released, cancelled = await jobstore.settle_waiting(pool, job_ids)
    cancelled += await _cascade(pool, [r["id"] for r in cancelled])
    await _announce(redis, keys, released, cancelled)
    return released + cancelled


async def _cascade(pool: asyncpg.Pool, parents: list[UUID]) -> list[jobstore.Row]:
    """Cancel the waiting descendants of these failed or cancelled jobs, a generation at a time."""
    cancelled: list[jobstore.Row] = []
    for _ in range(MAX_DEPTH):
        if not parents:
            break
        rows = await jobstore.cancel_children(pool, parents)
        cancelled += rows
        parents = [r["id"] for r in rows]
    return cancelled


async def _announce(
    redis: Redis, keys: Keys, released: list[jobstore.Row], cancelled: list[jobstore.Row]
) -> None:
    """Enqueue the released jobs, and publish both kinds' events and the cancelled jobs' outcomes."""
    if not released and not cancelled:
        return
    messages = [events.message(r, EventType.RELEASED) for r in released]
    messages += [events.message(r, EventType.CANCELLED) for r in cancelled]
    try:
        # released jobs queue behind the jobs queued before them: as of their release
        await enqueue(redis, keys, [queued(r, r["updated_at"]) for r in released], messages)
        if cancelled:
            async with redis.pipeline(transaction=False) as pipe:
                jobmetrics.add_job_outcomes(pipe, keys, [(r["type"], "cancelled", None) for r in cancelled])
                await pipe.execute()
    except REDIS_UNAVAILABLE as exc:
        log.warning(
            "settled dependents not enqueued or published; the reconciler will enqueue them",
            error=str(exc),
            released=len(released),
            cancelled=len(cancelled),
        )
    if cancelled:
        log.info("dependents cancelled: a dependency failed", count=len(cancelled))


async def sweep_once(
    pool: asyncpg.Pool,
    redis: Redis,
    keys: Keys,
    *,
    older_than_s: float,
    after: UUID | None = None,
    pages: int = PAGES_PER_PASS,
) -> tuple[int, UUID | None]:
    """Settle the waiting jobs untouched for `older_than_s` whose parents have ended, reading at
    most `pages` pages of waiting jobs from `after` on (many waiting jobs are read over several
    passes); how many were settled, and where the next pass starts (None: from the first)."""
    total = 0
    for _ in range(pages):
        page = await jobstore.waiting_page(pool, after=after, older_than_s=older_than_s, limit=PAGE)
        ready = [job_id for job_id, settleable in page if settleable]
        if ready:
            changed = await settle(pool, redis, keys, ready)
            total += len(changed)
            if changed:
                log.warning("waiting jobs settled by the sweep", count=len(changed))
        if len(page) < PAGE:
            return total, None
        after = page[-1][0]
    return total, after


async def run(pool: asyncpg.Pool, redis: Redis, keys: Keys, *, interval_s: float) -> None:
    """Sweep every `interval_s` until cancelled, each sweep going on from where the last one ended."""
    after: UUID | None = None

    async def step() -> None:
        nonlocal after
        _, after = await sweep_once(pool, redis, keys, older_than_s=interval_s, after=after)

    await periodic.every(interval_s, step, what="dependency sweep", log=log)
