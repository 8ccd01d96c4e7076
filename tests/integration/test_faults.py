"""Faults with real processes: a worker SIGKILLed mid-job, a graceful SIGTERM, Redis losing the
queue or going down, PostgreSQL unreachable, and two namespaces sharing one Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from arq.worker import Retry

from jobwire.config import Settings
from jobwire.keys import Keys
from jobwire.redis_client import create_redis
from jobwire.registry import Registry, load_job_types
from tests.conftest import (
    REDIS_URL,
    ROOT,
    Api,
    ClientFactory,
    delete_namespace,
    events_of,
    eventually,
    free_port,
    http_ready,
    make_settings,
    new_key,
    submit,
    wait_status,
)
from tests.jobtypes import RELEASE
from workers.runtime import Runtime
from workers.worker import WorkerService


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    env.update(
        JOBWIRE_DATABASE_URL=settings.database_url,
        JOBWIRE_REDIS_URL=settings.redis_url,
        JOBWIRE_NAMESPACE=settings.namespace,
        JOBWIRE_SECRET_KEY="test-secret-key-of-32-characters-or-more",
        JOBWIRE_JOB_MODULES='["tests.jobtypes"]',
        JOBWIRE_WORKER_POLL_DELAY_S="0.05",
        JOBWIRE_LOG_FORMAT="json",
        JOBWIRE_WEBHOOK_ALLOW_PRIVATE=str(settings.webhook_allow_private).lower(),
        JOBWIRE_RATE_LIMIT_PER_S=str(settings.rate_limit_per_s),
        JOBWIRE_REDIS_SENTINELS=settings.redis_sentinels,
        JOBWIRE_REDIS_SENTINEL_MASTER=settings.redis_sentinel_master,
    )
    if settings.database_direct_url:
        env["JOBWIRE_DATABASE_DIRECT_URL"] = settings.database_direct_url
    env.update(extra)
    return env


class WorkerProcess:
    """`jobwire worker` in a subprocess, its log kept in a file for post-mortems."""

    def __init__(
        self, settings: Settings, log_dir: Path, name: str, *, concurrency: int = 4, **env: str
    ) -> None:
        self.log_path = log_dir / f"{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobwire", "worker", "--concurrency", str(concurrency)],
            cwd=ROOT,
            env=worker_env(settings, **env),
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for p in started:
        p.stop()


@pytest.mark.slow
async def test_a_sigkilled_workers_job_runs_again_within_the_lease(
    client: httpx.AsyncClient,
    settings: Settings,
    pool: asyncpg.Pool,
    processes: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    first = WorkerProcess(settings, tmp_path, "first")
    processes.append(first)
    # a job whose timeout (an hour) is far longer than the lease (15 s)
    job = await submit(client, "demo.sleep", {"seconds": 4, "steps": 8})

    async def progressed() -> bool:
        r = (await client.get(f"/v1/jobs/{job['id']}")).json()
        return bool(r["status"] == "running" and r["progress"] > 0)

    await eventually(progressed, timeout=15, what="the job to make progress on the first worker")
    first.signal(signal.SIGKILL)
    killed_at = time.time()
    first.wait(5)
    processes.append(WorkerProcess(settings, tmp_path, "second"))

    done = await wait_status(client, job["id"], "completed", timeout=40)
    assert done["attempts"] == 2
    events = await events_of(pool, job["id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    types = [e["type"] for e in events]
    lost = types.index("retrying")
    assert types[lost + 1] == "started" and types[-1] == "completed"
    assert events[lost]["data"]["type"] == "WorkerLost"
    # the second start came within the 15 s lease (plus polling slack) of the kill
    assert events[lost + 1]["at"].timestamp() - killed_at < 18


@pytest.mark.slow
async def test_sigterm_lets_short_jobs_finish_and_hands_long_ones_back(
    client: httpx.AsyncClient,
    settings: Settings,
    pool: asyncpg.Pool,
    processes: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    proc = WorkerProcess(settings, tmp_path, "graceful", JOBWIRE_WORKER_GRACE_S="2")
    processes.append(proc)
    short = await submit(client, "demo.sleep", {"seconds": 1})
    long = await submit(client, "test.block", {"seconds": 60})
    await wait_status(client, short["id"], "running", timeout=15)
    await wait_status(client, long["id"], "running", timeout=15)
    proc.signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 20) == 0

    assert (await client.get(f"/v1/jobs/{short['id']}")).json()["status"] == "completed"
    handed_back = (await client.get(f"/v1/jobs/{long['id']}")).json()
    assert handed_back["status"] == "pending"
    assert handed_back["attempts"] == 0  # a shutdown does not spend an attempt
    assert handed_back["error"]["type"] == "WorkerShutdown"
    # and another worker takes it up at once
    async with running_worker(settings):
        again = await wait_status(client, long["id"], "running", timeout=10)
        assert again["attempts"] == 1


@pytest.mark.slow
async def test_a_worker_whose_lease_lapsed_cannot_touch_a_later_run_after_a_manual_retry(
    client: httpx.AsyncClient,
    settings: Settings,
    pool: asyncpg.Pool,
    processes: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    # this worker blocks its event loop in the job for 15 s: its heartbeat stops and its 3 s lease
    # lapses while its run still believes it owns attempt 1
    stale = WorkerProcess(settings, tmp_path, "stale", JOBWIRE_WORKER_LEASE_S="3", TEST_STALL_WORKER="1")
    processes.append(stale)
    job = await submit(client, "test.stall", {"stall_s": 15})
    await wait_status(client, job["id"], "running", timeout=15)
    async with running_worker(settings):
        # another worker finds the run lost (its last attempt: failed), and the job is retried,
        # which resets attempts: the later run is attempt 1 again
        lost = await wait_status(client, job["id"], "failed", timeout=20)
        assert lost["error"]["type"] == "WorkerLost"
        assert (await client.post(f"/v1/jobs/{job['id']}/retry")).status_code == 202
        later = await wait_status(client, job["id"], "running", timeout=10)
        assert later["attempts"] == 1

        # the stale worker wakes, reports progress and completes its run
        async def stale_run_ended() -> bool:
            if "job result discarded" in stale.log_path.read_text():
                return True
            return bool((await client.get(f"/v1/jobs/{job['id']}")).json()["status"] != "running")

        await eventually(stale_run_ended, timeout=30, what="the stale worker to finish its run")
        RELEASE.setdefault(job["id"], asyncio.Event()).set()
        done = await wait_status(client, job["id"], "completed", timeout=10)
    assert done["result"] == "fresh" and done["attempts"] == 1
    events = await events_of(pool, job["id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    # nothing of the stale run's after it was lost: no progress, no second outcome
    assert [e["type"] for e in events] == ["created", "started", "failed", "retrying", "started", "completed"]


async def test_a_claim_whose_lease_lapsed_before_its_start_leaves_the_job_to_its_holder(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    # A worker claims a job, then waits on PostgreSQL to start it (cut off, or slow) past its lease:
    # meanwhile another worker claimed the job and runs it. The stale claim must not take the job
    # over as "lost" from a worker that is alive and holds the lease.
    job = await submit(client, "test.block", {"seconds": 30})
    keys = Keys(settings.namespace)
    async with running_worker(settings) as holder:
        await wait_status(client, job["id"], "running", timeout=15)
        holding = await holder.redis.get(keys.arq_in_progress_key(job["id"]))
        stale = Runtime(settings, holder.pool, holder.redis, keys, load_job_types(settings.job_modules))
        with pytest.raises(Retry):  # stays queued: the holder finishes it
            await stale.run(job["id"], lease="a-claim-that-lapsed")
        assert await holder.redis.get(keys.arq_in_progress_key(job["id"])) == holding
        now = (await client.get(f"/v1/jobs/{job['id']}")).json()
        assert (now["status"], now["attempts"]) == ("running", 1)
        assert "retrying" not in [e["type"] for e in await events_of(pool, job["id"])]
        assert "failed" not in [e["type"] for e in await events_of(pool, job["id"])]


class running_worker:
    def __init__(self, settings: Settings) -> None:
        self.service = WorkerService(settings)

    async def __aenter__(self) -> WorkerService:
        await self.service.start()
        return self.service

    async def __aexit__(self, *exc: object) -> None:
        await self.service.stop(grace_s=0)


async def test_reconciler_requeues_jobs_redis_lost(client: httpx.AsyncClient, settings: Settings) -> None:
    jobs = [await submit(client, "demo.sleep", {"seconds": 0}) for _ in range(3)]
    # Redis loses everything of this namespace after the 202s (a flush, a failover without persistence)
    await delete_namespace(settings.redis_url, settings.namespace)
    async with running_worker(settings):
        for job in jobs:
            assert (await wait_status(client, job["id"], "completed", timeout=15))["attempts"] == 1


class RedisServer:
    """A throwaway redis-server on a free port that a test may stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def api_on(registry: Registry) -> AsyncIterator[list[Api]]:
    servers: list[Api] = []
    yield servers
    for s in servers:
        await s.stop()


async def test_jobs_accepted_while_redis_is_down_run_when_it_is_back(
    database: str, namespace: str, registry: Registry, redis_server: RedisServer, api_on: list[Api]
) -> None:
    settings = make_settings(database, namespace, redis_url=redis_server.url)
    api = Api(settings, registry)
    await api.start()
    api_on.append(api)
    key = await new_key(database, "acme")
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}) as client:
        redis_server.stop()
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["Retry-After"]
        assert "redis" in ready.json()["detail"]
        # PostgreSQL has the job: it is accepted, and owed
        job = await submit(client, "demo.sleep", {"seconds": 0})
        redis_server.start()
        async with running_worker(settings):
            done = await wait_status(client, job["id"], "completed", timeout=15)
        assert done["attempts"] == 1


async def test_postgres_unreachable_is_503_with_retry_after(
    namespace: str, registry: Registry, api_on: list[Api]
) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/jobwire"
    api = Api(make_settings(dead, namespace), registry)
    await api.start()
    api_on.append(api)
    unknown = "jw_" + "x" * 43  # of the form of a real key, so that it is looked up
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {unknown}"}) as client:
        for method, path in (("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/readyz")):
            r = await client.request(method, path, json={"type": "demo.sleep"})
            assert r.status_code == 503, (path, r.text)
            assert int(r.headers["Retry-After"]) > 0
            assert r.headers["Content-Type"].startswith("application/problem+json")
            assert "Traceback" not in r.text
            if path != "/readyz":  # a refused PostgreSQL connection is an OSError: blamed on the database
                detail = r.json()["detail"]
                assert "database" in detail and "redis" not in detail.lower(), detail
        assert (await client.get("/healthz")).status_code == 200


async def test_two_namespaces_on_one_redis_never_see_each_others_jobs(
    client: httpx.AsyncClient, settings: Settings, other_database: str
) -> None:
    # staging and production: one Redis server, a database and a namespace each
    other_ns = settings.namespace + "-other"
    other = make_settings(other_database, other_ns)
    try:
        job = await submit(client, "demo.sleep", {"seconds": 0})
        async with running_worker(other):
            await asyncio.sleep(1.5)
            assert (await client.get(f"/v1/jobs/{job['id']}")).json()["status"] == "pending"
        redis = create_redis(REDIS_URL)
        try:
            mine = [k async for k in redis.scan_iter(match=f"*{settings.namespace}:*")]
            assert mine, "the job is queued under its namespace"
            assert all(settings.namespace in k.decode() for k in mine)
            assert await redis.zcard(Keys(other_ns).queue) == 0
        finally:
            await redis.aclose()
        async with running_worker(settings):
            await wait_status(client, job["id"], "completed")
    finally:
        await delete_namespace(REDIS_URL, other_ns)


async def test_api_sigterm_is_graceful(
    settings: Settings, tmp_path: Path, make_client: ClientFactory
) -> None:
    port = free_port()
    env = worker_env(settings, JOBWIRE_PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobwire", "api"],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "api.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        await http_ready(f"http://127.0.0.1:{port}", "/healthz", timeout=15)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_a_redis_error_after_the_commit_still_answers_202(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    redis = create_redis(settings.redis_url)
    try:
        # the queue key holds the wrong type: the enqueue script fails with WRONGTYPE
        await redis.set(Keys(settings.namespace).queue, "not a sorted set")
        r = await asyncio.wait_for(client.post("/v1/jobs", json={"type": "demo.sleep"}), 10)
        assert r.status_code == 202
        assert await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'pending'") == 1
    finally:
        await redis.delete(Keys(settings.namespace).queue)
        await redis.aclose()
