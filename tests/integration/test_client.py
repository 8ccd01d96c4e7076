"""The Python client (jobwire.Client, jobwire.AsyncClient) against a real api and worker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from jobwire import ApiError, AsyncClient, Client, WaitTimeout
from jobwire.resources import Event, Job
from tests.conftest import ROOT, Api
from workers.worker import WorkerService


def key_of(client: httpx.AsyncClient) -> str:
    return str(client.headers["Authorization"]).removeprefix("Bearer ")


@pytest.fixture
async def jobs(api: Api, client: httpx.AsyncClient) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(api.url, key_of(client), timeout=10) as c:
        yield c


def no_unknown_fields(model: Job | Event) -> None:
    # the models accept fields they do not know (a newer api); this api sends none
    assert not model.model_extra, model.model_extra


async def test_submit_get_list_cancel_retry_and_problems(jobs: AsyncClient) -> None:
    job = await jobs.submit("test.block", {"seconds": 30}, priority="high", idempotency_key="k-1")
    no_unknown_fields(job)
    assert job.status == "pending" and job.priority == "high"
    assert (
        await jobs.submit("test.block", {"seconds": 30}, priority="high", idempotency_key="k-1")
    ).id == job.id
    assert (await jobs.get(job.id)).id == job.id
    page = await jobs.list(status=["pending"], type="test.block", limit=1)
    assert [j.id for j in page.items] == [job.id]
    with pytest.raises(ApiError) as conflict:
        await jobs.retry(job.id)  # pending: nothing to retry
    assert conflict.value.status == 409 and conflict.value.type.endswith("invalid-state")
    cancelled = await jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert (await jobs.retry(job.id)).status == "pending"
    assert (await jobs.deliveries(job.id)).items == []
    with pytest.raises(ApiError) as invalid:
        await jobs.submit("demo.sleep", {"seconds": "long"})
    problem = invalid.value
    assert problem.status == 422 and problem.title and problem.detail
    assert problem.errors[0]["loc"] == ["body", "params", "seconds"]
    assert "body.params.seconds" in str(problem)
    with pytest.raises(ApiError) as missing:
        await jobs.get("../../v1/jobs")  # one path segment, whatever it holds
    assert missing.value.status == 404


async def test_submit_with_dependencies_waits_then_runs_with_their_results(
    jobs: AsyncClient, worker: WorkerService
) -> None:
    a = await jobs.submit("demo.sum", {"add": 4})
    b = await jobs.submit("demo.sum", {"add": 1}, depends_on=[a.id], wait=10)
    no_unknown_fields(b)
    assert b.status == "completed" and b.depends_on == [a.id]
    assert b.result == {"sum": 5, "inputs": 1}
    with pytest.raises(ApiError) as unknown:
        await jobs.submit("demo.sum", depends_on=[a.id, "01234567-89ab-7def-8123-456789abcdef"])
    assert unknown.value.status == 422 and unknown.value.errors[0]["loc"] == ["body", "depends_on", 1]


async def test_wait_long_polls_to_the_end_or_times_out(jobs: AsyncClient, worker: WorkerService) -> None:
    job = await jobs.submit("demo.sleep", {"seconds": 0.5, "steps": 5})
    done = await jobs.wait(job.id, timeout=10)
    assert done.status == "completed" and done.progress == 100
    blocked = await jobs.submit("test.block", {"seconds": 30})
    with pytest.raises(WaitTimeout) as late:
        await jobs.wait(blocked.id, timeout=1)
    assert isinstance(late.value, TimeoutError) and late.value.job.status in ("pending", "running")
    await jobs.cancel(blocked.id)


async def test_follow_resumes_across_an_api_restart_with_no_gap_and_no_duplicate(
    api: Api, jobs: AsyncClient, worker: WorkerService
) -> None:
    job = await jobs.submit("demo.sleep", {"seconds": 3, "steps": 30})
    seen: list[Event] = []
    underway = asyncio.Event()

    async def follow() -> None:
        async for event in jobs.follow(job.id):
            no_unknown_fields(event)
            seen.append(event)
            if len(seen) == 5:
                underway.set()

    follower = asyncio.create_task(follow())
    await asyncio.wait_for(underway.wait(), 10)
    await api.stop()  # every stream ends; the client reconnects with Last-Event-ID
    await asyncio.sleep(0.3)
    await api.start()
    await asyncio.wait_for(follower, 20)
    seqs = [e.seq for e in seen]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert seen[-1].type == "completed" and seen[-1].result is not None


async def test_the_blocking_client_follows_and_waits(
    api: Api, client: httpx.AsyncClient, worker: WorkerService
) -> None:
    def scenario() -> None:
        with Client(api.url, key_of(client)) as jobs:
            job = jobs.submit("demo.sleep", {"seconds": 0.3, "steps": 3}, wait=10)
            assert job.status == "completed"  # Prefer: wait held the answer
            events = list(jobs.follow(job.id))
            assert events[0].type == "created" and events[-1].type == "completed"
            assert list(jobs.follow(job.id, after=events[-1].seq)) == []  # nothing after the end (204)
            assert jobs.wait(job.id).status == "completed"
        with Client(api.url, "jw_not_a_key") as stranger, pytest.raises(ApiError) as refused:
            stranger.get(job.id)
        assert refused.value.status == 401

    # the blocking client in a thread of its own, while the api serves on the test's loop
    await asyncio.to_thread(scenario)


async def test_schedules_through_both_clients(api: Api, client: httpx.AsyncClient, jobs: AsyncClient) -> None:
    made = await jobs.create_schedule(
        "nightly", "demo.sleep", {"seconds": 0}, cron="0 3 * * *", timezone="Europe/Berlin", priority="high"
    )
    assert made.cron == "0 3 * * *" and made.timezone == "Europe/Berlin" and made.job.priority == "high"
    assert made.next_run_at is not None and not made.paused
    assert [s.id for s in (await jobs.schedules(limit=10)).items] == [made.id]
    paused = await jobs.update_schedule(made.id, paused=True)
    assert paused.paused and paused.next_run_at is None
    job = await jobs.trigger_schedule(made.id)
    assert job.schedule_id == made.id and (await jobs.get_schedule(made.id)).last_job_id == job.id
    with pytest.raises(ApiError) as taken:
        await jobs.create_schedule("nightly", "demo.sleep", interval_s=60)
    assert taken.value.status == 409
    with pytest.raises(ApiError) as invalid:
        await jobs.create_schedule("bad", "demo.sleep", {"seconds": "x"}, interval_s=60)
    assert invalid.value.errors[0]["loc"] == ["body", "job", "params", "seconds"]

    def blocking() -> None:
        with Client(api.url, key_of(client)) as sync:
            every = sync.create_schedule("every", "demo.sleep", interval_s=3600, overlap="allow")
            assert every.interval_s == 3600 and every.overlap == "allow"
            assert sync.update_schedule(every.id, description="hourly").description == "hourly"
            sync.delete_schedule(every.id)
            with pytest.raises(ApiError) as gone:
                sync.get_schedule(every.id)
            assert gone.value.status == 404

    await asyncio.to_thread(blocking)
    await jobs.delete_schedule(made.id)
    assert (await jobs.schedules()).items == []


def test_the_client_imports_without_the_server() -> None:
    code = (
        "import sys, jobwire; from jobwire import Client, AsyncClient, ApiError, verify_webhook;"
        " from jobwire.resources import Job, Event;"
        " bad = [m for m in ('service', 'workers', 'aiohttp', 'arq') if m in sys.modules];"
        " assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=30)
