"""Dependencies (`depends_on`, status `waiting`, release, DependencyFailed cascade,
`ctx.dependency_results`) on a real api, real workers and a real dispatcher."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from jobwire import dependencies, jobstore
from jobwire.config import Settings
from jobwire.ids import new_id
from jobwire.keys import Keys
from jobwire.redis_client import create_redis
from tests.conftest import (
    QUICK_WEBHOOKS,
    ClientFactory,
    events_of,
    eventually,
    make_settings,
    submit,
    wait_status,
)
from tests.receiver import Receiver
from workers.dispatcher import Dispatcher
from workers.worker import WorkerService


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    # a long sweep: these tests see the settle done by the job's own end, not the sweep's
    return make_settings(database, namespace, dependency_sweep_s=3600, expiry_sweep_s=0.2, **QUICK_WEBHOOKS)


@pytest.fixture
async def workers(settings: Settings) -> AsyncIterator[list[WorkerService]]:
    """Workers a test starts when it wants them (after its jobs are submitted)."""
    started: list[WorkerService] = []
    yield started
    for w in started:
        await w.stop(grace_s=0)


async def start_worker(settings: Settings, workers: list[WorkerService]) -> WorkerService:
    w = WorkerService(settings)
    await w.start()
    workers.append(w)
    return w


def at(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


async def seqs_and_types(pool: asyncpg.Pool, job_id: str) -> list[tuple[int, str, str]]:
    return [(e["seq"], e["type"], e["status"]) for e in await events_of(pool, job_id)]


async def test_a_diamond_runs_in_order_and_the_last_job_sees_both_results(
    client: httpx.AsyncClient, settings: Settings, workers: list[WorkerService], pool: asyncpg.Pool
) -> None:
    a = await submit(client, "demo.sum", {"add": 1})
    b = await submit(client, "demo.sum", {"add": 10}, depends_on=[a["id"]])
    c = await submit(client, "demo.sum", {"add": 100}, depends_on=[a["id"]])
    d = await submit(client, "demo.sum", {"add": 0}, depends_on=[b["id"], c["id"]])
    assert a["status"] == "pending"
    assert [j["status"] for j in (b, c, d)] == ["waiting"] * 3
    assert d["depends_on"] == [b["id"], c["id"]]
    listed = (await client.get("/v1/jobs", params={"status": "waiting"})).json()["items"]
    assert {j["id"] for j in listed} == {b["id"], c["id"], d["id"]}
    # nothing waiting is on the queue: a worker started now runs A first
    await asyncio.sleep(0.3)
    assert (await client.get(f"/v1/jobs/{d['id']}")).json()["status"] == "waiting"

    await start_worker(settings, workers)
    await start_worker(settings, workers)
    done_d = await wait_status(client, d["id"], {"completed", "failed", "cancelled"}, timeout=15)
    assert done_d["status"] == "completed", done_d
    assert done_d["result"] == {"sum": 11 + 101, "inputs": 2}
    rows = {j["id"]: (await client.get(f"/v1/jobs/{j['id']}")).json() for j in (a, b, c)}
    assert rows[b["id"]]["result"] == {"sum": 11, "inputs": 1}
    assert rows[c["id"]]["result"] == {"sum": 101, "inputs": 1}
    for parent in (b, c):
        assert at(rows[a["id"]]["finished_at"]) <= at(rows[parent["id"]]["started_at"])
        assert at(rows[parent["id"]]["finished_at"]) <= at(done_d["started_at"])
    # one release each, with gapless seqs
    for child in (b, c, d):
        assert await seqs_and_types(pool, child["id"]) == [
            (1, "created", "waiting"),
            (2, "released", "pending"),
            (3, "started", "running"),
            (4, "completed", "completed"),
        ]


async def test_a_child_released_by_parents_finishing_together_on_two_workers_is_released_once(
    client: httpx.AsyncClient, settings: Settings, workers: list[WorkerService], pool: asyncpg.Pool
) -> None:
    parents = [await submit(client, "demo.sum", {"add": i}) for i in range(30)]
    child = await submit(client, "demo.sum", {}, depends_on=[p["id"] for p in parents])
    assert child["status"] == "waiting"
    await asyncio.gather(start_worker(settings, workers), start_worker(settings, workers))
    done = await wait_status(client, child["id"], "completed", timeout=20)
    assert done["result"] == {"sum": sum(range(30)), "inputs": 30}
    assert [t for _, t, _ in await seqs_and_types(pool, child["id"])] == [
        "created",
        "released",
        "started",
        "completed",
    ]


async def test_a_failure_cancels_its_dependents_transitively_with_their_events_and_webhooks(
    client: httpx.AsyncClient,
    settings: Settings,
    workers: list[WorkerService],
    pool: asyncpg.Pool,
    receiver: Receiver,
) -> None:
    dispatcher = Dispatcher(settings)
    await dispatcher.start()
    try:
        r = await client.post("/v1/webhooks", json={"url": receiver.url + "/endpoint"})
        assert r.status_code == 201, r.text
        a = await submit(client, "demo.fail", {"message": "boom"})
        ok = await submit(client, "demo.sum", {"add": 1})
        b = await submit(client, "demo.sum", {}, depends_on=[ok["id"], a["id"]])
        c = await submit(client, "demo.sum", {}, depends_on=[b["id"]], webhook_url=receiver.url + "/c")
        d = await submit(client, "demo.sum", {}, depends_on=[c["id"], ok["id"]])
        await start_worker(settings, workers)
        for child in (b, c, d):
            body = await wait_status(client, child["id"], "cancelled", timeout=15)
            assert body["error"]["type"] == "DependencyFailed", body
            assert body["started_at"] is None and body["finished_at"] is not None
        assert (await client.get(f"/v1/jobs/{b['id']}")).json()["error"]["message"] == (
            f"the job it depends on, {a['id']}, failed"
        )
        assert (await client.get(f"/v1/jobs/{c['id']}")).json()["error"]["message"] == (
            f"the job it depends on, {b['id']}, was cancelled"
        )
        for child in (b, c, d):
            assert await seqs_and_types(pool, child["id"]) == [
                (1, "created", "waiting"),
                (2, "cancelled", "cancelled"),
            ]
        # C's own webhook_url and the endpoint get its job.cancelled; B and D owe the endpoint one each
        await eventually(lambda: asyncio.sleep(0, receiver.at("/c")), timeout=10, what="C's webhook")
        c_hook = receiver.at("/c")[0].json
        assert c_hook["type"] == "job.cancelled" and c_hook["data"]["id"] == c["id"]
        assert c_hook["data"]["error"]["type"] == "DependencyFailed"

        def cancelled_at_endpoint() -> set[str]:
            return {
                h.json["data"]["id"] for h in receiver.at("/endpoint") if h.json["type"] == "job.cancelled"
            }

        await eventually(
            lambda: asyncio.sleep(0, cancelled_at_endpoint() >= {b["id"], c["id"], d["id"]}),
            timeout=10,
            what="the endpoint's deliveries",
        )
    finally:
        await dispatcher.stop()


async def test_a_dependency_on_an_unknown_or_foreign_job_is_refused(
    client: httpx.AsyncClient, make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    mine = await submit(client, "demo.sum", {})
    other = await make_client("globex")
    theirs = await submit(other, "demo.sum", {})
    before = await pool.fetchval("SELECT count(*) FROM jobs")
    for bad, index in (([mine["id"], str(uuid.uuid4())], 1), ([theirs["id"]], 0)):
        r = await client.post("/v1/jobs", json={"type": "demo.sum", "depends_on": bad})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == ["body", "depends_on", index]
        assert theirs["id"] not in r.text or index == 0
    r = await client.post("/v1/jobs", json={"type": "demo.sum", "depends_on": ["not-an-id"]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "depends_on", 0]
    r = await client.post("/v1/jobs", json={"type": "demo.sum", "depends_on": [mine["id"]] * 101})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "depends_on"]
    assert await pool.fetchval("SELECT count(*) FROM jobs") == before


async def test_a_job_depending_on_completed_jobs_runs_at_once_and_one_on_a_failed_job_is_cancelled(
    client: httpx.AsyncClient, settings: Settings, workers: list[WorkerService], pool: asyncpg.Pool
) -> None:
    await start_worker(settings, workers)
    a = await submit(client, "demo.sum", {"add": 2})
    failed = await submit(client, "demo.fail", {})
    await wait_status(client, a["id"], "completed")
    await wait_status(client, failed["id"], "failed")
    # listed twice: one dependency
    child = await submit(client, "demo.sum", {"add": 1}, depends_on=[a["id"], a["id"]])
    assert child["status"] == "pending" and child["depends_on"] == [a["id"]]
    assert (await wait_status(client, child["id"], "completed"))["result"] == {"sum": 3, "inputs": 1}
    # with Idempotency-Key (the other insert path) too
    r = await client.post(
        "/v1/jobs",
        json={"type": "demo.sum", "depends_on": [a["id"]]},
        headers={"Idempotency-Key": "k1"},
    )
    assert r.status_code == 202 and r.json()["status"] == "pending"
    doomed = await submit(client, "demo.sum", {}, depends_on=[a["id"], failed["id"]])
    assert doomed["status"] == "cancelled" and doomed["error"]["type"] == "DependencyFailed"
    assert await seqs_and_types(pool, doomed["id"]) == [
        (1, "created", "waiting"),
        (2, "cancelled", "cancelled"),
    ]


async def test_cancelling_a_waiting_job_cancels_its_dependents_and_the_parent_then_runs_alone(
    client: httpx.AsyncClient, settings: Settings, workers: list[WorkerService], pool: asyncpg.Pool
) -> None:
    a = await submit(client, "demo.sum", {"add": 1})
    b = await submit(client, "demo.sum", {}, depends_on=[a["id"]])
    c = await submit(client, "demo.sum", {}, depends_on=[b["id"]])
    r = await client.post(f"/v1/jobs/{b['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["error"] is None
    body = (await client.get(f"/v1/jobs/{c['id']}")).json()
    assert body["status"] == "cancelled" and body["error"]["type"] == "DependencyFailed"
    await start_worker(settings, workers)
    await wait_status(client, a["id"], "completed")
    await asyncio.sleep(0.3)
    assert (await client.get(f"/v1/jobs/{b['id']}")).json()["status"] == "cancelled"
    assert [t for _, t, _ in await seqs_and_types(pool, b["id"])] == ["created", "cancelled"]
    # a retried dependent waits for its dependencies again: B was cancelled, so it ends at once
    r = await client.post(f"/v1/jobs/{c['id']}/retry")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "cancelled" and r.json()["error"]["type"] == "DependencyFailed"
    assert await seqs_and_types(pool, c["id"]) == [
        (1, "created", "waiting"),
        (2, "cancelled", "cancelled"),
        (3, "retrying", "waiting"),
        (4, "cancelled", "cancelled"),
    ]
    r = await client.post(f"/v1/jobs/{b['id']}/retry")
    assert r.status_code == 202 and r.json()["status"] == "pending"
    assert (await wait_status(client, b["id"], "completed"))["result"] == {"sum": 1, "inputs": 1}


async def test_a_delayed_dependent_released_before_its_time_is_scheduled_and_runs_at_it(
    client: httpx.AsyncClient, settings: Settings, workers: list[WorkerService], pool: asyncpg.Pool
) -> None:
    await start_worker(settings, workers)
    # A runs for a second, B is due 4 s from now: released in between, it is scheduled until then
    a = await submit(client, "demo.sleep", {"seconds": 1})
    b = await submit(client, "demo.sleep", {"seconds": 0}, depends_on=[a["id"]], delay_s=4)
    assert b["status"] == "waiting" and b["run_at"] is not None
    await wait_status(client, a["id"], "completed")
    assert (await wait_status(client, b["id"], "scheduled"))["run_at"] == b["run_at"]
    done = await wait_status(client, b["id"], "completed", timeout=10)
    assert at(done["started_at"]) >= at(b["run_at"])
    assert [t for _, t, _ in await seqs_and_types(pool, b["id"])] == [
        "created",
        "released",
        "started",
        "progress",
        "completed",
    ]


async def test_a_waiting_job_expires_and_its_dependents_follow(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    a = await submit(client, "demo.sum", {})
    b = await submit(client, "demo.sum", {}, depends_on=[a["id"]], ttl_s=0.5)
    c = await submit(client, "demo.sum", {}, depends_on=[b["id"]])
    body = await wait_status(client, b["id"], "cancelled", timeout=5)
    assert body["error"]["type"] == "Expired"
    body = await wait_status(client, c["id"], "cancelled", timeout=5)
    assert body["error"]["type"] == "DependencyFailed"


async def test_the_sweep_settles_what_a_lost_process_left_waiting(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    a = await submit(client, "demo.sum", {})
    f = await submit(client, "demo.sum", {})
    released = await submit(client, "demo.sum", {}, depends_on=[a["id"]])
    doomed = await submit(client, "demo.sum", {}, depends_on=[f["id"]])
    # the parents end around the settle (as if their process died right after the commit)
    await pool.execute("UPDATE jobs SET status = 'completed', result = '7' WHERE id = $1", uuid.UUID(a["id"]))
    await pool.execute("UPDATE jobs SET status = 'failed' WHERE id = $1", uuid.UUID(f["id"]))
    keys = Keys(settings.namespace)
    redis = create_redis(settings.redis_url)
    try:
        assert not await redis.exists(keys.arq_job_key(uuid.UUID(released["id"])))
        assert await dependencies.sweep_once(pool, redis, keys, older_than_s=0) == (2, None)
        assert await redis.exists(keys.arq_job_key(uuid.UUID(released["id"])))
        assert await dependencies.sweep_once(pool, redis, keys, older_than_s=0) == (0, None)
    finally:
        await redis.aclose()
    assert (await client.get(f"/v1/jobs/{released['id']}")).json()["status"] == "pending"
    body = (await client.get(f"/v1/jobs/{doomed['id']}")).json()
    assert body["status"] == "cancelled" and body["error"]["type"] == "DependencyFailed"


async def test_a_released_job_streams_its_released_event(
    client: httpx.AsyncClient, settings: Settings, workers: list[WorkerService]
) -> None:
    a = await submit(client, "demo.sum", {"add": 5})
    b = await submit(client, "demo.sum", {}, depends_on=[a["id"]])
    types: list[str] = []

    async def read() -> None:
        async with client.stream("GET", b["events_url"]) as r:
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    types.append(line.removeprefix("event: "))

    reader = asyncio.ensure_future(read())
    await asyncio.sleep(0.3)
    await start_worker(settings, workers)
    await asyncio.wait_for(reader, 15)
    assert types == ["created", "released", "started", "completed"]


# ---- races, on the store and the settle directly (no api, no worker) -----------------------------


def new_job(**extra: Any) -> jobstore.NewJob:
    return jobstore.NewJob(
        id=new_id(),
        tenant="acme",
        type="demo.sum",
        params={},
        priority="normal",
        max_attempts=1,
        webhook_url=None,
        **extra,
    )


@pytest.fixture
async def redis_keys(settings: Settings) -> AsyncIterator[tuple[Redis, Keys]]:
    redis = create_redis(settings.redis_url)
    yield redis, Keys(settings.namespace)
    await redis.aclose()


async def test_a_child_inserted_while_its_parent_completes_is_released_by_its_own_settle(
    pool: asyncpg.Pool, redis_keys: tuple[Redis, Keys]
) -> None:
    redis, keys = redis_keys
    parent = await jobstore.insert_job(pool, new_job())
    started = await jobstore.start_pending(pool, parent["id"])
    assert started is not None
    child = new_job(depends_on=[parent["id"]])
    async with pool.acquire() as conn, conn.transaction():
        inserted = await jobstore.insert_job(conn, child)
        assert inserted["status"] == "waiting"  # the parent is running
        # the parent completes and settles its children before the child's insert commits
        done = await jobstore.complete(pool, parent["id"], started["runs"], 1)
        assert done is not None
        await dependencies.after_ended(pool, redis, keys, [done])
    assert (await jobstore.get_job(pool, child.id, None))["status"] == "waiting"  # type: ignore[index]
    # what every insert path does after its commit
    changed = await dependencies.settle(pool, redis, keys, [child.id])
    assert [(r["id"], r["status"]) for r in changed] == [(child.id, "pending")]
    assert await redis.exists(keys.arq_job_key(child.id))
    assert await seqs_and_types(pool, str(child.id)) == [
        (1, "created", "waiting"),
        (2, "released", "pending"),
    ]


async def test_many_parents_settling_at_once_release_their_child_once(
    pool: asyncpg.Pool, redis_keys: tuple[Redis, Keys]
) -> None:
    redis, keys = redis_keys
    parents = [await jobstore.insert_job(pool, new_job()) for _ in range(12)]
    child = await jobstore.insert_job(pool, new_job(depends_on=[p["id"] for p in parents]))
    assert child["status"] == "waiting"
    ids = [p["id"] for p in parents]
    rows = await pool.fetch(
        "UPDATE jobs SET status = 'completed', result = '1' WHERE id = ANY($1::uuid[]) RETURNING *", ids
    )
    # every parent's process settles at the same moment (the pool has 4 connections: real overlap)
    await asyncio.gather(*(dependencies.after_ended(pool, redis, keys, [r]) for r in rows))
    assert await seqs_and_types(pool, str(child["id"])) == [
        (1, "created", "waiting"),
        (2, "released", "pending"),
    ]


async def test_a_failure_and_a_completion_settling_at_once_cancel_the_child_once(
    pool: asyncpg.Pool, redis_keys: tuple[Redis, Keys]
) -> None:
    redis, keys = redis_keys
    ok, bad = await jobstore.insert_job(pool, new_job()), await jobstore.insert_job(pool, new_job())
    child = await jobstore.insert_job(pool, new_job(depends_on=[ok["id"], bad["id"]]))
    grandchild = await jobstore.insert_job(pool, new_job(depends_on=[child["id"]]))
    done = await pool.fetchrow("UPDATE jobs SET status = 'completed' WHERE id = $1 RETURNING *", ok["id"])
    failed = await pool.fetchrow("UPDATE jobs SET status = 'failed' WHERE id = $1 RETURNING *", bad["id"])
    assert done is not None and failed is not None
    await asyncio.gather(
        dependencies.after_ended(pool, redis, keys, [done]),
        dependencies.after_ended(pool, redis, keys, [failed]),
        dependencies.after_ended(pool, redis, keys, [failed]),
    )
    for job in (child, grandchild):
        assert await seqs_and_types(pool, str(job["id"])) == [
            (1, "created", "waiting"),
            (2, "cancelled", "cancelled"),
        ]
    row = await jobstore.get_job(pool, grandchild["id"], None)
    assert row is not None and row["error"]["type"] == "DependencyFailed"


async def test_the_sweep_reads_many_waiting_jobs_over_several_passes(
    pool: asyncpg.Pool, redis_keys: tuple[Redis, Keys], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis, keys = redis_keys
    monkeypatch.setattr(dependencies, "PAGE", 2)
    running = await jobstore.insert_job(pool, new_job())
    done = await jobstore.insert_job(pool, new_job())
    still = [await jobstore.insert_job(pool, new_job(depends_on=[running["id"]])) for _ in range(3)]
    ready = [await jobstore.insert_job(pool, new_job(depends_on=[done["id"]])) for _ in range(5)]
    await pool.execute("UPDATE jobs SET status = 'completed' WHERE id = $1", done["id"])
    settled, after, passes = 0, None, 0
    while True:
        n, after = await dependencies.sweep_once(pool, redis, keys, older_than_s=0, after=after, pages=1)
        settled, passes = settled + n, passes + 1
        if after is None:
            break
    # 8 waiting jobs, 2 a page, 1 page a pass: four full pages, then an empty one ends the round
    assert settled == 5 and passes == 5
    statuses = {r["id"]: r["status"] for r in await pool.fetch("SELECT id, status FROM jobs")}
    assert {statuses[j["id"]] for j in ready} == {"pending"}
    assert {statuses[j["id"]] for j in still} == {"waiting"}


async def test_jobs_inserted_together_wait_for_each_other_and_settle_against_older_parents(
    pool: asyncpg.Pool, redis_keys: tuple[Redis, Keys]
) -> None:
    """The group-committed insert a batch uses: a job may depend on jobs of the same statement (as
    a batch's indexes are mapped to ids) and on older jobs."""
    redis, keys = redis_keys
    failed = await jobstore.insert_job(pool, new_job())
    await pool.execute("UPDATE jobs SET status = 'failed' WHERE id = $1", failed["id"])
    first = new_job()
    second = new_job(depends_on=[first.id])
    third = new_job(depends_on=[first.id, second.id])
    doomed = new_job(depends_on=[first.id, failed["id"]])
    jobs = [first, second, third, doomed]
    rows = await jobstore.insert_jobs(pool, jobs)
    assert [rows[j.id]["status"] for j in jobs] == ["pending", "waiting", "waiting", "waiting"]
    rows = await dependencies.after_insert(pool, redis, keys, jobs, rows)
    assert [rows[j.id]["status"] for j in jobs] == ["pending", "waiting", "waiting", "cancelled"]
    assert rows[doomed.id]["error"]["type"] == "DependencyFailed"
    # the jobs of the same statement are released as their parents complete, in order
    started = await jobstore.start_pending(pool, first.id)
    assert started is not None
    done = await jobstore.complete(pool, first.id, started["runs"], 1)
    assert done is not None
    await dependencies.after_ended(pool, redis, keys, [done])
    statuses = {r["id"]: r["status"] for r in await jobstore.get_jobs(pool, [second.id, third.id], None)}
    assert statuses == {second.id: "pending", third.id: "waiting"}
