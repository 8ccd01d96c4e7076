"""Delayed jobs (run_at / delay_s, status `scheduled`, PATCH, cancel) and expiry (expires_at /
ttl_s), on a real api and real workers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from jobwire.config import Settings
from jobwire.keys import Keys
from jobwire.redis_client import create_redis
from tests.conftest import (
    ClientFactory,
    delete_namespace,
    events_of,
    eventually,
    make_settings,
    submit,
    wait_status,
)
from workers.worker import WorkerService


def at(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    # a slow poll: a delayed job must still start on time (the worker sleeps until it is due)
    return make_settings(
        database, namespace, worker_poll_delay_s=5.0, expiry_sweep_s=0.2, webhook_allow_private=True
    )


async def test_a_delayed_job_is_scheduled_then_starts_at_its_time_not_before(
    client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 0}, delay_s=1.5)
    assert job["status"] == "scheduled" and job["expires_at"] is None and job["schedule_id"] is None
    run_at = at(job["run_at"])
    assert timedelta(seconds=1.3) < run_at - at(job["created_at"]) < timedelta(seconds=1.7)
    listed = (await client.get("/v1/jobs", params={"status": "scheduled"})).json()["items"]
    assert [j["id"] for j in listed] == [job["id"]]
    done = await wait_status(client, job["id"], "completed", timeout=10)
    late = at(done["started_at"]) - run_at
    # never early, and on time although the worker polls every 5 s
    assert timedelta(0) <= late < timedelta(seconds=1), late
    assert [e["type"] for e in await events_of(pool, job["id"])] == [
        "created",
        "started",
        "progress",
        "completed",
    ]
    # a job submitted later but due sooner, while the worker sleeps: the wake message brings it
    soon = await submit(client, "demo.sleep", {"seconds": 0}, delay_s=0.5)
    done = await wait_status(client, soon["id"], "completed", timeout=10)
    assert timedelta(0) <= at(done["started_at"]) - at(soon["run_at"]) < timedelta(seconds=1)


async def test_submission_times_are_validated(client: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"run_at": now.isoformat(), "delay_s": 5}, ["body", "delay_s"]),
        ({"delay_s": 367 * 86400}, ["body", "delay_s"]),
        ({"run_at": (now + timedelta(days=367)).isoformat()}, ["body", "run_at"]),
        ({"run_at": "2030-01-01T00:00:00"}, ["body", "run_at"]),  # no offset
        ({"delay_s": -1}, ["body", "delay_s"]),
        ({"ttl_s": 5, "expires_at": (now + timedelta(hours=1)).isoformat()}, ["body", "ttl_s"]),
        ({"delay_s": 60, "ttl_s": 30}, ["body", "ttl_s"]),
        ({"ttl_s": 9.7e307}, ["body", "ttl_s"]),  # would overflow the expiry time
        ({"expires_at": (now - timedelta(seconds=5)).isoformat()}, ["body", "expires_at"]),
    ]
    for extra, loc in cases:
        r = await client.post("/v1/jobs", json={"type": "demo.sleep", "params": {}, **extra})
        assert r.status_code == 422, (extra, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert r.json()["errors"][0]["loc"] == loc, (extra, r.json())
    # a time in the past means now: not delayed
    past = await submit(client, "demo.sleep", {}, run_at=(now - timedelta(hours=1)).isoformat())
    assert past["status"] == "pending" and past["run_at"] is None
    # an offset other than Z is understood, and shown in UTC
    day = (now + timedelta(days=30)).date().isoformat()
    later = await submit(client, "demo.sleep", {}, run_at=f"{day}T09:00:00+02:00", ttl_s=10**9)
    assert later["status"] == "scheduled" and later["run_at"] == f"{day}T07:00:00.000000Z"


async def test_a_scheduled_job_is_moved_and_cancelled_and_nothing_else_is(
    make_client: ClientFactory, settings: Settings
) -> None:
    client = await make_client("acme")
    job = await submit(client, "demo.sleep", {}, delay_s=3600)
    first = await client.get(f"/v1/jobs/{job['id']}")
    r = await client.patch(f"/v1/jobs/{job['id']}", json={"delay_s": 7200})
    assert r.status_code == 200, r.text
    assert at(r.json()["run_at"]) - at(job["run_at"]) > timedelta(seconds=3500)
    assert r.json()["status"] == "scheduled"
    # the move changes the representation's version, though it is no event
    assert r.headers["ETag"] != first.headers["ETag"]
    again = await client.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 200
    new_at = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    new_time = new_at.isoformat()
    moved = await client.patch(f"/v1/jobs/{job['id']}", json={"run_at": new_time})
    assert at(moved.json()["run_at"]) == new_at
    # the queue follows PostgreSQL
    redis = create_redis(settings.redis_url)
    try:
        keys = Keys(settings.namespace)
        score = await redis.zscore(keys.queue, keys.arq_job_id(job["id"]))
        assert score == new_at.timestamp() * 1000
    finally:
        await redis.aclose()
    for body, loc in (({}, ["body", "run_at"]), ({"delay_s": 1, "run_at": new_time}, ["body", "run_at"])):
        r = await client.patch(f"/v1/jobs/{job['id']}", json=body)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == loc, r.text
    # another tenant: 404, as an unknown id
    intruder = await make_client("globex")
    assert (await intruder.patch(f"/v1/jobs/{job['id']}", json={"delay_s": 1})).status_code == 404
    assert (await intruder.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 404
    assert (await client.patch(f"/v1/jobs/{uuid.uuid4()}", json={"delay_s": 1})).status_code == 404
    # cancel: at once
    r = await client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # only a scheduled job moves
    r = await client.patch(f"/v1/jobs/{job['id']}", json={"delay_s": 1})
    assert r.status_code == 409 and r.json()["status"] == 409
    pending = await submit(client, "test.block", {"seconds": 30})
    assert (await client.patch(f"/v1/jobs/{pending['id']}", json={"delay_s": 1})).status_code == 409


async def test_a_delayed_job_survives_a_redis_wipe_and_a_wrong_score_and_never_starts_early(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    wiped = await submit(client, "demo.sleep", {"seconds": 0}, delay_s=2.5)
    wrong = await submit(client, "demo.sleep", {"seconds": 0}, delay_s=2.5)
    keys = Keys(settings.namespace)
    # Redis loses every key of the namespace
    await delete_namespace(settings.redis_url, settings.namespace)
    # the reconciler restores both at their time; then the second is scored as due long ago, and
    # the worker it is offered to early defers it
    service = WorkerService(settings)
    await service.start()
    try:
        redis = create_redis(settings.redis_url)
        try:
            await eventually(
                lambda: redis.exists(keys.arq_job_key(wrong["id"])), timeout=5, what="reconciled"
            )
            await redis.zadd(keys.queue, {keys.arq_job_id(wrong["id"]): 1})
        finally:
            await redis.aclose()
        for job in (wiped, wrong):
            done = await wait_status(client, job["id"], "completed", timeout=10)
            late = at(done["started_at"]) - at(job["run_at"])
            assert timedelta(0) <= late < timedelta(seconds=1.5), (job["id"], late)
            assert done["attempts"] == 1
    finally:
        await service.stop(grace_s=0)


async def test_a_high_job_due_with_normal_jobs_starts_first(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    due = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    normal = [await submit(client, "demo.sleep", {"seconds": 0}, run_at=due) for _ in range(4)]
    # an immediate normal backlog queued before the high job is due
    backlog = [await submit(client, "test.block", {"seconds": 0.05}) for _ in range(3)]
    high = await submit(client, "demo.sleep", {"seconds": 0}, run_at=due, priority="high")
    one = make_settings(settings.database_url, settings.namespace, worker_poll_delay_s=5.0)
    # one slot, started after the time: the order of starts is the queue's order
    await eventually(
        lambda: _after(at(high["run_at"])), timeout=5, interval=0.05, what="the jobs to come due"
    )
    service = WorkerService(one, concurrency=1)
    await service.start()
    try:
        jobs = [await wait_status(client, j["id"], "completed") for j in (*normal, *backlog, high)]
    finally:
        await service.stop(grace_s=0)
    started = {j["id"]: at(j["started_at"]) for j in jobs}
    assert all(started[high["id"]] < started[j["id"]] for j in (*normal, *backlog))
    assert started[high["id"]] >= at(high["run_at"])


async def _after(when: datetime) -> bool:
    return datetime.now(UTC) > when + timedelta(milliseconds=100)


async def test_an_unstarted_job_expires_with_no_worker_running(
    client: httpx.AsyncClient, pool: asyncpg.Pool, receiver: Any
) -> None:
    job = await submit(client, "demo.sleep", {}, ttl_s=0.5, webhook_url=receiver.url + "/own")
    assert job["status"] == "pending" and job["expires_at"] is not None
    done = await wait_status(client, job["id"], "cancelled", timeout=5)
    assert done["error"]["type"] == "Expired" and done["started_at"] is None
    assert at(done["finished_at"]) >= at(job["expires_at"])
    assert [e["type"] for e in await events_of(pool, job["id"])] == ["created", "cancelled"]
    owed = await pool.fetch("SELECT event_type, job FROM deliveries WHERE job_id = $1", uuid.UUID(job["id"]))
    assert [d["event_type"] for d in owed] == ["job.cancelled"]


async def test_a_worker_never_starts_a_job_after_its_expiry(
    database: str, namespace: str, make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    # no sweep to speak of: the start itself must refuse the job
    slow_sweep = make_settings(database, namespace, expiry_sweep_s=3600)
    client = await make_client("acme")
    job = await submit(client, "demo.sleep", {"seconds": 0}, ttl_s=0.3)
    fine = await submit(client, "demo.sleep", {"seconds": 0}, ttl_s=60)
    await eventually(lambda: _after(at(job["expires_at"])), timeout=3, what="the expiry")
    service = WorkerService(slow_sweep)
    await service.start()
    try:
        done = await wait_status(client, job["id"], "cancelled", timeout=5)
        assert done["error"]["type"] == "Expired" and done["started_at"] is None
        assert (await wait_status(client, fine["id"], "completed"))["error"] is None
    finally:
        await service.stop(grace_s=0)
    assert [e["type"] for e in await events_of(pool, job["id"])] == ["created", "cancelled"]
