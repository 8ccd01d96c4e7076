"""What the worker runtime does to a job: transitions, events, retries, timeouts, cancel, retry,
priority, progress coalescing, and re-runs that must change nothing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from jobwire.config import Settings
from jobwire.keys import Keys
from jobwire.queue import QueuedJob, enqueue
from jobwire.redis_client import create_redis
from tests.conftest import ClientFactory, events_of, eventually, submit, wait_status
from tests.jobtypes import OBSERVED
from workers.worker import WorkerService


def assert_gapless(events: list[asyncpg.Record]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


async def test_events_record_every_transition_with_a_gapless_seq(
    client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 0.4, "steps": 4})
    done = await wait_status(client, job["id"], "completed")
    events = await events_of(pool, job["id"])
    assert_gapless(events)
    types = [e["type"] for e in events]
    assert types[:2] == ["created", "started"] and types[-1] == "completed"
    assert set(types[2:-1]) == {"progress"} and len(types[2:-1]) >= 2
    progress = [e["progress"] for e in events if e["type"] == "progress"]
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert events[-1]["data"] == done["result"]
    row = await pool.fetchrow("SELECT last_seq FROM jobs WHERE id = $1", uuid.UUID(job["id"]))
    assert row is not None and row["last_seq"] == len(events)


async def test_retryable_errors_are_retried_then_fail(
    client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    job = await submit(client, "demo.fail", {"message": "boom", "retryable": True})
    failed = await wait_status(client, job["id"], "failed", timeout=20)
    assert failed["attempts"] == 3 == failed["max_attempts"]
    assert failed["error"] == {"type": "DemoFailure", "message": "boom"}
    events = await events_of(pool, job["id"])
    assert_gapless(events)
    assert [e["type"] for e in events] == [
        "created",
        "started",
        "retrying",
        "started",
        "retrying",
        "started",
        "failed",
    ]
    retrying = [e for e in events if e["type"] == "retrying"]
    assert all(e["status"] == "pending" and e["data"]["type"] == "DemoFailure" for e in retrying)
    # the backoff spaced the attempts out (0.5 s then 1 s, ±20 %)
    starts = [e["at"] for e in events if e["type"] == "started"]
    assert (starts[1] - starts[0]).total_seconds() >= 0.35
    assert (starts[2] - starts[1]).total_seconds() >= 0.75


async def test_permanent_errors_fail_at_once(client: httpx.AsyncClient, worker: WorkerService) -> None:
    job = await submit(client, "demo.fail", {"message": "bad input"})
    failed = await wait_status(client, job["id"], "failed")
    assert failed["attempts"] == 1
    assert failed["error"] == {"type": "PermanentError", "message": "bad input"}


async def test_a_flaky_job_succeeds_on_a_later_attempt(
    client: httpx.AsyncClient, worker: WorkerService
) -> None:
    job = await submit(client, "test.flaky")
    done = await wait_status(client, job["id"], "completed")
    assert done["attempts"] == 3 and done["result"] == {"attempt": 3} and done["error"] is None


async def test_timeouts_are_errors(
    client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    job = await submit(client, "test.slow")
    failed = await wait_status(client, job["id"], "failed")
    assert failed["attempts"] == 2
    assert failed["error"]["type"] == "JobTimeout" and "0.3s" in failed["error"]["message"]


async def test_a_result_that_is_not_json_fails_the_job(
    client: httpx.AsyncClient, worker: WorkerService
) -> None:
    job = await submit(client, "test.bad_result")
    failed = await wait_status(client, job["id"], "failed")
    assert failed["error"]["type"] == "ResultNotSerializable" and failed["attempts"] == 1


async def test_cancel_a_pending_job(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 1})
    r = await client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled" and r.json()["finished_at"]
    assert [e["type"] for e in await events_of(pool, job["id"])] == ["created", "cancelled"]
    # it left the queue, and a worker started now does not run it
    redis = create_redis(settings.redis_url)
    try:
        assert await redis.zcard(Keys(settings.namespace).queue) == 0
    finally:
        await redis.aclose()
    again = await client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["type"] == "urn:jobwire:problem:invalid-state"


async def test_cancel_a_running_job_interrupts_its_function(
    client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    job = await submit(client, "test.block", {"seconds": 30})
    await wait_status(client, job["id"], "running")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    r = await client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "running"
    cancelled = await wait_status(client, job["id"], "cancelled", timeout=5)
    assert loop.time() - t0 < 2.5
    assert OBSERVED[job["id"]] == ["start 1", "cancelled"]
    assert cancelled["finished_at"] and cancelled["result"] is None
    types = [e["type"] for e in await events_of(pool, job["id"])]
    assert types[0:2] == ["created", "started"] and types[-1] == "cancelled"


async def test_retry_a_failed_or_cancelled_job(
    client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    job = await submit(client, "demo.fail", {"message": "nope"})
    await wait_status(client, job["id"], "failed")
    r = await client.post(f"/v1/jobs/{job['id']}/retry")
    assert r.status_code == 202
    retried = r.json()
    assert retried["status"] == "pending" and retried["attempts"] == 0
    assert retried["error"] == {"type": "PermanentError", "message": "nope"}  # the last error is kept
    failed_again = await wait_status(client, job["id"], "failed")
    assert failed_again["attempts"] == 1
    types = [e["type"] for e in await events_of(pool, job["id"])]
    assert types == ["created", "started", "failed", "retrying", "started", "failed"]

    done = await submit(client, "demo.sleep", {"seconds": 0})
    await wait_status(client, done["id"], "completed")
    r = await client.post(f"/v1/jobs/{done['id']}/retry")
    assert r.status_code == 409
    running = await submit(client, "test.block", {"seconds": 30})
    await wait_status(client, running["id"], "running")
    assert (await client.post(f"/v1/jobs/{running['id']}/retry")).status_code == 409
    assert (await client.post(f"/v1/jobs/{running['id']}/cancel")).status_code == 202
    await wait_status(client, running["id"], "cancelled")
    assert (await client.post(f"/v1/jobs/{running['id']}/retry")).status_code == 202
    await wait_status(client, running["id"], "running")


async def test_high_priority_jobs_start_before_queued_normal_ones(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    normal = [await submit(client, "demo.sleep", {"seconds": 0}) for _ in range(5)]
    high = [await submit(client, "demo.sleep", {"seconds": 0}, priority="high") for _ in range(2)]
    service = WorkerService(settings, concurrency=1)
    await service.start()
    try:
        finished = [await wait_status(client, j["id"], "completed") for j in normal + high]
    finally:
        await service.stop(grace_s=0)
    order = [j["id"] for j in sorted(finished, key=lambda j: j["started_at"])]
    assert order == [j["id"] for j in high + normal]


async def test_progress_is_coalesced_and_the_last_value_kept(
    client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    job = await submit(client, "test.spin", {"calls": 20_000})
    done = await wait_status(client, job["id"], "completed")
    assert done["result"] == 20_000
    events = await events_of(pool, job["id"])
    progress = [e for e in events if e["type"] == "progress"]
    assert 1 <= len(progress) <= 50, len(progress)
    assert progress[-1]["progress"] == 100.0 and progress[-1]["message"] == "call 20000"
    assert [p["progress"] for p in progress] == sorted(p["progress"] for p in progress)


async def test_a_rerun_of_a_finished_job_changes_nothing(
    client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool, settings: Settings
) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 0})
    done = await wait_status(client, job["id"], "completed")
    before = await events_of(pool, job["id"])
    redis = create_redis(settings.redis_url)
    try:
        # as if Redis handed the job out a second time
        await enqueue(
            redis, Keys(settings.namespace), [QueuedJob(uuid.UUID(job["id"]), "normal", datetime.now(UTC))]
        )

        async def drained() -> bool:
            return bool(await redis.zcard(Keys(settings.namespace).queue) == 0)

        await eventually(drained, what="the re-enqueued job to be consumed")
    finally:
        await redis.aclose()
    assert (await client.get(f"/v1/jobs/{job['id']}")).json() == done
    assert len(await events_of(pool, job["id"])) == len(before)


async def test_report_generate_summarises_the_tenants_history(
    make_client: ClientFactory, worker: WorkerService
) -> None:
    acme, other = await make_client("acme"), await make_client("other")
    for _ in range(3):
        await wait_status(acme, (await submit(acme, "demo.sleep", {"seconds": 0}))["id"], "completed")
    await wait_status(acme, (await submit(acme, "demo.fail", {"message": "x"}))["id"], "failed")
    await wait_status(other, (await submit(other, "demo.sleep", {"seconds": 0}))["id"], "completed")
    today = datetime.now(UTC).date().isoformat()
    report_job = await submit(acme, "report.generate", {"start_date": today, "end_date": today})
    done = await wait_status(acme, report_job["id"], "completed")
    report = done["result"]
    assert report["tenant"] == "acme"
    by_type = {t["type"]: t for t in report["by_type"]}
    assert by_type["demo.sleep"]["jobs"] == 3 and by_type["demo.sleep"]["completed"] == 3
    assert by_type["demo.sleep"]["success_rate"] == 1.0
    assert by_type["demo.sleep"]["p50_duration_s"] is not None
    assert by_type["demo.fail"]["failed"] == 1 and by_type["demo.fail"]["success_rate"] == 0.0
    assert report["totals"]["jobs"] == 5  # its own run counts as unfinished; the other tenant not at all
    assert report["totals"]["completed"] == 3 and report["totals"]["failed"] == 1
    assert report["by_day"] == [{"date": today, "jobs": 5, "completed": 3, "failed": 1}]
    assert report["top_errors"] == [{"type": "PermanentError", "jobs": 1}]


async def test_metrics_count_finished_jobs_across_processes(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, worker: WorkerService
) -> None:
    await wait_status(client, (await submit(client, "demo.sleep", {"seconds": 0.1}))["id"], "completed")
    await wait_status(client, (await submit(client, "demo.fail", {}))["id"], "failed")
    text = (await anon.get("/metrics")).text
    assert 'jobwire_jobs_finished_total{outcome="completed",type="demo.sleep"} 1.0' in text
    assert 'jobwire_jobs_finished_total{outcome="failed",type="demo.fail"} 1.0' in text
    assert 'jobwire_job_duration_seconds_bucket{le="+Inf",type="demo.sleep"} 1.0' in text
    assert 'jobwire_job_duration_seconds_bucket{le="0.01",type="demo.sleep"} 0.0' in text
    assert 'jobwire_job_duration_seconds_count{type="demo.sleep"} 1.0' in text


# ---- a requested cancel always ends the job `cancelled` ------------------------------------------

HOOK = "http://127.0.0.1:9/hook"


async def assert_cancelled_once(pool: asyncpg.Pool, job_id: str) -> list[str]:
    """The job is cancelled, with one terminal event (the last), gapless seqs, and the delivery its
    own webhook_url is owed for that event; returns the event types."""
    events = await events_of(pool, job_id)
    assert_gapless(events)
    types = [e["type"] for e in events]
    assert [t for t in types if t in ("completed", "failed", "cancelled")] == ["cancelled"], types
    assert types[-1] == "cancelled"
    row = await pool.fetchrow("SELECT status, cancel_requested FROM jobs WHERE id = $1", uuid.UUID(job_id))
    assert row is not None and row["status"] == "cancelled"
    owed = await pool.fetch("SELECT seq, event_type FROM deliveries WHERE job_id = $1", uuid.UUID(job_id))
    assert [(d["seq"], d["event_type"]) for d in owed] == [(len(events), "job.cancelled")]
    return types


async def with_hook(pool: asyncpg.Pool, job_id: str) -> None:
    # stored directly: no dispatcher runs here, only the deliveries the transitions owe are checked
    await pool.execute("UPDATE jobs SET webhook_url = $2 WHERE id = $1", uuid.UUID(job_id), HOOK)


async def test_a_job_that_fails_retryably_as_it_is_cancelled_ends_cancelled(
    client: httpx.AsyncClient, worker: WorkerService, pool: asyncpg.Pool
) -> None:
    job = await submit(client, "test.fail_on_cancel")
    await with_hook(pool, job["id"])
    await wait_status(client, job["id"], "running")
    assert (await client.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 202
    # the run fails into a retry before (or as) the heartbeat delivers the cancel
    cancelled = await wait_status(client, job["id"], "cancelled", timeout=10)
    assert cancelled["attempts"] == 1
    types = await assert_cancelled_once(pool, job["id"])
    assert types == ["created", "started", "cancelled"]


async def test_a_job_handed_back_at_shutdown_with_a_cancel_pending_ends_cancelled(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    service = WorkerService(settings)
    await service.start()
    try:
        job = await submit(client, "test.block", {"seconds": 60})
        await with_hook(pool, job["id"])
        await wait_status(client, job["id"], "running")
        # stop the heartbeat, so the cancel request is still undelivered when the worker shuts down
        heartbeat = service._tasks[0]
        heartbeat.cancel()
        await asyncio.wait([heartbeat])
        assert (await client.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 202
    finally:
        await service.stop(grace_s=0)
    assert OBSERVED[job["id"]] == ["start 1", "cancelled"]  # interrupted by the shutdown
    assert (await client.get(f"/v1/jobs/{job['id']}")).json()["status"] == "cancelled"
    await assert_cancelled_once(pool, job["id"])


@pytest.mark.parametrize("cap", [0, 5], ids=["batched-start", "start-within-cap"])
async def test_a_pending_job_with_a_cancel_requested_is_cancelled_by_its_start(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool, cap: int
) -> None:
    # as an older worker could leave it: pending, the cancel flag still set
    job = await submit(client, "demo.sleep", {"seconds": 0})
    await with_hook(pool, job["id"])
    await pool.execute("UPDATE jobs SET cancel_requested = true WHERE id = $1", uuid.UUID(job["id"]))
    service = WorkerService(settings.model_copy(update={"tenant_max_running": cap}))
    await service.start()
    try:
        await wait_status(client, job["id"], "cancelled")
    finally:
        await service.stop(grace_s=0)
    assert await assert_cancelled_once(pool, job["id"]) == ["created", "cancelled"]
