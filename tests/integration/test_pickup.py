"""Push pickup: an enqueued job wakes idle workers at once (a wake on <namespace>:wake, once per
batch), and the poll is only the fallback that still starts a job whose wake never came."""

from __future__ import annotations

import asyncio
import statistics
import uuid
from datetime import datetime

import asyncpg
import httpx
import orjson
import pytest

from jobwire import jobstore
from jobwire.config import Settings
from jobwire.keys import ARQ_FUNCTION, Keys
from jobwire.redis_client import create_redis
from tests.conftest import make_settings, submit, wait_status
from workers.worker import WorkerService

# far longer than any wait below: a job that starts in time was not started by a poll
SLOW_POLL_S = 30.0


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(database, namespace, worker_poll_delay_s=SLOW_POLL_S)


def seconds_to_start(job: dict[str, str]) -> float:
    """From the job's insert to its start, both timed by PostgreSQL's clock."""
    started, created = job["started_at"], job["created_at"]
    return (datetime.fromisoformat(started) - datetime.fromisoformat(created)).total_seconds()


async def test_a_job_enqueued_while_every_worker_is_idle_starts_at_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    services = [WorkerService(settings, concurrency=4) for _ in range(2)]
    for service in services:
        await service.start()
    try:
        await asyncio.sleep(0.5)  # both have polled the empty queue and sleep for SLOW_POLL_S
        waits: list[float] = []
        for _ in range(8):
            job = await submit(client, "demo.sleep", {"seconds": 0})
            done = await wait_status(client, job["id"], "completed", timeout=10)
            waits.append(seconds_to_start(done))
            await asyncio.sleep(0.05)  # idle again before the next one
    finally:
        for service in services:
            await service.stop(grace_s=0)
    # a few ms on a quiet machine; the bounds leave room for a busy one, and are still far below
    # the poll (a job left to it would wait up to 30 s)
    assert max(waits) < 2.0, waits
    assert statistics.median(waits) < 0.25, waits


async def test_a_lost_wake_up_still_starts_the_job_by_the_poll(
    client: httpx.AsyncClient, database: str, namespace: str, pool: asyncpg.Pool
) -> None:
    settings = make_settings(database, namespace, worker_poll_delay_s=0.5)
    keys = Keys(namespace)
    service = WorkerService(settings, concurrency=2)
    await service.start()
    redis = create_redis(settings.redis_url)
    try:
        await asyncio.sleep(0.3)  # idle
        job = jobstore.NewJob(uuid.uuid4(), "acme", "demo.sleep", {"seconds": 0}, "normal", 3, None)
        await jobstore.insert_job(pool, job)
        # queued as ARQ's own enqueue_job queues a job: no wake is published for it
        queued = await redis.enqueue_job(
            ARQ_FUNCTION, str(job.id), _job_id=keys.arq_job_id(job.id), _queue_name=keys.queue
        )
        assert queued is not None
        done = await wait_status(client, str(job.id), "completed", timeout=10)
    finally:
        await redis.aclose()
        await service.stop(grace_s=0)
    # started by a poll: within about one poll delay of its insert
    assert seconds_to_start(done) < 3.0


async def test_a_wake_is_published_once_per_enqueued_batch(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    keys = Keys(settings.namespace)
    redis = create_redis(settings.redis_url, socket_timeout=None)
    try:
        async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(keys.wake_channel, keys.events_channel)
            jobs = await asyncio.gather(*(submit(client, "demo.sleep", {"seconds": 0}) for _ in range(40)))
            assert len(jobs) == 40
            wakes, batches, created = 0, 0, 0
            # (an ignored subscribe confirmation reads as None too: read until a quiet second)
            deadline = asyncio.get_running_loop().time() + 1.0
            while asyncio.get_running_loop().time() < deadline:
                message = await pubsub.get_message(timeout=0.2)
                if message is None:
                    continue
                deadline = asyncio.get_running_loop().time() + 1.0
                if message["channel"].decode() == keys.wake_channel:
                    wakes += 1
                else:  # one message per batch: its jobs' `created` events
                    batches += 1
                    body = orjson.loads(message["data"])
                    created += len(body) if isinstance(body, list) else 1
    finally:
        await redis.aclose()
    assert created == 40
    assert wakes == batches  # one wake per batch the api enqueued, whatever its size
