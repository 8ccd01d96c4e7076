"""Retention: finished jobs past their retention are purged with everything that belongs to them,
then the settled batches past theirs that no job is left in, and nothing else is (API.md
"Lifetime: retention")."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import BaseModel

from jobwire import batchstore, db, jobstore
from jobwire.config import Settings
from jobwire.context import JobContext
from jobwire.keys import Keys
from jobwire.registry import Registry, job_type
from jobwire.retention import RetentionPolicy
from tests.conftest import (
    QUICK_WEBHOOKS,
    ROOT,
    ClientFactory,
    db_url,
    drop_database,
    eventually,
    make_settings,
    submit,
    wait_status,
)
from tests.integration.test_cli import env_for, run
from tests.integration.test_isolation import PARAM, v1_routes
from tests.receiver import Receiver
from workers.dispatcher import Dispatcher
from workers.purger import Purger
from workers.worker import WorkerService

DAY_S = 24 * 3600
# the schema.sql of the last commit before retention existed: `migrate` must upgrade it
SCHEMA_BEFORE = ROOT / "tests" / "data" / "schema_ea5efd1.sql"


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(
        database,
        namespace,
        **QUICK_WEBHOOKS,
        retention_completed_s=60,
        retention_failed_s=600,
        # the workers' own loop stays out of the way: these tests run their passes themselves
        purge_interval_s=3600,
        # and the settle loops too: the batch tests settle their batches themselves, so the notes
        # of their jobs' ends stay in batch_checks for the purge to take with the batch
        batch_settle_s=3600,
    )


def purger_for(settings: Settings, policy: RetentionPolicy | None = None) -> Purger:
    return Purger(
        settings,
        policy or RetentionPolicy(settings.retention_completed_s, settings.retention_failed_s),
        None,
        Keys(settings.namespace),
    )


async def backdate(pool: asyncpg.Pool, job_ids: Sequence[str], seconds: float) -> None:
    """Move finished jobs' finished_at into the past, as if they had finished that long ago."""
    await pool.execute(
        "UPDATE jobs SET finished_at = finished_at - make_interval(secs => $2) WHERE id = ANY($1::uuid[])",
        [uuid.UUID(j) for j in job_ids],
        seconds,
    )


async def present(pool: asyncpg.Pool, job_ids: Sequence[str]) -> set[str]:
    rows = await pool.fetch("SELECT id FROM jobs WHERE id = ANY($1::uuid[])", [uuid.UUID(j) for j in job_ids])
    return {str(r["id"]) for r in rows}


# ---- what belongs to a job, read from the catalog -------------------------------------------------


async def owned_rows(conn: asyncpg.Pool, job_id: str) -> dict[str, set[str]]:
    """Every row that belongs to the job, by table, found from PostgreSQL's catalog rather than a
    list: the tables whose foreign keys reach `jobs` (directly or through each other), and the
    tables with a `job_id` column but no foreign key (idempotency_keys). Each row as its text."""
    fks = await conn.fetch(
        "SELECT c.conrelid::regclass::text AS child, a.attname AS child_col,"
        " c.confrelid::regclass::text AS parent, pa.attname AS parent_col"
        " FROM pg_constraint c"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
        " JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = c.confkey[1]"
        " WHERE c.contype = 'f' AND cardinality(c.conkey) = 1"
    )
    loose = await conn.fetch(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND column_name = 'job_id' AND table_name NOT IN"
        " (SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f'"
        "  AND confrelid = 'jobs'::regclass)"
    )
    links = [(r["child"], r["child_col"], r["parent"], r["parent_col"]) for r in fks]
    links += [(r["table_name"], "job_id", "jobs", "id") for r in loose]
    rows: dict[str, list[dict[str, Any]]] = {
        "jobs": [dict(r) for r in await conn.fetch("SELECT * FROM jobs WHERE id = $1", uuid.UUID(job_id))]
    }
    frontier = ["jobs"]
    while frontier:
        parent_table = frontier.pop()
        for child, child_col, parent, parent_col in links:
            if parent != parent_table or child == parent:
                continue
            keys = [str(r[parent_col]) for r in rows[parent_table]]
            found = await conn.fetch(
                f'SELECT * FROM "{child}" WHERE "{child_col}"::text = ANY($1::text[])', keys
            )
            known = rows.setdefault(child, [])
            known += [dict(r) for r in found if dict(r) not in known]
            frontier.append(child)
    return {table: {repr(sorted(r.items())) for r in found} for table, found in rows.items()}


async def still_there(conn: asyncpg.Pool, owned: dict[str, set[str]]) -> dict[str, int]:
    """How many of the rows found before are still in their tables, by table."""
    left: dict[str, int] = {}
    for table in owned:
        now = {repr(sorted(dict(r).items())) for r in await conn.fetch(f'SELECT * FROM "{table}"')}
        left[table] = len(owned[table] & now)
    return left


# ---- the worker's own loop ----------------------------------------------------------------------


async def test_a_completed_job_past_its_retention_is_gone_everywhere(
    database: str, namespace: str, make_client: ClientFactory, receiver: Receiver
) -> None:
    quick = make_settings(
        database, namespace, **QUICK_WEBHOOKS, retention_completed_s=4, purge_interval_s=0.3
    )
    client = await make_client("acme")
    pool = await db.create_pool(database, max_size=2)
    worker, dispatcher = WorkerService(quick), Dispatcher(quick)
    await worker.start()
    await dispatcher.start()
    try:
        endpoint = (await client.post("/v1/webhooks", json={"url": receiver.url + "/ep"})).json()
        body = {"type": "test.say", "params": {"text": "hi"}, "webhook_url": receiver.url + "/own"}
        r = await client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
        assert r.status_code == 202, r.text
        job = r.json()
        await wait_status(client, job["id"], "completed")

        async def delivered() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = (await client.get(f"/v1/jobs/{job['id']}/deliveries")).json()[
                "items"
            ]
            return items if items and all(d["status"] == "delivered" for d in items) else None

        deliveries = await eventually(delivered, timeout=3, what="every delivery delivered")
        owned = await owned_rows(pool, job["id"])
        # everything the job wrote is there (so the check below can fail)
        for table in ("jobs", "job_events", "deliveries", "delivery_attempts", "idempotency_keys"):
            assert owned.get(table), (table, owned)

        async def gone() -> bool:
            return (await client.get(f"/v1/jobs/{job['id']}")).status_code == 404

        await eventually(gone, timeout=15, what="the job to be purged by the worker's loop")
        assert await still_there(pool, owned) == dict.fromkeys(owned, 0)

        # every route that names it answers 404, as for an id that never existed
        ids = {"job_id": job["id"], "delivery_id": deliveries[0]["id"], "endpoint_id": endpoint["id"]}
        checked = 0
        for method, template in v1_routes():
            names = set(PARAM.findall(template))
            if not names & {"job_id", "delivery_id"} and template != "/v1/events":
                continue
            path = PARAM.sub(lambda m: ids[m.group(1)], template)
            if template == "/v1/events":
                path += f"?jobs={job['id']}"
            sent: dict[str, object] | None = {} if method == "POST" else None
            if method == "PATCH":  # a body the route would accept for a job that exists
                sent = {"delay_s": 60}
            r = await client.request(method, path, json=sent)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            checked += 1
        assert checked >= 7
        listed = (await client.get(f"/v1/webhooks/{endpoint['id']}/deliveries")).json()["items"]
        assert not [d for d in listed if d["job_id"] == job["id"]]
        # its idempotency key went with it: the same request makes a new job
        again = await client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
        assert again.status_code == 202 and again.json()["id"] != job["id"]
        assert "Idempotent-Replayed" not in again.headers

        # the purge is counted on the api's /metrics (from Redis), with the tables' sizes
        metrics = (await client.get("/metrics")).text
        purged = re.search(r'^jobwire_purged_rows_total\{table="job_events"\} (\S+)$', metrics, re.M)
        assert purged and float(purged.group(1)) >= 3, metrics
        assert re.search(r'^jobwire_table_bytes\{table="jobs"\} [1-9]', metrics, re.M)
        assert re.search(r"^jobwire_database_bytes [1-9]", metrics, re.M)
    finally:
        await dispatcher.stop()
        await worker.stop(grace_s=0)
        await pool.close()


# ---- one pass at a time, on jobs that finished long ago ---------------------------------------------


async def test_each_outcome_lives_to_its_own_retention_and_unfinished_jobs_never_go(
    settings: Settings, client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    completed = [(await submit(client, "test.say", {"text": str(i)}))["id"] for i in range(2)]
    failed = [(await submit(client, "test.say", {"text": "Boom", "fail": True}))["id"] for _ in range(2)]
    running = (await submit(client, "test.block", {"seconds": 30}))["id"]
    cancelled = (await submit(client, "test.block", {"seconds": 30}, priority="high"))["id"]
    for job_id in [*completed, *failed]:
        await wait_status(client, job_id, {"completed", "failed"})
    await wait_status(client, running, "running")
    await wait_status(client, cancelled, "running")
    assert (await client.post(f"/v1/jobs/{cancelled}/cancel")).status_code in (200, 202)
    await wait_status(client, cancelled, "cancelled")

    # completed: kept 60 s; failed and cancelled: 600 s
    await backdate(pool, [completed[0], failed[0]], 120)
    await backdate(pool, [completed[1], failed[1], cancelled], 700)
    # a running job is never purged, however old and whatever its row says
    await pool.execute(
        "UPDATE jobs SET created_at = now() - interval '1 year', started_at = now() - interval '1 year',"
        " finished_at = now() - interval '1 year' WHERE id = $1",
        uuid.UUID(running),
    )
    # an idempotency key past its 24 h expires, and its job (still running) stays
    await pool.execute(
        "INSERT INTO idempotency_keys (tenant, key, request_hash, job_id, status_code, created_at)"
        " VALUES ('acme', 'old', '\\x00', $1, 202, now() - interval '25 hours')",
        uuid.UUID(running),
    )

    report = await purger_for(settings).pass_once()
    everything = [*completed, *failed, running, cancelled]
    assert await present(pool, everything) == {failed[0], running}
    assert report.jobs == 4 and report.expired_keys == 1
    assert report.rows["job_events"] >= 4 * 3
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys") == 0
    assert (await client.get(f"/v1/jobs/{running}")).json()["status"] == "running"
    # a second pass finds nothing more
    again = await purger_for(settings).pass_once()
    assert again.jobs == 0 and await present(pool, everything) == {failed[0], running}


async def test_a_job_that_owes_a_delivery_is_kept_until_it_ends(
    settings: Settings,
    client: httpx.AsyncClient,
    worker: WorkerService,
    pool: asyncpg.Pool,
    receiver: Receiver,
) -> None:
    job = await submit(client, "test.say", {"text": "hi"}, webhook_url=receiver.url + "/own")
    await wait_status(client, job["id"], "completed")
    await backdate(pool, [job["id"]], DAY_S)
    # no dispatcher yet: its delivery is pending
    assert (await purger_for(settings).pass_once()).jobs == 0
    assert await present(pool, [job["id"]]) == {job["id"]}

    dispatcher = Dispatcher(settings)
    await dispatcher.start()
    try:

        async def ended() -> bool:
            status = await pool.fetchval("SELECT status FROM deliveries WHERE job_id = $1", job["id"])
            return bool(status == "delivered")

        await eventually(ended, timeout=10, what="the delivery to be delivered")
    finally:
        await dispatcher.stop()
    assert (await purger_for(settings).pass_once()).jobs == 1
    assert not await present(pool, [job["id"]])


class _Empty(BaseModel):
    pass


async def test_a_job_type_sets_its_own_retention(
    settings: Settings, client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    registry = Registry()

    @job_type("test.say", retention_s=DAY_S, failed_retention_s=10, registry=registry)
    async def say(ctx: JobContext, params: _Empty) -> None:  # the retention is all that is read
        """A job type that keeps its completed jobs a day and its failed ones ten seconds."""

    policy = RetentionPolicy.from_settings(settings, registry)
    kept = (await submit(client, "test.say", {"text": "keep"}))["id"]
    failed = (await submit(client, "test.say", {"text": "Boom", "fail": True}))["id"]
    other = (await submit(client, "demo.sleep", {"seconds": 0}))["id"]
    for job_id in (kept, failed, other):
        await wait_status(client, job_id, {"completed", "failed"})
    await backdate(pool, [kept, other], 3600)  # past the default 60 s, within test.say's day
    await backdate(pool, [failed], 60)  # within the default 600 s, past test.say's 10 s
    report = await purger_for(settings, policy).pass_once()
    assert report.jobs == 2
    assert await present(pool, [kept, failed, other]) == {kept}


# ---- concurrency ----------------------------------------------------------------------------------


async def finished_copies(pool: asyncpg.Pool, job_id: str, n: int) -> None:
    """`n` copies of a finished job (its row and events), finished a day ago."""
    await pool.execute(
        """
        WITH copies AS (SELECT gen_random_uuid() AS id FROM generate_series(1, $2)),
        j AS (
            INSERT INTO jobs SELECT (jsonb_populate_record(NULL::jobs, to_jsonb(s)
                || jsonb_build_object('id', c.id, 'finished_at', now() - interval '1 day'))).*
            FROM jobs s, copies c WHERE s.id = $1 RETURNING id
        )
        INSERT INTO job_events SELECT (jsonb_populate_record(NULL::job_events,
            to_jsonb(e) || jsonb_build_object('job_id', j.id))).*
        FROM job_events e, j WHERE e.job_id = $1""",
        uuid.UUID(job_id),
        n,
    )


async def a_job_and_copies(client: httpx.AsyncClient, pool: asyncpg.Pool, n: int) -> str:
    """A job run to completion now, and `n` copies of it that finished a day ago; its id."""
    job = await submit(client, "test.say", {"text": "x"})
    await wait_status(client, job["id"], "completed")
    await finished_copies(pool, job["id"], n)
    return str(job["id"])


async def test_two_purges_at_once_remove_each_row_once(
    settings: Settings, client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    job_id = await a_job_and_copies(client, pool, 600)
    events = await pool.fetchval("SELECT count(*) FROM job_events")
    rules = RetentionPolicy(60, 600).rules([("completed", "test.say")])

    # the statement itself, with no lock around it: two connections in small batches
    async def drain(results: list[dict[str, int]]) -> None:
        async with pool.acquire() as conn:
            while (rows := await jobstore.purge_batch(conn, rules, limit=25))["jobs"]:
                results.append(rows)

    first: list[dict[str, int]] = []
    second: list[dict[str, int]] = []
    await asyncio.gather(drain(first), drain(second))
    assert first and second  # both did some of the work
    total = sum(r["jobs"] for r in first + second)
    assert total == 600 and await pool.fetchval("SELECT count(*) FROM jobs") == 1
    assert (
        sum(r["job_events"] for r in first + second) + await pool.fetchval("SELECT count(*) FROM job_events")
        == events
    )

    # and the command, twice at once, as two operators would: one pass runs after the other
    await finished_copies(pool, job_id, 300)
    env = env_for(settings.database_url, settings.namespace, JOBWIRE_RETENTION_COMPLETED_S="60")
    outs = await asyncio.gather(*(asyncio.to_thread(run, ["purge"], env) for _ in range(2)))
    counts = []
    for out in outs:
        assert out.returncode == 0, out.stderr
        found = re.match(r"purged (\d+) jobs", out.stdout)
        assert found, out.stdout
        counts.append(int(found.group(1)))
    assert sorted(counts) == [0, 300]


async def test_a_dry_run_changes_nothing(
    settings: Settings, client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    await a_job_and_copies(client, pool, 5)
    before = await pool.fetchval("SELECT count(*) FROM job_events")
    events = 5 * before // 6  # the copies' (the job itself finished now: not due)
    env = env_for(settings.database_url, settings.namespace, JOBWIRE_RETENTION_COMPLETED_S="60")
    out = await asyncio.to_thread(run, ["purge", "--dry-run"], env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"would purge 5 jobs, 0 batches ({events} job_events,"), out.stdout
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 6
    assert await pool.fetchval("SELECT count(*) FROM job_events") == before
    out = await asyncio.to_thread(run, ["purge"], env)
    assert out.stdout.startswith(f"purged 5 jobs, 0 batches ({events} job_events,"), out.stdout
    assert "vacuumed jobs, job_events" in out.stdout


# ---- batches ---------------------------------------------------------------------------------------


async def submit_batch(
    client: httpx.AsyncClient, jobs: list[dict[str, Any]], **extra: Any
) -> tuple[str, list[str]]:
    """A batch of `jobs`, submitted (the settle loops are off here: `settle` settles it); its id
    and its jobs' ids."""
    headers = extra.pop("headers", {})
    r = await client.post("/v1/batches", json={"jobs": jobs, **extra}, headers=headers)
    assert r.status_code == 202, r.text
    batch_id = str(r.json()["id"])
    listed = (await client.get("/v1/jobs", params={"batch_id": batch_id})).json()["items"]
    assert len(listed) == len(jobs)
    return batch_id, [str(j["id"]) for j in listed]


async def settle(pool: asyncpg.Pool, *batch_ids: str) -> None:
    """What the settle loop does once every job of these batches has ended."""
    async with pool.acquire() as conn, conn.transaction():
        settled = await batchstore.settle(conn, [uuid.UUID(b) for b in batch_ids])
    assert len(settled) == len(batch_ids)


async def backdate_batches(pool: asyncpg.Pool, batch_ids: Sequence[str], seconds: float) -> None:
    """Move settled batches' settled_at (and finished_at) into the past."""
    await pool.execute(
        "UPDATE batches SET settled_at = settled_at - make_interval(secs => $2),"
        " finished_at = finished_at - make_interval(secs => $2) WHERE id = ANY($1::uuid[])",
        [uuid.UUID(b) for b in batch_ids],
        seconds,
    )


async def batches_present(pool: asyncpg.Pool, batch_ids: Sequence[str]) -> set[str]:
    rows = await pool.fetch(
        "SELECT id FROM batches WHERE id = ANY($1::uuid[])", [uuid.UUID(b) for b in batch_ids]
    )
    return {str(r["id"]) for r in rows}


def deleted(report_rows: dict[str, int]) -> dict[str, int]:
    return {table: n for table, n in report_rows.items() if n}


SAY: dict[str, Any] = {"type": "test.say", "params": {"text": "hi"}}
FAIL: dict[str, Any] = {"type": "test.say", "params": {"text": "Boom", "fail": True}}


async def test_a_settled_batch_goes_after_its_jobs_with_its_deliveries(
    settings: Settings,
    client: httpx.AsyncClient,
    worker: WorkerService,
    pool: asyncpg.Pool,
    receiver: Receiver,
) -> None:
    hook = receiver.url + "/batch"
    batch_id, job_ids = await submit_batch(
        client, [SAY, SAY], webhook_url=hook, headers={"Idempotency-Key": "b-1"}
    )
    for job_id in job_ids:
        await wait_status(client, job_id, "completed")
    await settle(pool, batch_id)
    dispatcher = Dispatcher(settings)
    await dispatcher.start()
    try:

        async def delivered() -> bool:
            status = await pool.fetchval(
                "SELECT status FROM deliveries WHERE batch_id = $1", uuid.UUID(batch_id)
            )
            return bool(status == "delivered")

        await eventually(delivered, timeout=10, what="the batch webhook to be delivered")
    finally:
        await dispatcher.stop()
    bid = uuid.UUID(batch_id)
    owned = {
        "batch_checks": await pool.fetchval("SELECT count(*) FROM batch_checks WHERE batch_id = $1", bid),
        "deliveries": await pool.fetchval("SELECT count(*) FROM deliveries WHERE batch_id = $1", bid),
        "delivery_attempts": await pool.fetchval(
            "SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON a.delivery_id = d.id"
            " WHERE d.batch_id = $1",
            bid,
        ),
        "idempotency_keys": await pool.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE job_id = $1", bid
        ),
    }
    # one note per job's end (the settle loop did not take them), one webhook with its attempt, the key
    assert owned == {"batch_checks": 2, "deliveries": 1, "delivery_attempts": 1, "idempotency_keys": 1}

    # its jobs past their 60 s go; the batch, settled just now, stays
    await backdate(pool, job_ids, 120)
    report = await purger_for(settings).pass_once()
    assert report.jobs == 2 and report.batches == 0
    assert (await client.get(f"/v1/batches/{batch_id}")).json()["counts"]["completed"] == 2

    # settled past a completed batch's retention (a completed job's: 60 s), and no job left: it goes
    await backdate_batches(pool, [batch_id], 120)
    report = await purger_for(settings).pass_once()
    assert deleted(report.rows) == {"batches": 1, **owned}
    assert {"batches", "batch_checks", "deliveries", "delivery_attempts"} <= set(report.vacuumed)
    assert not await batches_present(pool, [batch_id])
    for table in ("batch_checks", "deliveries", "idempotency_keys"):
        column = "job_id" if table == "idempotency_keys" else "batch_id"
        assert await pool.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", bid) == 0
    assert await pool.fetchval("SELECT count(*) FROM delivery_attempts") == 0

    # every route that names it answers 404, as for a purged job
    checked = 0
    for method, template in v1_routes():
        if "batch_id" not in PARAM.findall(template):
            continue
        r = await client.request(method, PARAM.sub(batch_id, template), json={} if method == "POST" else None)
        assert r.status_code == 404, (method, template, r.status_code, r.text)
        checked += 1
    assert checked >= 3
    assert (await client.get("/v1/batches")).json()["items"] == []
    # its idempotency key went with it: the same request makes a new batch
    body = {"jobs": [SAY, SAY], "webhook_url": hook}
    again = await client.post("/v1/batches", json=body, headers={"Idempotency-Key": "b-1"})
    assert again.status_code == 202 and again.json()["id"] != batch_id
    assert "Idempotent-Replayed" not in again.headers


async def test_a_batch_stays_while_any_of_its_jobs_does(
    settings: Settings, client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    batch_id, job_ids = await submit_batch(client, [SAY, FAIL])
    ended = {j: (await wait_status(client, j, {"completed", "failed"}))["status"] for j in job_ids}
    done, failed = sorted(job_ids, key=lambda j: ended[j] != "completed")
    assert ended == {done: "completed", failed: "failed"}
    await settle(pool, batch_id)
    # both jobs and the batch 120 s old: past the completed job's 60 s and the batch's, within the
    # failed job's 600 s. The failed job keeps the batch.
    await backdate(pool, job_ids, 120)
    await backdate_batches(pool, [batch_id], 120)
    report = await purger_for(settings).pass_once()
    assert report.jobs == 1 and report.batches == 0
    assert await present(pool, job_ids) == {failed}
    r = await client.get(f"/v1/batches/{batch_id}")
    assert r.status_code == 200 and r.json()["status"] == "completed"
    # once the failed job goes, the batch goes in the same pass
    await backdate(pool, [failed], 600)
    report = await purger_for(settings).pass_once()
    assert report.jobs == 1 and report.batches == 1
    assert (await client.get(f"/v1/batches/{batch_id}")).status_code == 404


async def test_an_unsettled_batch_is_never_purged(
    settings: Settings, client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    # cancelled while its job runs: `cancelled`, but not settled (the settle loops are off)
    cancelled, (blocked,) = await submit_batch(client, [{"type": "test.block", "params": {"seconds": 30}}])
    await wait_status(client, blocked, "running")
    assert (await client.post(f"/v1/batches/{cancelled}/cancel")).status_code == 200
    await wait_status(client, blocked, "cancelled")
    # running: its job ended, and it was never settled
    running, (said,) = await submit_batch(client, [SAY])
    await wait_status(client, said, "completed")
    # the jobs long past their retention, the batches a year old
    await backdate(pool, [blocked, said], DAY_S)
    await pool.execute(
        "UPDATE batches SET created_at = now() - interval '1 year', updated_at = now() - interval '1 year'"
    )
    report = await purger_for(settings).pass_once()
    assert report.jobs == 2 and report.batches == 0
    assert await batches_present(pool, [cancelled, running]) == {cancelled, running}
    statuses = await pool.fetch("SELECT status, settled_at FROM batches ORDER BY status")
    assert [(r["status"], r["settled_at"]) for r in statuses] == [("cancelled", None), ("running", None)]
    # settled now: a cancelled batch is kept as long as a cancelled job (600 s), not 60 s
    await settle(pool, cancelled)
    await backdate_batches(pool, [cancelled], 120)
    assert (await purger_for(settings).pass_once()).batches == 0
    await backdate_batches(pool, [cancelled], 600)
    report = await purger_for(settings).pass_once()
    assert report.batches == 1
    assert await batches_present(pool, [cancelled, running]) == {running}


async def test_a_dry_run_counts_batches_and_deletes_nothing(
    settings: Settings, client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    due, due_jobs = await submit_batch(client, [SAY, SAY])
    kept, kept_jobs = await submit_batch(client, [SAY])
    for job_id in [*due_jobs, *kept_jobs]:
        await wait_status(client, job_id, "completed")
    await settle(pool, due, kept)
    # both batches past their retention; the jobs of `due` too, `kept`'s job not: `due` goes in
    # the same pass as its jobs (the dry run counts it though its jobs are still there), `kept` stays
    await backdate(pool, due_jobs, 120)
    await backdate_batches(pool, [due, kept], 120)
    env = env_for(
        settings.database_url,
        settings.namespace,
        JOBWIRE_RETENTION_COMPLETED_S="60",
        JOBWIRE_RETENTION_FAILED_S="600",
    )
    dry = await asyncio.to_thread(run, ["purge", "--dry-run"], env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would purge 2 jobs, 1 batches ("), dry.stdout
    assert "2 batch_checks" in dry.stdout  # `due`'s two notes
    assert await present(pool, [*due_jobs, *kept_jobs]) == {*due_jobs, *kept_jobs}
    assert await batches_present(pool, [due, kept]) == {due, kept}
    assert await pool.fetchval("SELECT count(*) FROM batch_checks") == 3

    out = await asyncio.to_thread(run, ["purge"], env)
    assert out.returncode == 0, out.stderr
    # the same counts as the dry run's, table by table
    assert out.stdout.startswith("purged 2 jobs, 1 batches (")
    assert out.stdout.split("(")[1].split(")")[0] == dry.stdout.split("(")[1].split(")")[0]
    assert re.search(r"^vacuumed .*\bbatches, batch_checks$", out.stdout, re.M), out.stdout
    assert await batches_present(pool, [due, kept]) == {kept}
    assert await pool.fetchval("SELECT count(*) FROM batch_checks") == 1


async def test_batches_are_purged_in_bounded_rounds(
    settings: Settings, client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    batches = [await submit_batch(client, [SAY]) for _ in range(8)]
    for _, (job_id,) in batches:
        await wait_status(client, job_id, "completed")
    batch_ids = [b for b, _ in batches]
    await settle(pool, *batch_ids)
    await backdate(pool, [j for _, (j,) in batches], 120)
    assert (await purger_for(settings).pass_once()).jobs == 8  # the batches settled just now stay
    await backdate_batches(pool, batch_ids, 120)

    # one statement deletes no more than its limit, oldest settled first
    await backdate_batches(pool, batch_ids[:3], 60)
    rules = RetentionPolicy(60, 600).batch_rules()
    async with pool.acquire() as conn:
        rows = await jobstore.purge_settled_batches(conn, rules, limit=3)
    assert rows["batches"] == 3 and rows["batch_checks"] == 3
    assert await batches_present(pool, batch_ids) == set(batch_ids[3:])

    # a pass goes round until a round comes back short: 2 + 2 + 1
    purger = Purger(settings, RetentionPolicy(60, 600), None, Keys(settings.namespace), batch=2)
    report = await purger.pass_once()
    assert report.batches == 5 and report.rows["batch_checks"] == 5
    assert not await batches_present(pool, batch_ids)


# ---- migrate --------------------------------------------------------------------------------------


@pytest.fixture
async def old_database() -> AsyncIterator[str]:
    """A database made by the schema.sql of before retention, holding a bit of everything."""
    name = f"jobwire_old_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(db_url("postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = db_url(name)
    await db.apply_schema(url, SCHEMA_BEFORE.read_text())
    conn = await asyncpg.connect(url)
    try:
        old, live = uuid.uuid4(), uuid.uuid4()
        await conn.execute(
            "INSERT INTO jobs (id, tenant, type, params, priority, status, max_attempts, last_seq,"
            " finished_at) VALUES ($1, 'acme', 'demo.sleep', '{}', 'normal', 'completed', 1, 1,"
            " now() - interval '30 days'), ($2, 'acme', 'demo.sleep', '{}', 'normal', 'pending', 1, 1, NULL)",
            old,
            live,
        )
        await conn.execute(
            "INSERT INTO job_events (job_id, seq, type, status, progress)"
            " VALUES ($1, 1, 'completed', 'completed', 100), ($2, 1, 'created', 'pending', 0)",
            old,
            live,
        )
        delivery = uuid.uuid4()
        await conn.execute(
            "INSERT INTO deliveries (id, tenant, job_id, seq, url, destination, event_type, job, status)"
            " VALUES ($1, 'acme', $2, 1, 'https://example.com/', 'url:https://example.com', 'job.completed',"
            " '{}', 'delivered')",
            delivery,
            old,
        )
        await conn.execute(
            "INSERT INTO delivery_attempts (delivery_id, at, status_code, duration_ms)"
            " VALUES ($1, now(), 200, 3)",
            delivery,
        )
        await conn.execute(
            "INSERT INTO idempotency_keys (tenant, key, request_hash, job_id, status_code)"
            " VALUES ('acme', 'a', '\\x00', $1, 202), ('acme', 'b', '\\x00', $2, 202)",
            old,
            live,
        )
    finally:
        await conn.close()
    yield url
    await drop_database(name)


async def test_migrate_upgrades_a_database_of_before_retention(old_database: str, namespace: str) -> None:
    tables = ("jobs", "job_events", "deliveries", "delivery_attempts", "idempotency_keys")

    async def counts() -> dict[str, int]:
        conn = await asyncpg.connect(old_database)
        try:
            return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in tables}
        finally:
            await conn.close()

    before = await counts()
    env = env_for(old_database, namespace)
    for _ in range(2):  # and safe to run again
        out = await asyncio.to_thread(run, ["migrate"], env)
        assert out.returncode == 0, out.stderr
        assert await counts() == before
    conn = await asyncpg.connect(old_database)
    try:
        indexes = {r["indexname"] for r in await conn.fetch("SELECT indexname FROM pg_indexes")}
    finally:
        await conn.close()
    assert {"jobs_purge_idx", "idempotency_keys_job_idx", "batches_purge_idx"} <= indexes
    out = await asyncio.to_thread(run, ["purge"], env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(
        "purged 1 jobs, 0 batches (1 job_events, 1 deliveries, 1 delivery_attempts, 1 idempotency_keys,"
        " 0 batch_checks)"
    )
    assert await counts() == {
        "jobs": 1,
        "job_events": 1,
        "deliveries": 0,
        "delivery_attempts": 0,
        "idempotency_keys": 1,
    }
