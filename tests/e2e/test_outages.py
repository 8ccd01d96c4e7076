"""Faults under load, with real processes: PostgreSQL stopped, an api SIGKILLed under open streams,
Redis restarted empty, and a chaos run killing processes at random while jobs keep coming. At the
end every 202 is accounted for: stored, terminal, one terminal event, a gapless sequence, and every
owed webhook delivered."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from httpx_sse import aconnect_sse

from jobwire import db
from jobwire.config import Settings
from jobwire.webhooks import signing
from tests.conftest import eventually, make_settings, new_key, submit
from tests.e2e.load import Load, account, all_finished, assert_all_honoured
from tests.e2e.servers import PostgresServer
from tests.integration.test_faults import RedisServer, WorkerProcess, redis_server
from tests.integration.test_streams_faults import ApiProcess
from tests.integration.test_webhooks_faults import DispatcherProcess
from tests.receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
__all__ = ["redis_server"]  # the fixture, re-exported for pytest

Proc = ApiProcess | WorkerProcess | DispatcherProcess


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.remove()


async def run_load(load: Load, during: Callable[[], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    task = asyncio.ensure_future(load.run(stop))
    try:
        await during()
    finally:
        stop.set()
        await task


async def test_postgresql_down_under_load_answers_503_and_loses_no_202(
    postgres: PostgresServer, namespace: str, procs: list[Proc], tmp_path: Path
) -> None:
    settings = make_settings(postgres.url, namespace)
    await db.migrate(postgres.url)
    key = await new_key(postgres.url, "acme")
    api = ApiProcess(settings, tmp_path, "api")
    procs += [api, WorkerProcess(settings, tmp_path, "worker")]
    await api.ready()
    load = Load([api.url], key, {"type": "demo.sleep", "params": {"seconds": 0.05}})
    accepted_at: dict[str, int] = {}

    async def outage() -> None:
        await asyncio.sleep(2)
        accepted_at["before"] = len(load.accepted)
        await asyncio.to_thread(postgres.stop)
        await asyncio.sleep(10)
        accepted_at["during"] = len(load.accepted)
        await asyncio.to_thread(postgres.start)
        await asyncio.sleep(4)

    await run_load(load, outage)
    assert load.statuses[503] > 20, load.statuses  # the outage was seen, as 503 + Retry-After
    assert not load.bad, load.bad[:5]
    assert accepted_at["before"] > 20 and len(load.accepted) > accepted_at["during"] + 20, accepted_at
    await all_finished(postgres.url, load.accepted, timeout=60)
    report = await account(postgres.url, load.accepted)
    assert_all_honoured(report)
    assert report["statuses"] == {"completed": len(load.accepted)}, report


async def test_an_api_sigkilled_under_open_streams_loses_no_event(
    settings: Settings, procs: list[Proc], tmp_path: Path
) -> None:
    first, second = ApiProcess(settings, tmp_path, "first"), ApiProcess(settings, tmp_path, "second")
    procs += [first, second, WorkerProcess(settings, tmp_path, "worker")]
    await asyncio.gather(first.ready(), second.ready())
    key = await new_key(settings.database_url, "acme")
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        http.base_url = httpx.URL(first.url)
        jobs = [await submit(http, "demo.sleep", {"seconds": 3, "steps": 12}) for _ in range(5)]
        seen: dict[str, list[dict[str, Any]]] = {j["id"]: [] for j in jobs}

        async def follow(job_id: str, base: str) -> None:
            last = seen[job_id][-1]["id"] if seen[job_id] else None
            async with aconnect_sse(
                http,
                "GET",
                f"{base}/v1/jobs/{job_id}/events",
                headers={"Last-Event-ID": last} if last else {},
            ) as source:
                if source.response.status_code == 204:
                    return
                async for sse in source.aiter_sse():
                    if sse.data:
                        seen[job_id].append({"id": sse.id, **json.loads(sse.data)})

        followers = [asyncio.ensure_future(follow(j["id"], first.url)) for j in jobs]
        await eventually(lambda: _started(seen), timeout=20, what="every stream to be under way")
        first.proc.send_signal(signal.SIGKILL)
        results = await asyncio.gather(*followers, return_exceptions=True)
        assert all(isinstance(r, httpx.TransportError) or r is None for r in results), results
        assert any(e["type"] not in ("completed",) for events in seen.values() for e in events[-1:])
        # the clients resume on the other api from where they were
        await asyncio.gather(*(follow(j["id"], second.url) for j in jobs))
    for events in seen.values():
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["type"] == "completed"


async def _started(seen: dict[str, list[dict[str, Any]]]) -> bool:
    return all(any(e["type"] == "progress" for e in events) for events in seen.values())


async def test_redis_restarted_empty_under_load_loses_no_202(
    database: str,
    namespace: str,
    redis_server: RedisServer,
    procs: list[Proc],
    tmp_path: Path,
) -> None:
    settings = make_settings(database, namespace, redis_url=redis_server.url)
    key = await new_key(database, "acme")
    api = ApiProcess(settings, tmp_path, "api")
    procs += [api, WorkerProcess(settings, tmp_path, "worker")]
    await api.ready()
    load = Load([api.url], key, {"type": "demo.sleep", "params": {"seconds": 0.2}})

    async def restart() -> None:
        await asyncio.sleep(2)
        # a restart without persistence: the queue, the leases and every in-flight publish are gone
        await asyncio.to_thread(redis_server.stop)
        await asyncio.sleep(2)
        await asyncio.to_thread(redis_server.start)
        await asyncio.sleep(3)

    await run_load(load, restart)
    assert not load.bad, load.bad[:5]
    await all_finished(database, load.accepted, timeout=60)
    report = await account(database, load.accepted)
    assert_all_honoured(report)
    assert report["statuses"] == {"completed": len(load.accepted)}, report


async def test_chaos_every_202_and_every_webhook_is_honoured(
    database: str,
    namespace: str,
    redis_server: RedisServer,
    receiver: Receiver,
    procs: list[Proc],
    tmp_path: Path,
) -> None:
    settings = make_settings(database, namespace, redis_url=redis_server.url, webhook_allow_private=True)
    key = await new_key(database, "acme")
    apis = [ApiProcess(settings, tmp_path, f"api{i}") for i in range(2)]
    roles: dict[str, Callable[[str], Proc]] = {
        "worker": lambda name: WorkerProcess(settings, tmp_path, name),
        "dispatcher": lambda name: DispatcherProcess(settings, tmp_path, name),
    }
    live: dict[str, Proc] = {"api0": apis[0], "api1": apis[1]}
    live |= {f"worker{i}": roles["worker"](f"worker{i}") for i in range(2)}
    live["dispatcher0"] = roles["dispatcher"]("dispatcher0")
    procs += list(live.values())
    await asyncio.gather(*(a.ready() for a in apis))
    load = Load(
        [a.url for a in apis],
        key,
        {"type": "demo.sleep", "params": {"seconds": 0.3, "steps": 3}, "webhook_url": receiver.url + "/hook"},
        every_s=0.03,
    )
    rng = random.Random(7)
    kills: list[str] = []

    async def chaos() -> None:
        for round_ in range(12):
            await asyncio.sleep(rng.uniform(1.5, 3))
            name = rng.choice(sorted(live))
            victim = live[name]
            victim.proc.send_signal(signal.SIGKILL if round_ % 3 else signal.SIGTERM)
            await asyncio.to_thread(victim.proc.wait, 30)
            kills.append(name)
            if rng.random() < 0.3:  # and now and then, Redis too
                await asyncio.to_thread(redis_server.stop)
                await asyncio.to_thread(redis_server.start)
                kills.append("redis")
            if isinstance(victim, ApiProcess):
                # back on the same port: the load's clients keep their list of apis
                fresh: Proc = ApiProcess(settings, tmp_path, f"{name}-{round_}", port=victim.port)
            else:
                fresh = roles[name.rstrip("0123456789")](f"{name}-{round_}")
            procs.append(fresh)
            live[name] = fresh
        await asyncio.sleep(2)

    await run_load(load, chaos)
    assert not load.bad, load.bad[:5]
    # enough accepted jobs to mean something, however slow a busy machine makes the load
    assert len(load.accepted) > 50, load.statuses
    await all_finished(database, load.accepted, timeout=120)
    report = await account(database, load.accepted)
    assert_all_honoured(report)
    assert report["statuses"] == {"completed": len(load.accepted)}, (report, kills)

    # every owed webhook arrives, each under its one webhook-id
    pool = await asyncpg.connect(database)
    try:

        async def delivered() -> bool:
            n = await pool.fetchval("SELECT count(*) FROM deliveries WHERE status <> 'delivered'")
            return bool(n == 0)

        await eventually(delivered, timeout=90, interval=0.5, what="every delivery to be delivered")
        # a job whose 202 was lost with a killed api is stored and owed its webhook too, so the
        # accepted jobs are a subset of the jobs owed one
        owed = {
            signing.message_id(r["job_id"], r["seq"])
            for r in await pool.fetch("SELECT job_id, seq FROM deliveries")
        }
        accepted_owed = await pool.fetchval(
            "SELECT count(*) FROM deliveries WHERE job_id = ANY($1::uuid[])",
            [uuid.UUID(j) for j in load.accepted],
        )
    finally:
        await pool.close()
    assert accepted_owed == len(load.accepted)
    assert {r.webhook_id for r in receiver.at("/hook")} == owed
