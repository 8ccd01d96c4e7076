"""Every worker write of a job, walked from jobwire/jobstore.py: guarded by the run that wrote it (a
number no other run of the job ever has, even after a manual retry), and never able to leave a job
whose cancel was requested waiting in `pending`."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from jobwire import jobstore
from jobwire.events import EventType
from tests.conftest import events_of
from workers.transitions import Transitions

HOOK = "http://127.0.0.1:9/hook"
ERROR = {"type": "ConnectionError", "message": "stale"}
# the writes that move a running job back to pending when no cancel is requested
BACK_TO_PENDING = ("schedule_retry", "release")

# the arguments after (conn, job_id, run) of every worker write that a run token guards
EXTRA_ARGS: dict[str, tuple[Any, ...]] = {
    "progress": (50.0, "stale"),
    "complete": ({"by": "stale run"},),
    "fail": (ERROR,),
    "schedule_retry": (ERROR,),
    "release": (ERROR,),
    "cancelled_by_worker": (),
}


def run_guarded_writes() -> dict[str, Callable[..., Awaitable[asyncpg.Record | None]]]:
    """jobstore's functions that take a `run`: every write a worker makes on behalf of one run."""
    found = {
        name: fn
        for name, fn in inspect.getmembers(jobstore, inspect.iscoroutinefunction)
        if "run" in inspect.signature(fn).parameters
    }
    # a new worker write must be added to this walk (and so be given its arguments here)
    assert set(found) == set(EXTRA_ARGS), set(found) ^ set(EXTRA_ARGS)
    return found


async def new_job(pool: asyncpg.Pool, max_attempts: int = 3) -> uuid.UUID:
    job = jobstore.NewJob(uuid.uuid4(), "acme", "demo.sleep", {"seconds": 0}, "normal", max_attempts, HOOK)
    await jobstore.insert_job(pool, job)
    return job.id


async def start(pool: asyncpg.Pool, job_id: uuid.UUID) -> int:
    row = await jobstore.start_pending(pool, job_id)
    assert row is not None and row["status"] == "running"
    return int(row["runs"])


async def assert_gapless(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[str]:
    events = await events_of(pool, str(job_id))
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    last_seq = await pool.fetchval("SELECT last_seq FROM jobs WHERE id = $1", job_id)
    assert last_seq == len(events)
    return [e["type"] for e in events]


async def test_a_stale_run_cannot_write_to_a_later_run_with_the_same_attempt_number(
    pool: asyncpg.Pool, transitions: Transitions
) -> None:
    writes = run_guarded_writes()
    for name, write in writes.items():
        job_id = await new_job(pool, max_attempts=1)
        stale = await start(pool, job_id)
        # its lease lapsed: another worker recorded the run as lost, and the tenant retried the job
        assert await jobstore.fail(pool, job_id, stale, ERROR) is not None
        assert await jobstore.retry(pool, job_id, None) is not None
        later = await start(pool, job_id)
        row = await jobstore.get_job(pool, job_id, None)
        assert row is not None and row["attempts"] == 1  # the attempt number repeats; the run does not
        assert later != stale

        assert await write(pool, job_id, stale, *EXTRA_ARGS[name]) is None, name
        assert await transitions.complete(job_id, stale, {"by": "stale run"}) is None
        assert await jobstore.complete_many(pool, [(job_id, stale, {"by": "stale run"})]) == {}
        done = await jobstore.complete(pool, job_id, later, {"by": "later run"})
        assert done is not None and done["result"] == {"by": "later run"}, name
        assert await assert_gapless(pool, job_id) == [
            "created",
            "started",
            "failed",
            "retrying",
            "started",
            "completed",
        ]


async def test_no_worker_write_leaves_a_cancel_requested_job_pending(pool: asyncpg.Pool) -> None:
    for name, write in run_guarded_writes().items():
        job_id = await new_job(pool)
        run = await start(pool, job_id)
        await pool.execute("UPDATE jobs SET cancel_requested = true WHERE id = $1", job_id)
        row = await write(pool, job_id, run, *EXTRA_ARGS[name])
        assert row is not None, name
        assert row["status"] != "pending", name
        if name in BACK_TO_PENDING:
            assert row["status"] == "cancelled", name
        types = await assert_gapless(pool, job_id)
        if row["status"] == "cancelled":
            # with its cancelled event and the delivery it owes, as every cancel path writes them
            assert types[-1] == "cancelled" and "retrying" not in types, (name, types)
            owed = await pool.fetch("SELECT seq, event_type FROM deliveries WHERE job_id = $1", job_id)
            assert [(d["seq"], d["event_type"]) for d in owed] == [(len(types), "job.cancelled")], name


async def test_a_start_cancels_a_pending_job_whose_cancel_was_requested(pool: asyncpg.Pool) -> None:
    one, many = await new_job(pool), await new_job(pool)
    await pool.execute("UPDATE jobs SET cancel_requested = true WHERE id = ANY($1::uuid[])", [one, many])
    single = await jobstore.start_pending(pool, one)
    batched = await jobstore.start_pending_many(pool, [many])
    for job_id, row in ((one, single), (many, batched.get(many))):
        assert row is not None and row["status"] == "cancelled" and row["attempts"] == 0
        assert jobstore.event_written(row, EventType.STARTED) == EventType.CANCELLED
        assert await assert_gapless(pool, job_id) == ["created", "cancelled"]
        owed = await pool.fetch("SELECT event_type FROM deliveries WHERE job_id = $1", job_id)
        assert [d["event_type"] for d in owed] == ["job.cancelled"]
