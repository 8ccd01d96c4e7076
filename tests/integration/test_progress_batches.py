"""Progress, group-committed: the progress of the jobs that report together is one statement and
one commit, a job's last progress not yet written goes with its completion (same transaction, the
seq just before it), and the contract holds: progress never goes backwards, the last progress before
the terminal event is never lost nor published after it, and seqs stay gapless, under two workers."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson

from jobwire import jobstore
from jobwire.config import Settings
from jobwire.keys import Keys
from jobwire.redis_client import create_redis
from tests.conftest import eventually, submit
from workers.progress import Update
from workers.transitions import Transitions
from workers.worker import WorkerService

SPIN_CALLS = 3000  # progress() calls per test.spin job: many coalesced writes each


@contextlib.asynccontextmanager
async def published(settings: Settings) -> AsyncIterator[list[dict[str, Any]]]:
    """Every event published on the namespace's channel while inside, in the order published."""
    seen: list[dict[str, Any]] = []
    redis = create_redis(settings.redis_url, socket_timeout=None)
    async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(Keys(settings.namespace).events_channel)

        async def read() -> None:
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    body = orjson.loads(message["data"])
                    seen.extend(m["event"] for m in (body if isinstance(body, list) else [body]))

        task = asyncio.ensure_future(read())
        try:
            yield seen
        finally:
            await asyncio.sleep(0.3)  # the last publishes
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await redis.aclose()


async def test_progress_under_two_workers_is_batched_monotonic_gapless_and_ends_before_completion(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    async with published(settings) as live:
        spins = [submit(client, "test.spin", {"calls": SPIN_CALLS}) for _ in range(16)]
        # demo.sleep of 0 s in one step: its one progress comes just before its completion
        sleeps = [submit(client, "demo.sleep", {"seconds": 0, "steps": 1}) for _ in range(16)]
        jobs = await asyncio.gather(*spins, *sleeps)
        ids = [uuid.UUID(j["id"]) for j in jobs]
        services = [WorkerService(settings, concurrency=8) for _ in range(2)]
        for service in services:
            await service.start()
        try:

            async def all_completed() -> bool:
                n = await pool.fetchval(
                    "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'completed'", ids
                )
                return bool(n == len(ids))

            await eventually(all_completed, timeout=60, what="every job completed by two workers")
        finally:
            for service in services:
                await service.stop(grace_s=5)

    rows = await pool.fetch(
        "SELECT job_id, seq, type, progress, message, xmin::text::bigint AS tx FROM job_events"
        " WHERE job_id = ANY($1::uuid[]) ORDER BY job_id, seq",
        ids,
    )
    by_job: dict[uuid.UUID, list[asyncpg.Record]] = defaultdict(list)
    for r in rows:
        by_job[r["job_id"]].append(r)
    spin_ids = {uuid.UUID(j["id"]) for j in jobs[:16]}
    for job_id in ids:
        events = by_job[job_id]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # gapless
        types = [e["type"] for e in events]
        assert types[:2] == ["created", "started"] and types[-1] == "completed"
        assert set(types[2:-1]) == {"progress"}, types
        progress = [e["progress"] for e in events if e["type"] == "progress"]
        assert progress == sorted(progress)  # never backwards
        # the last value reported is the last progress event, right before the completion
        last = events[-2]
        expected = f"call {SPIN_CALLS}" if job_id in spin_ids else "step 1/1"
        assert (last["type"], last["progress"], last["message"]) == ("progress", 100.0, expected)
        if job_id not in spin_ids:
            # written with the completion: one transaction, no commit of its own
            assert last["tx"] == events[-1]["tx"]
    # progress of different jobs shared statements: fewer transactions than progress events
    progress_rows = [r for r in rows if r["type"] == "progress"]
    assert len({r["tx"] for r in progress_rows}) < len(progress_rows)

    # published in seq order per job, the last progress before the completion, nothing after it
    published_seqs: dict[str, list[int]] = defaultdict(list)
    published_types: dict[str, list[str]] = defaultdict(list)
    for event in live:
        published_seqs[event["job_id"]].append(event["seq"])
        published_types[event["job_id"]].append(event["type"])
    for job_id in ids:
        seqs, kinds = published_seqs[str(job_id)], published_types[str(job_id)]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), (job_id, seqs)
        assert kinds[-2:] == ["progress", "completed"], kinds


async def test_a_progress_batch_never_moves_progress_backwards_and_keeps_the_run_guard(
    pool: asyncpg.Pool, transitions: Transitions
) -> None:
    jobs = [jobstore.NewJob(uuid.uuid4(), "acme", "demo.sleep", {}, "normal", 3, None) for _ in range(3)]
    for job in jobs:
        await jobstore.insert_job(pool, job)
    runs = {}
    for job in jobs:
        row = await jobstore.start_pending(pool, job.id)
        assert row is not None
        runs[job.id] = row["runs"]
    a, b, c = (job.id for job in jobs)
    first = await jobstore.progress_many(pool, [(a, runs[a], 60.0, "a60"), (b, runs[b], 10.0, "b10")])
    assert set(first) == {a, b}
    # a lower value for a, a stale run for c: a keeps 60 (its message changes), c is untouched
    second = await jobstore.progress_many(
        pool, [(a, runs[a], 40.0, "a40"), (b, runs[b], 20.0, "b20"), (c, runs[c] + 1, 50.0, "stale")]
    )
    assert set(second) == {a, b}
    assert (second[a]["progress"], second[a]["message"]) == (60.0, "a40")
    assert second[b]["progress"] == 20.0
    row_c = await jobstore.get_job(pool, c, None)
    assert row_c is not None and row_c["progress"] == 0 and row_c["last_seq"] == 2

    # through the batcher: a withdrawn update is not written; a taken one is
    withdrawn = Update(90.0, "withdrawn")
    kept = Update(70.0, "kept")
    write_withdrawn = asyncio.ensure_future(transitions.progress(b, runs[b], withdrawn))
    assert withdrawn.withdraw()
    assert await write_withdrawn is None
    done = await transitions.progress(b, runs[b], kept)
    assert done is not None and kept.taken and (done["progress"], done["message"]) == (70.0, "kept")

    # a completion carrying the last progress writes both, in one transaction, progress first
    completed = await transitions.complete(c, runs[c], {"ok": True}, (80.0, "last"))
    assert completed is not None and completed["status"] == "completed"
    events = await pool.fetch(
        "SELECT seq, type, progress, message, xmin::text AS tx FROM job_events WHERE job_id = $1"
        " ORDER BY seq",
        c,
    )
    assert [(e["type"], e["progress"], e["message"]) for e in events[-2:]] == [
        ("progress", 80.0, "last"),
        ("completed", 100.0, "last"),
    ]
    assert events[-2]["tx"] == events[-1]["tx"]
    # a stale run's completion writes neither
    assert await transitions.complete(a, runs[a] + 1, {"ok": False}, (99.0, "stale")) is None
    row_a = await jobstore.get_job(pool, a, None)
    assert row_a is not None and row_a["progress"] == 60.0 and row_a["status"] == "running"
