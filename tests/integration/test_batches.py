"""Batches against a real api, workers and dispatcher: all-or-nothing submission, counts and
progress exact whatever the interleaving, one batch webhook after every job's own, cancel, tenant
isolation, idempotency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from jobwire.config import Settings
from service import schemas
from tests.conftest import QUICK_WEBHOOKS, ClientFactory, eventually, make_settings
from tests.receiver import Receiver
from workers.dispatcher import Dispatcher
from workers.worker import WorkerService


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(database, namespace, batch_settle_s=0.05, **QUICK_WEBHOOKS)


@pytest.fixture
async def dispatcher(settings: Settings) -> AsyncIterator[Dispatcher]:
    d = Dispatcher(settings)
    await d.start()
    yield d
    await d.stop()


async def submit_batch(client: httpx.AsyncClient, jobs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    r = await client.post("/v1/batches", json={"jobs": jobs, **extra})
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    assert r.headers["Location"] == f"/v1/batches/{body['id']}"
    schemas.Batch.model_validate(body)
    return body


async def wait_batch(
    client: httpx.AsyncClient, batch_id: str, status: str, timeout: float = 20
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        r = await client.get(f"/v1/batches/{batch_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body if body["status"] == status and body["finished_at"] else None

    return await eventually(check, timeout=timeout, what=f"batch {batch_id} to be {status}")


async def batch_jobs(client: httpx.AsyncClient, batch_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"batch_id": batch_id, "limit": 200}
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/v1/jobs", params=params)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


def zero_counts(**counts: int) -> dict[str, int]:
    base = dict.fromkeys(
        ("scheduled", "waiting", "pending", "running", "completed", "failed", "cancelled"), 0
    )
    return {**base, **counts}


# ---- submission ---------------------------------------------------------------------------------


async def test_a_batch_is_stored_whole_and_its_jobs_show_it(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    jobs = [{"type": "demo.sleep", "params": {"seconds": 5}, "labels": {"n": str(i)}} for i in range(30)]
    batch = await submit_batch(client, jobs, labels={"customer": "acme"})
    assert batch["status"] == "running" and batch["total"] == 30
    assert batch["counts"] == zero_counts(pending=30)
    assert batch["progress"] == 0 and batch["labels"] == {"customer": "acme"}
    assert batch["jobs_url"] == f"/v1/jobs?batch_id={batch['id']}"
    assert batch["events_url"].startswith(f"/v1/batches/{batch['id']}/events?token=")
    listed = await batch_jobs(client, batch["id"])
    assert len(listed) == 30
    assert {j["batch_id"] for j in listed} == {batch["id"]}
    assert sorted(int(j["labels"]["n"]) for j in listed) == list(range(30))
    # one commit: every job and the batch row share the transaction's timestamp
    stamps = await pool.fetch(
        "SELECT DISTINCT created_at FROM jobs WHERE batch_id = $1", uuid.UUID(batch["id"])
    )
    assert len(stamps) == 1
    r = await client.get(f"/v1/batches/{batch['id']}")
    assert r.json()["counts"] == zero_counts(pending=30)
    r = await client.get("/v1/batches")
    assert [b["id"] for b in r.json()["items"]] == [batch["id"]]
    schemas.BatchList.model_validate(r.json())


@pytest.mark.parametrize(
    ("job", "loc"),
    [
        ({"type": "demo.sleep", "params": {"seconds": -1}}, ["body", "jobs", 3, "params", "seconds"]),
        ({"type": "no.such"}, ["body", "jobs", 3, "type"]),
        ({"type": "demo.sleep", "depends_on": [3]}, ["body", "jobs", 3, "depends_on", 0]),
        ({"type": "demo.sleep", "depends_on": [0, 7]}, ["body", "jobs", 3, "depends_on", 1]),
        ({"type": "demo.sleep", "depends_on": [str(uuid.uuid4())]}, ["body", "jobs", 3, "depends_on", 0]),
        (
            {"type": "demo.sleep", "labels": {"Bad Key": "x"}},
            ["body", "jobs", 3, "labels", "Bad Key", "[key]"],
        ),
        (
            {"type": "demo.sleep", "delay_s": 1, "run_at": "2030-01-01T00:00:00Z"},
            ["body", "jobs", 3, "delay_s"],
        ),
    ],
)
async def test_one_bad_job_refuses_the_whole_batch_naming_its_index(
    client: httpx.AsyncClient, pool: asyncpg.Pool, job: dict[str, Any], loc: list[Any]
) -> None:
    jobs: list[dict[str, Any]] = [{"type": "demo.sleep"} for _ in range(5)]
    jobs[3] = job
    r = await client.post("/v1/batches", json={"jobs": jobs})
    assert r.status_code == 422, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["loc"] == loc
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0
    assert await pool.fetchval("SELECT count(*) FROM batches") == 0


async def test_batch_size_bounds(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/batches", json={"jobs": []})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "jobs"]
    r = await client.post("/v1/batches", json={"jobs": [{"type": "demo.sleep"}] * 1001})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "jobs"]


async def test_a_job_of_the_tenant_may_be_a_dependency_but_not_another_tenants(
    make_client: ClientFactory,
) -> None:
    acme, umbrella = await make_client("acme"), await make_client("umbrella")
    r = await acme.post("/v1/jobs", json={"type": "demo.sleep"})
    mine = r.json()["id"]
    batch = await submit_batch(
        acme, [{"type": "demo.sleep", "depends_on": [mine]}, {"type": "demo.sleep", "depends_on": [0]}]
    )
    listed = {j["id"]: j for j in await batch_jobs(acme, batch["id"])}
    deps = sorted(len(j["depends_on"]) for j in listed.values())
    assert deps == [1, 1]
    assert any(j["depends_on"] == [mine] for j in listed.values())
    assert any(j["depends_on"][0] in listed for j in listed.values())
    r = await umbrella.post("/v1/batches", json={"jobs": [{"type": "demo.sleep", "depends_on": [mine]}]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "jobs", 0, "depends_on", 0]


async def test_an_idempotency_key_replays_the_batch(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    body = {"jobs": [{"type": "demo.sleep"}, {"type": "demo.sleep"}]}
    first = await client.post("/v1/batches", json=body, headers={"Idempotency-Key": "k1"})
    again = await client.post("/v1/batches", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 2
    other = await client.post(
        "/v1/batches", json={"jobs": [{"type": "demo.sleep"}]}, headers={"Idempotency-Key": "k1"}
    )
    assert other.status_code == 422 and "different request body" in other.json()["detail"]
    # the key's space is shared with jobs: a job with the batch's key is another request
    job = await client.post("/v1/jobs", json={"type": "demo.sleep"}, headers={"Idempotency-Key": "k1"})
    assert job.status_code == 422


# ---- tenant isolation ---------------------------------------------------------------------------


async def test_another_tenants_batch_is_not_found_anywhere(make_client: ClientFactory) -> None:
    acme, umbrella = await make_client("acme"), await make_client("umbrella")
    batch = await submit_batch(acme, [{"type": "demo.sleep", "params": {"seconds": 30}}])
    bid = batch["id"]
    for r in (
        await umbrella.get(f"/v1/batches/{bid}"),
        await umbrella.post(f"/v1/batches/{bid}/cancel"),
        await umbrella.get(f"/v1/batches/{bid}/events"),
    ):
        assert r.status_code == 404, r.text
    assert (await umbrella.get("/v1/batches")).json()["items"] == []
    assert (await umbrella.get("/v1/jobs", params={"batch_id": bid})).json()["items"] == []
    # the batch's stream token opens that batch's stream only
    token = batch["events_url"].split("token=")[1]
    async with httpx.AsyncClient(base_url=str(acme.base_url)) as anon:
        r = await anon.get("/v1/batches", params={"token": token})
        assert r.status_code == 401
        job = (await batch_jobs(acme, bid))[0]
        r = await anon.get(f"/v1/jobs/{job['id']}/events", params={"token": token})
        assert r.status_code == 404


# ---- completion ---------------------------------------------------------------------------------


async def test_many_jobs_finishing_at_once_on_two_workers_settle_exactly_once(
    make_client: ClientFactory,
    settings: Settings,
    receiver: Receiver,
    dispatcher: Dispatcher,
    pool: asyncpg.Pool,
) -> None:
    client = await make_client("acme")
    r = await client.post(
        "/v1/webhooks",
        json={"url": receiver.url + "/endpoint", "events": ["batch.completed", "job.completed"]},
    )
    assert r.status_code == 201, r.text
    n = 300
    jobs: list[dict[str, Any]] = [{"type": "demo.sleep", "params": {"seconds": 0}} for _ in range(n - 5)]
    jobs += [{"type": "test.say", "params": {"text": "Boom", "fail": True}} for _ in range(5)]
    workers = [
        WorkerService(
            make_settings(
                settings.database_url, settings.namespace, worker_concurrency=50, batch_settle_s=0.05
            )
        )
        for _ in range(2)
    ]
    for w in workers:
        await w.start()
    try:
        batch = await submit_batch(client, jobs, webhook_url=receiver.url + "/batch")
        done = await wait_batch(client, batch["id"], "completed", timeout=60)
    finally:
        for w in workers:
            await w.stop(grace_s=0)
    assert done["counts"] == zero_counts(completed=n - 5, failed=5)
    # the mean of what its jobs reached: the failed ones keep their own progress
    mean = await pool.fetchval("SELECT avg(progress) FROM jobs WHERE batch_id = $1", uuid.UUID(batch["id"]))
    assert done["progress"] == round(float(mean), 2) < 100
    assert done["total"] == n
    # both workers ran some of them
    ran = await pool.fetchval(
        "SELECT count(*) FROM jobs WHERE batch_id = $1 AND status IN ('completed', 'failed')",
        uuid.UUID(batch["id"]),
    )
    assert ran == n

    async def batch_hooks() -> list[Any] | None:
        hooks = [q for q in receiver.requests if q.json["type"].startswith("batch.")]
        return hooks if len(hooks) >= 2 else None

    hooks = await eventually(batch_hooks, timeout=15, what="the batch webhooks")
    await asyncio.sleep(1)  # nothing more comes
    hooks = [q for q in receiver.requests if q.json["type"].startswith("batch.")]
    # one delivery per destination (an attempt that timed out on this busy machine may arrive
    # twice, with the same webhook-id: at least once, deduplicated by receivers)
    assert {q.path for q in hooks} == {"/batch", "/endpoint"}
    assert len({q.webhook_id for q in hooks}) == 1
    owed = await pool.fetch("SELECT url, event_type FROM deliveries WHERE batch_id = $1::uuid", batch["id"])
    assert sorted(r["url"].rsplit("/", 1)[1] for r in owed) == ["batch", "endpoint"]
    assert {r["event_type"] for r in owed} == {"batch.completed"}
    for q in hooks:
        assert q.json["type"] == "batch.completed"
        assert q.json["data"]["counts"] == done["counts"]
        assert q.json["data"]["id"] == batch["id"]
        schemas.BatchWebhookPayload.model_validate(q.json)
    # created after every job's own
    stamps = await pool.fetchrow(
        "SELECT (SELECT max(created_at) FROM deliveries WHERE job_id IS NOT NULL),"
        " (SELECT min(created_at) FROM deliveries WHERE batch_id IS NOT NULL)"
    )
    assert stamps is not None
    last_job_delivery, batch_delivery = stamps
    assert last_job_delivery is not None and batch_delivery > last_job_delivery
    assert await pool.fetchval("SELECT count(*) FROM batch_checks") == 0


async def test_cancel_ends_every_unfinished_job_and_sends_one_webhook(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    worker = WorkerService(
        make_settings(settings.database_url, settings.namespace, worker_concurrency=2, batch_settle_s=0.05)
    )
    await worker.start()
    try:
        jobs = [{"type": "demo.sleep", "params": {"seconds": 0}, "priority": "high"}] + [
            {"type": "test.block", "params": {"seconds": 30}} for _ in range(6)
        ]
        batch = await submit_batch(client, jobs, webhook_url=receiver.url + "/batch")

        async def two_running() -> bool:
            b = (await client.get(f"/v1/batches/{batch['id']}")).json()
            return bool(b["counts"]["running"] == 2 and b["counts"]["completed"] == 1)

        await eventually(two_running, what="two running jobs")
        r = await client.post(f"/v1/batches/{batch['id']}/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
        done = await wait_batch(client, batch["id"], "cancelled")
        assert done["counts"] == zero_counts(completed=1, cancelled=6)
        r = await client.post(f"/v1/batches/{batch['id']}/cancel")
        assert r.status_code == 409
    finally:
        await worker.stop(grace_s=0)
    hook = await eventually(lambda: _first(receiver, "/batch"), what="the batch webhook")
    assert hook.json["type"] == "batch.cancelled"
    assert hook.json["data"]["counts"] == done["counts"]
    await asyncio.sleep(0.5)
    assert len({q.webhook_id for q in receiver.at("/batch")}) == 1


async def _first(receiver: Receiver, path: str) -> Any:
    hits = receiver.at(path)
    return hits[0] if hits else None
