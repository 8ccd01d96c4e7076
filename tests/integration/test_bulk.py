"""POST /v1/jobs/bulk: cancel or retry by filter, dry run, the empty-filter rule, tenant scope and the
admin rule, and a large cancel under concurrent submissions."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from jobwire import jobstore
from jobwire.ids import new_id
from service import bulk
from tests.conftest import ClientFactory, events_of, eventually, submit, wait_status
from workers.worker import WorkerService


async def _bulk(client: httpx.AsyncClient, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    r = await client.post("/v1/jobs/bulk", json=body)
    assert r.status_code == status, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def _status(client: httpx.AsyncClient, job: dict[str, Any]) -> str:
    status: str = (await client.get(f"/v1/jobs/{job['id']}")).json()["status"]
    return status


async def test_dry_run_counts_and_changes_nothing(client: httpx.AsyncClient) -> None:
    jobs = [await submit(client, "demo.sleep", {"seconds": 1}, labels={"run": "a"}) for _ in range(3)]
    await submit(client, "demo.sleep", {"seconds": 1}, labels={"run": "b"})
    answer = await _bulk(client, {"action": "cancel", "filter": {"label": {"run": "a"}}, "dry_run": True})
    assert answer == {"matched": 3, "changed": 3}
    # nothing to retry among pending jobs
    answer = await _bulk(client, {"action": "retry", "filter": {"label": {"run": "a"}}, "dry_run": True})
    assert answer == {"matched": 3, "changed": 0}
    assert [await _status(client, j) for j in jobs] == ["pending"] * 3


async def test_bulk_cancel_acts_like_the_single_cancel(
    client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    done = await submit(client, "demo.sleep", {"seconds": 0}, labels={"run": "a"})
    await wait_status(client, done["id"], "completed")
    running = await submit(client, "test.block", {"seconds": 30}, labels={"run": "a"})
    await wait_status(client, running["id"], "running")
    later = await submit(client, "demo.sleep", {"seconds": 1}, labels={"run": "a"}, delay_s=3600)
    other = await submit(client, "demo.sleep", {"seconds": 1}, labels={"run": "b"}, delay_s=3600)

    answer = await _bulk(client, {"action": "cancel", "filter": {"label": {"run": "a"}}})
    assert answer == {"matched": 3, "changed": 2}
    assert await _status(client, later) == "cancelled"
    # the running one is interrupted by its worker, as POST /v1/jobs/{id}/cancel does
    await wait_status(client, running["id"], "cancelled")
    assert await _status(client, done) == "completed"
    assert await _status(client, other) == "scheduled"
    events = [e["type"] for e in await events_of(pool, later["id"])]
    assert events == ["created", "cancelled"]
    # again: nothing left to change
    assert await _bulk(client, {"action": "cancel", "filter": {"label": {"run": "a"}}}) == {
        "matched": 3,
        "changed": 0,
    }


async def test_status_and_type_narrow_the_action(client: httpx.AsyncClient) -> None:
    sched = await submit(client, "demo.sleep", {"seconds": 1}, delay_s=3600)
    pend = await submit(client, "demo.sleep", {"seconds": 1})
    fail = await submit(client, "demo.fail", {})
    answer = await _bulk(client, {"action": "cancel", "filter": {"status": ["scheduled"]}})
    assert answer == {"matched": 1, "changed": 1}
    answer = await _bulk(client, {"action": "cancel", "filter": {"type": "demo.fail"}})
    assert answer == {"matched": 1, "changed": 1}
    assert [await _status(client, j) for j in (sched, pend, fail)] == ["cancelled", "pending", "cancelled"]
    cutoff = datetime.now(UTC).isoformat()
    await submit(client, "demo.sleep", {"seconds": 1})
    answer = await _bulk(client, {"action": "cancel", "filter": {"created_before": cutoff}, "dry_run": True})
    assert answer == {"matched": 3, "changed": 1}


async def test_bulk_retry_runs_failed_jobs_again(
    client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    failed = [await submit(client, "demo.fail", {}, labels={"run": "r"}) for _ in range(3)]
    ok = await submit(client, "demo.sleep", {"seconds": 0}, labels={"run": "r"})
    for job in failed:
        await wait_status(client, job["id"], "failed")
    await wait_status(client, ok["id"], "completed")

    answer = await _bulk(client, {"action": "retry", "filter": {"label": {"run": "r"}, "status": ["failed"]}})
    assert answer == {"matched": 3, "changed": 3}

    async def ran_twice() -> bool:
        for job in failed:
            types = [e["type"] for e in await events_of(pool, job["id"])]
            if types.count("started") < 2 or types[-1] != "failed":
                return False
        return True

    await eventually(ran_twice, timeout=20, what="every retried job to run and fail again")
    types = [e["type"] for e in await events_of(pool, failed[0]["id"])]
    assert types == ["created", "started", "failed", "retrying", "started", "failed"]
    assert await _status(client, ok) == "completed"


async def test_an_empty_filter_needs_all(make_client: ClientFactory) -> None:
    acme, globex = await make_client("acme"), await make_client("globex")
    mine = [await submit(acme, "demo.sleep", {"seconds": 1}) for _ in range(2)]
    theirs = await submit(globex, "demo.sleep", {"seconds": 1})
    for body in ({"action": "cancel"}, {"action": "cancel", "filter": {}}, {"action": "retry", "all": False}):
        r = await acme.post("/v1/jobs/bulk", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == ["body", "filter"]
    assert await _bulk(acme, {"action": "cancel", "all": True}) == {"matched": 2, "changed": 2}
    assert [await _status(acme, j) for j in mine] == ["cancelled", "cancelled"]
    assert await _status(globex, theirs) == "pending"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"action": "delete", "all": True}, ["body", "action"]),
        ({"action": "cancel", "filter": {"status": ["gone"]}}, ["body", "filter", "status", 0]),
        (
            {"action": "cancel", "filter": {"label": {"Bad": "x"}}},
            ["body", "filter", "label", "Bad", "[key]"],
        ),
        ({"action": "cancel", "filter": {"batch_id": "nope"}}, ["body", "filter", "batch_id"]),
        (
            {"action": "cancel", "filter": {"created_before": "2026-01-01T00:00:00"}},
            ["body", "filter", "created_before"],
        ),
        ({"action": "cancel", "filter": {"colour": "red"}}, ["body", "filter", "colour"]),
        ({"action": "cancel", "filter": {"type": "x"}, "dry_run": "maybe"}, ["body", "dry_run"]),
    ],
)
async def test_bad_bodies_are_a_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], loc: list[object]
) -> None:
    r = await client.post("/v1/jobs/bulk", json=body)
    assert r.status_code == 422, r.text
    assert loc in [e["loc"] for e in r.json()["errors"]]


async def test_tenant_scope_and_the_admin_rule(make_client: ClientFactory) -> None:
    acme, globex = await make_client("acme"), await make_client("globex")
    admin = await make_client("ops", admin=True)
    mine = await submit(acme, "demo.sleep", {"seconds": 1}, labels={"customer": "x"})
    theirs = await submit(globex, "demo.sleep", {"seconds": 1}, labels={"customer": "x"})
    by_label = {"label": {"customer": "x"}}

    # a tenant key acts on its own jobs only, and may not name another tenant
    r = await acme.post(
        "/v1/jobs/bulk", json={"action": "cancel", "filter": {**by_label, "tenant": "globex"}}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "filter", "tenant"]
    own = {"action": "cancel", "filter": {**by_label, "tenant": "acme"}, "dry_run": True}
    assert await _bulk(acme, own) == {"matched": 1, "changed": 1}
    # an admin key must name the tenant it acts on
    r = await admin.post("/v1/jobs/bulk", json={"action": "cancel", "filter": by_label})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "filter", "tenant"]
    r = await admin.post("/v1/jobs/bulk", json={"action": "cancel", "all": True})
    assert r.status_code == 422
    answer = await _bulk(admin, {"action": "cancel", "filter": {**by_label, "tenant": "globex"}})
    assert answer == {"matched": 1, "changed": 1}
    assert await _status(globex, theirs) == "cancelled"
    assert await _status(acme, mine) == "pending"
    # another tenant's batch or schedule id matches nothing
    r = await globex.post(
        "/v1/jobs/bulk", json={"action": "cancel", "filter": {"schedule_id": str(uuid.uuid4())}}
    )
    assert r.json() == {"matched": 0, "changed": 0}


async def test_a_large_cancel_under_concurrent_submissions_touches_exactly_the_matching_jobs(
    client: httpx.AsyncClient, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs that matched when the action started are cancelled, every one; the jobs submitted while
    it runs that do not match are untouched, and so are the matching ones submitted after it
    answered; submissions keep being answered while it runs."""
    monkeypatch.setattr(bulk, "CHUNK", 200)  # many chunks, many chances to interleave
    tenant = await pool.fetchval("SELECT tenant FROM api_keys LIMIT 1")
    before = [
        jobstore.NewJob(
            id=new_id(),
            tenant=tenant,
            type="demo.sleep",
            params={"seconds": 1},
            priority="normal",
            max_attempts=1,
            webhook_url=None,
            labels={"wave": "one", "n": str(i % 7)},
        )
        for i in range(3000)
    ]
    async with pool.acquire() as conn:
        await jobstore.insert_jobs(conn, before)

    done = asyncio.Event()
    latencies: list[float] = []
    during: list[tuple[str, str]] = []  # (id, wave) of jobs submitted while the action ran

    async def submitter(wave: str) -> None:
        while not done.is_set():
            t0 = time.monotonic()
            job = await submit(client, "demo.sleep", {"seconds": 1}, labels={"wave": wave})
            latencies.append(time.monotonic() - t0)
            during.append((job["id"], wave))

    tasks = [asyncio.create_task(submitter(w)) for w in ("one", "two", "one", "two")]
    await asyncio.sleep(0.05)
    try:
        answer = await _bulk(client, {"action": "cancel", "filter": {"label": {"wave": "one"}}})
    finally:
        done.set()
        await asyncio.gather(*tasks)
    after = await submit(client, "demo.sleep", {"seconds": 1}, labels={"wave": "one"})

    rows = await pool.fetch("SELECT id, status, labels FROM jobs")
    status = {str(r["id"]): r["status"] for r in rows}
    assert all(status[str(j.id)] == "cancelled" for j in before)
    assert all(status[i] == "pending" for i, wave in during if wave == "two")
    assert status[after["id"]] == "pending"
    cancelled = [i for i, s in status.items() if s == "cancelled"]
    assert answer["changed"] == answer["matched"] == len(cancelled)
    assert len(cancelled) >= len(before)
    # submissions were answered while the action ran, none held up behind it
    assert len(during) > 0
    assert max(latencies) < 2.0, max(latencies)
