"""Redis behind Sentinel: the primary SIGKILLed under load, a replica promoted, and every process
(api and its hub, worker, dispatcher) following it with nothing lost: every 202 terminal with one
terminal event and a gapless sequence, every stream complete with no gap, every owed webhook
delivered and verified. Measures the recovery (printed; the README records it)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import make_settings, new_key, submit
from tests.e2e.load import (
    Follower,
    Load,
    account,
    all_finished,
    assert_all_honoured,
    assert_webhooks_honoured,
)
from tests.e2e.sentinel import MASTER, SentinelRedis
from tests.integration.test_faults import WorkerProcess
from tests.integration.test_streams_faults import ApiProcess
from tests.integration.test_webhooks_faults import DispatcherProcess
from tests.receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

# a job reaching a worker this soon after its submission went through the live queue (the worker's
# poll is 0.05 s); one the failover kept from the queue waits for the reconciler (1 s here)
STRAIGHT_THROUGH_S = 0.5


@pytest.fixture
def sentinel_redis() -> Iterator[SentinelRedis]:
    redis = SentinelRedis()
    try:
        redis.start()
        yield redis
    finally:
        redis.stop()


async def epoch(database_url: str, sql: str, *args: object) -> float | None:
    conn = await asyncpg.connect(database_url)
    try:
        value = await conn.fetchval(f"SELECT extract(epoch FROM ({sql}))", *args)
    finally:
        await conn.close()
    return None if value is None else float(value)


async def first_straight_through(database_url: str, job_ids: list[str], after: float) -> float | None:
    """When (epoch seconds) the first of these jobs created after `after` that started within
    STRAIGHT_THROUGH_S was submitted: the first submission to take the live queue again."""
    return await epoch(
        database_url,
        "SELECT min(j.created_at) FROM jobs j JOIN job_events e ON e.job_id = j.id AND e.type = 'started'"
        " WHERE j.id = ANY($1::uuid[]) AND j.created_at > to_timestamp($2)"
        " AND e.at - j.created_at < make_interval(secs => $3)",
        [uuid.UUID(j) for j in job_ids],
        after,
        STRAIGHT_THROUGH_S,
    )


async def last_finished(database_url: str, job_ids: list[str], created_before: float) -> float | None:
    """When (epoch seconds) the last of these jobs submitted before `created_before` finished."""
    return await epoch(
        database_url,
        "SELECT max(finished_at) FROM jobs WHERE id = ANY($1::uuid[]) AND created_at < to_timestamp($2)",
        [uuid.UUID(j) for j in job_ids],
        created_before,
    )


async def test_a_redis_primary_killed_under_load_loses_no_job_event_or_webhook(
    database: str, namespace: str, sentinel_redis: SentinelRedis, receiver: Receiver, tmp_path: Path
) -> None:
    # no usable host in the URL: every connection must find the primary through Sentinel
    settings = make_settings(
        database,
        namespace,
        redis_url="redis://no-such-host.invalid:6379/0",
        redis_sentinels=sentinel_redis.sentinels,
        redis_sentinel_master=MASTER,
        webhook_allow_private=True,
    )
    key = await new_key(database, "acme")
    api = ApiProcess(settings, tmp_path, "api")
    procs: list[ApiProcess | WorkerProcess | DispatcherProcess] = [
        api,
        WorkerProcess(
            settings,
            tmp_path,
            "worker",
            concurrency=20,
            JOBWIRE_RECONCILE_INTERVAL_S="1",
            JOBWIRE_WORKER_LEASE_S="5",
        ),
        DispatcherProcess(settings, tmp_path, "dispatcher"),
    ]
    try:
        await api.ready()
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30) as http:
            secret = (await http.get("/v1/webhooks/signing-secret")).json()["secret"]
            hook = receiver.url + "/hook"
            # jobs that run across the failover, followed live: one stream each, and one for all
            long = [
                (await submit(http, "demo.sleep", {"seconds": 6, "steps": 30}, webhook_url=hook))["id"]
                for _ in range(3)
            ]
        followers = [Follower([api.url], key, [j]) for j in long] + [Follower([api.url], key, long)]
        following = [asyncio.ensure_future(f.run()) for f in followers]
        load = Load(
            [api.url],
            key,
            {"type": "demo.sleep", "params": {"seconds": 0.2, "steps": 2}, "webhook_url": hook},
            every_s=0.03,
        )
        stop = asyncio.Event()
        loading = asyncio.ensure_future(load.run(stop))
        await asyncio.sleep(2.5)
        accepted_before = len(load.accepted)

        old = sentinel_redis.primary()
        assert old == (sentinel_redis.host, sentinel_redis.primary_port)
        killed_at = time.time()
        sentinel_redis.kill(sentinel_redis.primary_port)
        await asyncio.to_thread(sentinel_redis.wait_new_primary, old, 20)
        promoted_s = time.time() - killed_at
        await asyncio.sleep(4)
        stop.set()
        await loading

        assert not load.bad, load.bad[:5]
        assert accepted_before > 20 and len(load.accepted) > accepted_before + 50, load.statuses
        await all_finished(database, load.accepted + long, timeout=30)
        report = await account(database, load.accepted + long)
        assert_all_honoured(report)
        assert report["statuses"] == {"completed": len(load.accepted) + len(long)}, report

        straight = await first_straight_through(database, load.accepted, killed_at)
        assert straight is not None, "no submission took the live queue after the failover"
        # the jobs the failover caught: submitted before the queue took submissions again
        drained = await last_finished(database, load.accepted, straight)
        assert drained is not None
        await asyncio.wait_for(asyncio.gather(*following), timeout=20)
        for follower in followers:
            follower.assert_complete()
        # the followed jobs ran across the failover: started before it, completed after it
        for job_id in long:
            at = {
                e["type"]: datetime.fromisoformat(e["at"]).timestamp() for e in followers[-1].events[job_id]
            }
            assert at["started"] < killed_at < at["completed"], at
        owed = await assert_webhooks_honoured(
            database, load.accepted + long, receiver.at("/hook"), secret, 30
        )
        print(
            f"\nsentinel failover: primary killed -> replica promoted {promoted_s:.2f} s; -> first "
            f"submission through the live queue {straight - killed_at:.2f} s; -> every job submitted "
            f"before then finished {drained - killed_at:.2f} s ({len(load.accepted)} jobs, {owed} webhooks, "
            f"{sum(f.reconnects for f in followers)} stream reconnects)"
        )
    finally:
        for p in procs:
            p.proc.kill()
            p.proc.wait(10)
