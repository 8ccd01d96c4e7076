"""Schedules on a real api and real workers: the /v1/schedules routes and their validation, slots
fired on time and at most once by several schedulers, overlap, pause and resume, trigger."""

from __future__ import annotations

import asyncio
import itertools
import signal
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from jobwire.config import Settings
from jobwire.registry import Registry
from tests.conftest import Api, ClientFactory, eventually, new_key, wait_status
from tests.integration.test_faults import WorkerProcess
from workers.worker import WorkerService


def at(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


def body(**extra: Any) -> dict[str, Any]:
    return {
        "name": f"s-{uuid.uuid4().hex[:8]}",
        "interval_s": 1,
        "job": {"type": "demo.sleep", "params": {"seconds": 0}},
        **extra,
    }


async def create(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    r = await client.post("/v1/schedules", json=body(**extra))
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def fired(pool: asyncpg.Pool, schedule_id: str) -> list[asyncpg.Record]:
    """The jobs the timetable fired (not triggers), by slot."""
    return list(
        await pool.fetch(
            "SELECT id, schedule_slot, created_at, status FROM jobs"
            " WHERE schedule_id = $1 AND schedule_slot IS NOT NULL ORDER BY schedule_slot",
            uuid.UUID(schedule_id),
        )
    )


async def test_create_read_list_change_delete(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/schedules",
        json={
            "name": "nightly-report",
            "cron": "0 3 * * *",
            "timezone": "Europe/Berlin",
            "job": {"type": "demo.sleep", "params": {"seconds": 1}, "priority": "high"},
            "description": "every night",
        },
    )
    assert r.status_code == 201, r.text
    s = r.json()
    assert r.headers["Location"] == f"/v1/schedules/{s['id']}"
    assert s["job"] == {
        "type": "demo.sleep",
        "params": {"seconds": 1, "steps": 1},  # normalised by the type's model, as a submission is
        "priority": "high",
        "webhook_url": None,
    }
    assert (s["cron"], s["interval_s"], s["overlap"], s["paused"]) == ("0 3 * * *", None, "skip", False)
    next_run = at(s["next_run_at"])
    assert next_run.astimezone(ZoneInfo("Europe/Berlin")).hour == 3
    assert s["last_run_at"] is None and s["last_job_id"] is None
    assert (await client.get(f"/v1/schedules/{s['id']}")).json() == s

    # the same name again: 409; another name is fine
    again = await client.post("/v1/schedules", json={**body(), "name": "nightly-report"})
    assert again.status_code == 409, again.text
    other = await create(client, name="other")

    # pause: no next run; resume: the next slot after now
    paused = (await client.patch(f"/v1/schedules/{s['id']}", json={"paused": True})).json()
    assert paused["paused"] is True and paused["next_run_at"] is None
    resumed = (await client.patch(f"/v1/schedules/{s['id']}", json={"paused": False})).json()
    assert resumed["paused"] is False and resumed["next_run_at"] == s["next_run_at"]
    # a new timetable and job; cron replaces the interval and the other way round
    changed = await client.patch(
        f"/v1/schedules/{s['id']}",
        json={"interval_s": 3600, "job": {"type": "demo.fail", "params": {}}, "overlap": "allow"},
    )
    assert changed.status_code == 200, changed.text
    c = changed.json()
    assert (c["cron"], c["interval_s"], c["overlap"], c["job"]["type"]) == (None, 3600, "allow", "demo.fail")
    assert timedelta(minutes=59) < at(c["next_run_at"]) - at(c["updated_at"]) <= timedelta(hours=1)
    assert (await client.patch(f"/v1/schedules/{s['id']}", json={"name": "other"})).status_code == 409
    assert (await client.patch(f"/v1/schedules/{s['id']}", json={})).json()["name"] == "nightly-report"

    # a cursor list, newest first
    first = (await client.get("/v1/schedules", params={"limit": 1})).json()
    assert [i["id"] for i in first["items"]] == [other["id"]] and first["next_cursor"]
    second = (await client.get("/v1/schedules", params={"limit": 1, "cursor": first["next_cursor"]})).json()
    assert [i["id"] for i in second["items"]] == [s["id"]] and second["next_cursor"] is None

    assert (await client.delete(f"/v1/schedules/{s['id']}")).status_code == 204
    assert (await client.get(f"/v1/schedules/{s['id']}")).status_code == 404
    assert (await client.delete(f"/v1/schedules/{s['id']}")).status_code == 404
    assert (await client.get("/v1/schedules/not-an-id")).status_code == 404


async def test_schedules_are_validated_with_the_field_named(client: httpx.AsyncClient) -> None:
    job = {"type": "demo.sleep", "params": {}}
    cases: list[tuple[dict[str, Any], list[Any]]] = [
        ({"name": "a", "job": job}, ["body", "cron"]),  # neither
        ({"name": "a", "cron": "* * * * *", "interval_s": 5, "job": job}, ["body", "cron"]),  # both
        ({"name": "a", "cron": "61 * * * *", "job": job}, ["body", "cron"]),
        ({"name": "a", "cron": "* * *", "job": job}, ["body", "cron"]),
        ({"name": "a", "cron": "@reboot", "job": job}, ["body", "cron"]),
        ({"name": "a", "cron": "* * * * *", "timezone": "Mars/Olympus", "job": job}, ["body", "timezone"]),
        ({"name": "a", "interval_s": 0.5, "job": job}, ["body", "interval_s"]),
        ({"name": "a", "interval_s": 5, "job": {"type": "nope"}}, ["body", "job", "type"]),
        (
            {"name": "a", "interval_s": 5, "job": {"type": "demo.sleep", "params": {"seconds": "x"}}},
            ["body", "job", "params", "seconds"],
        ),
        ({"name": "a", "interval_s": 5, "job": job, "overlap": "queue"}, ["body", "overlap"]),
        ({"name": " a", "interval_s": 5, "job": job}, ["body", "name"]),
        (
            {"name": "a", "interval_s": 5, "job": {**job, "webhook_url": "ftp://x"}},
            ["body", "job", "webhook_url"],
        ),
    ]
    for payload, loc in cases:
        r = await client.post("/v1/schedules", json=payload)
        assert r.status_code == 422, (payload, r.text)
        assert loc in [e["loc"] for e in r.json()["errors"]], (payload, r.json())
    # an hour apart: no slot fires while the refused changes are tried, so the last read can show
    # that nothing changed
    s = await create(client, interval_s=3600)
    for patch, loc in [
        ({"cron": None}, ["body", "cron"]),
        ({"paused": None}, ["body", "paused"]),
        ({"cron": "nonsense"}, ["body", "cron"]),
        ({"timezone": "Nowhere"}, ["body", "timezone"]),
        ({"job": {"type": "demo.sleep", "params": {"steps": 0}}}, ["body", "job", "params", "steps"]),
    ]:
        r = await client.patch(f"/v1/schedules/{s['id']}", json=patch)
        assert r.status_code == 422, (patch, r.text)
        assert loc in [e["loc"] for e in r.json()["errors"]], (patch, r.json())
    assert (
        await client.post("/v1/schedules", content=b"{", headers={"Content-Type": "application/json"})
    ).status_code == 400
    assert (await client.get(f"/v1/schedules/{s['id']}")).json() == s  # nothing changed


async def test_a_one_second_schedule_fires_each_slot_on_time(
    client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    s = await create(client)

    async def three() -> list[asyncpg.Record] | None:
        rows = await fired(pool, s["id"])
        return rows if len(rows) >= 3 else None

    rows = await eventually(three, timeout=10)
    slots = [r["schedule_slot"] for r in rows]
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(slots)), slots
    assert all(timedelta(0) <= r["created_at"] - r["schedule_slot"] < timedelta(seconds=1) for r in rows)
    listed = (await client.get("/v1/jobs", params={"schedule_id": s["id"]})).json()["items"]
    assert {j["schedule_id"] for j in listed} == {s["id"]} and len(listed) >= 3
    await wait_status(client, str(rows[0]["id"]), "completed")
    now = (await client.get(f"/v1/schedules/{s['id']}")).json()
    assert now["last_job_id"] is not None and now["last_run_at"] is not None
    assert at(now["next_run_at"]) > at(now["last_run_at"])


async def test_trigger_submits_now_even_when_paused(
    client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    s = await create(client, interval_s=3600, paused=True)
    r = await client.post(f"/v1/schedules/{s['id']}/trigger")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["schedule_id"] == s["id"] and r.headers["Location"] == f"/v1/jobs/{job['id']}"
    await wait_status(client, job["id"], "completed")
    after = (await client.get(f"/v1/schedules/{s['id']}")).json()
    assert after["last_job_id"] == job["id"] and after["paused"] and after["next_run_at"] is None
    assert await fired(pool, s["id"]) == []  # a trigger is no slot of the timetable


async def test_pause_stops_the_slots_and_resume_does_not_fire_the_missed_ones(
    client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    s = await create(client)
    await eventually(lambda: _count(pool, s["id"], 1), timeout=10)
    await client.patch(f"/v1/schedules/{s['id']}", json={"paused": True})
    count = len(await fired(pool, s["id"]))
    await asyncio.sleep(2.5)  # slots pass while paused
    assert len(await fired(pool, s["id"])) == count
    resumed = (await client.patch(f"/v1/schedules/{s['id']}", json={"paused": False})).json()
    await eventually(lambda: _count(pool, s["id"], count + 1), timeout=10)
    rows = await fired(pool, s["id"])
    # the first slot after the resume is the first after it was resumed, none of the paused ones
    assert rows[count]["schedule_slot"] >= at(resumed["updated_at"])


async def _count(pool: asyncpg.Pool, schedule_id: str, n: int) -> bool:
    return len(await fired(pool, schedule_id)) >= n


async def test_overlap_skip_waits_for_the_previous_run_and_allow_does_not(
    client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    slow = {"type": "test.block", "params": {"seconds": 2.5}}
    skip = await create(client, job=slow)
    allow = await create(client, job=slow, overlap="allow")
    await eventually(lambda: _count(pool, allow["id"], 4), timeout=15)
    skipped, allowed = await fired(pool, skip["id"]), await fired(pool, allow["id"])
    # allow: one job a second, running side by side; skip: a new one only after the last finished
    running = await pool.fetchval(
        "SELECT count(*) FROM jobs WHERE schedule_id = $1 AND status IN ('pending', 'running')",
        uuid.UUID(allow["id"]),
    )
    assert running >= 2
    assert len(skipped) <= 2 < len(allowed)
    await eventually(lambda: _count(pool, skip["id"], 2), timeout=10)
    first, second = (await fired(pool, skip["id"]))[:2]
    finished = await pool.fetchval("SELECT finished_at FROM jobs WHERE id = $1", first["id"])
    assert finished is not None and second["created_at"] >= finished
    assert second["schedule_slot"] - first["schedule_slot"] >= timedelta(seconds=2)


async def test_a_slot_never_fires_twice_with_two_workers_and_two_apis(
    settings: Settings, registry: Registry, pool: asyncpg.Pool
) -> None:
    # without the unique index: the claim (FOR UPDATE SKIP LOCKED + the advance in the job's
    # transaction) alone must keep four schedulers from firing a slot twice
    await pool.execute("DROP INDEX jobs_schedule_slot_key")
    apis = [Api(settings, registry), Api(settings, registry)]
    workers = [WorkerService(settings), WorkerService(settings)]
    for a in apis:
        await a.start()
    for w in workers:
        await w.start()
    try:
        key = await new_key(settings.database_url, "acme")
        async with httpx.AsyncClient(base_url=apis[0].url, headers={"Authorization": f"Bearer {key}"}) as c:
            s = await create(c)
            every_s = await create(c, cron="* * * * * *", interval_s=None)
            await asyncio.sleep(5.5)
            await c.patch(f"/v1/schedules/{s['id']}", json={"paused": True})
            await c.patch(f"/v1/schedules/{every_s['id']}", json={"paused": True})
    finally:
        for w in workers:
            await w.stop(grace_s=0)
        for a in apis:
            await a.stop()
    for schedule in (s, every_s):
        slots = [r["schedule_slot"] for r in await fired(pool, schedule["id"])]
        assert len(slots) >= 4, slots
        assert len(set(slots)) == len(slots), slots  # none twice
        # and every slot of the window fired: consecutive seconds, no gap
        assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(slots)), slots


async def test_the_unique_slot_index_refuses_a_second_job_for_a_slot(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    s = await create(client, interval_s=3600)
    insert = (
        "INSERT INTO jobs (id, tenant, type, params, priority, max_attempts, schedule_id, schedule_slot)"
        " VALUES ($1, 'acme', 'demo.sleep', '{}', 'normal', 1, $2, '2030-01-01T00:00:00Z')"
    )
    await pool.execute(insert, uuid.uuid4(), uuid.UUID(s["id"]))
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(insert, uuid.uuid4(), uuid.UUID(s["id"]))


async def test_another_tenants_schedules_are_not_listed(make_client: ClientFactory) -> None:
    acme, globex = await make_client("acme"), await make_client("globex")
    mine = await create(acme)
    assert (await globex.get("/v1/schedules")).json()["items"] == []
    # the same name in another tenant is another schedule
    assert (await globex.post("/v1/schedules", json={**body(), "name": mine["name"]})).status_code == 201
    admin = await make_client("ops", admin=True)
    assert len((await admin.get("/v1/schedules")).json()["items"]) == 2


@pytest.mark.slow
async def test_slots_missed_while_every_process_was_down_fire_once_on_recovery(
    settings: Settings, registry: Registry, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    api = Api(settings, registry)
    await api.start()
    try:
        key = await new_key(settings.database_url, "acme")
        async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}) as c:
            s = await create(c)
    finally:
        await api.stop()  # from here on only the worker processes schedule
    procs = [WorkerProcess(settings, tmp_path, f"worker{i}") for i in range(2)]
    try:
        await eventually(lambda: _count(pool, s["id"], 2), timeout=30, what="the workers to fire slots")
        for p in procs:
            p.signal(signal.SIGKILL)
        for p in procs:
            p.wait(10)
        before = await fired(pool, s["id"])
        await asyncio.sleep(4)  # the outage: slots pass with no process of jobwire running
        procs += [WorkerProcess(settings, tmp_path, f"worker{i}") for i in (2, 3)]
        await eventually(lambda: _count(pool, s["id"], len(before) + 3), timeout=30, what="slots after it")
    finally:
        for p in procs:
            p.stop()
    rows = await fired(pool, s["id"])
    slots = [r["schedule_slot"] for r in rows]
    assert len(set(slots)) == len(slots), slots
    recovered = rows[len(before)]
    # the slots missed fired once, together: as the latest of them that was due, not one by one
    assert recovered["schedule_slot"] - before[-1]["schedule_slot"] >= timedelta(seconds=4), slots
    assert recovered["created_at"] - recovered["schedule_slot"] < timedelta(seconds=1)
    after = slots[len(before) :]
    # then on the timetable again, one slot a second; a scheduler that runs a second late on a busy
    # machine fires the latest due slot (skipping one), never two at once nor off the grid
    assert all(b - a in (timedelta(seconds=1), timedelta(seconds=2)) for a, b in itertools.pairwise(after)), (
        after
    )
