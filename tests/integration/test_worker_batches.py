"""The worker's batched paths: jobs claimed from ARQ's queue and finished in batches, their starts and
completions group-committed, and the one-by-one fallback when a batch statement fails."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx

from jobwire import jobstore
from jobwire.config import Settings
from jobwire.keys import Keys
from jobwire.redis_client import create_redis
from tests.conftest import eventually, submit, wait_status
from workers.transitions import Transitions
from workers.worker import WorkerService


@contextlib.asynccontextmanager
async def workers(settings: Settings, n: int, concurrency: int) -> AsyncIterator[list[WorkerService]]:
    services = [WorkerService(settings, concurrency=concurrency) for _ in range(n)]
    for service in services:
        await service.start()
    try:
        yield services
    finally:
        for service in services:
            await service.stop(grace_s=5)


async def test_two_workers_run_every_job_exactly_once_and_leave_no_arq_keys(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    jobs = await asyncio.gather(*(submit(client, "demo.sleep", {"seconds": 0}) for _ in range(300)))
    ids = [uuid.UUID(j["id"]) for j in jobs]
    async with workers(settings, 2, concurrency=25):

        async def all_completed() -> bool:
            n = await pool.fetchval(
                "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'completed'", ids
            )
            return bool(n == len(ids))

        await eventually(all_completed, timeout=60, what="300 jobs completed by two workers")
        redis = create_redis(settings.redis_url)
        keys = Keys(settings.namespace)
        try:

            async def queue_empty() -> bool:
                # ARQ's queue entry goes just after the completion's commit: give it a moment
                return bool(await redis.zcard(keys.queue) == 0)

            await eventually(queue_empty, timeout=10, what="the ARQ queue to empty")
            left = [k async for k in redis.scan_iter(match=f"arq:*{settings.namespace}:*")]
        finally:
            await redis.aclose()
    assert left == []  # no lease, job or retry key outlives its job
    rows = await pool.fetch("SELECT id, attempts, last_seq FROM jobs WHERE id = ANY($1::uuid[])", ids)
    assert {r["attempts"] for r in rows} == {1}  # no job ran twice
    events = await pool.fetch(
        "SELECT job_id, array_agg(type ORDER BY seq) AS types, array_agg(seq ORDER BY seq) AS seqs"
        " FROM job_events WHERE job_id = ANY($1::uuid[]) GROUP BY job_id",
        ids,
    )
    assert len(events) == len(ids)
    for e in events:
        # demo.sleep reports progress between the two
        assert e["types"][:2] == ["created", "started"] and e["types"][-1] == "completed"
        assert e["types"].count("started") == 1 and e["seqs"] == list(range(1, len(e["seqs"]) + 1))


async def test_a_result_postgres_refuses_fails_its_job_and_no_other(
    client: httpx.AsyncClient, worker: WorkerService
) -> None:
    bad, good = await asyncio.gather(
        submit(client, "test.nul_result"), submit(client, "demo.sleep", {"seconds": 0})
    )
    failed = await wait_status(client, bad["id"], "failed")
    assert failed["error"]["type"] == "ResultNotSerializable"
    assert "NUL" in failed["error"]["message"]
    assert failed["attempts"] == 1  # not a retryable failure: it would fail the same way again
    await wait_status(client, good["id"], "completed")


async def test_a_failing_batch_is_written_one_by_one(pool: asyncpg.Pool, transitions: Transitions) -> None:
    new = [
        jobstore.NewJob(uuid.uuid4(), "t1", "demo.sleep", {"seconds": 0}, "normal", 3, None) for _ in range(3)
    ]
    await jobstore.insert_jobs(pool, new)
    started = await asyncio.gather(*(transitions.start_pending(j.id) for j in new))
    assert all(r is not None and r["status"] == "running" for r in started)
    # a second start of the same jobs changes nothing
    assert await asyncio.gather(*(transitions.start_pending(j.id) for j in new)) == [None] * 3

    # the middle result is one PostgreSQL refuses (the runtime rejects it before this point; here
    # it stands for any item that makes the batch statement fail)
    results = [{"n": 1}, {"text": "a\x00b"}, [1, [2, 3]]]
    outcomes = await asyncio.gather(
        *(transitions.complete(j.id, 1, r) for j, r in zip(new, results, strict=True)), return_exceptions=True
    )
    assert isinstance(outcomes[1], asyncpg.PostgresError)
    for outcome, result in ((outcomes[0], results[0]), (outcomes[2], results[2])):
        assert isinstance(outcome, asyncpg.Record)
        assert outcome["status"] == "completed" and outcome["result"] == result and outcome["last_seq"] == 3
    stuck = await jobstore.get_job(pool, new[1].id, None)
    assert stuck is not None and stuck["status"] == "running" and stuck["last_seq"] == 2
    # a stale attempt cannot complete a job
    assert await transitions.complete(new[1].id, 7, {"n": 2}) is None
