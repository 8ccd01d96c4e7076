"""Live events across processes and faults: several api and worker processes, a Redis restart
under open streams, and clients that vanish."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from jobwire import jobstore
from jobwire.apikeys import Principal
from jobwire.config import Settings
from jobwire.keys import Keys
from jobwire.redis_client import create_redis
from jobwire.registry import Registry
from service.hub import AUDIT_S, RESYNC, EventHub, Subscriber
from service.state import HUB
from tests.conftest import (
    ROOT,
    Api,
    eventually,
    free_port,
    http_ready,
    make_settings,
    new_key,
    submit,
    wait_status,
)
from tests.integration.test_faults import RedisServer, WorkerProcess, redis_server, running_worker, worker_env
from tests.integration.test_streams import assert_complete_sequence, read_sse

__all__ = ["redis_server"]  # the fixture, re-exported for pytest


class ApiProcess:
    def __init__(self, settings: Settings, log_dir: Path, name: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobwire", "api", "--port", str(self.port)],
            cwd=ROOT,
            env=worker_env(settings),
            stdout=(log_dir / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )

    async def ready(self) -> None:
        await http_ready(self.url, timeout=20)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.mark.slow
async def test_a_client_on_one_api_sees_a_job_run_by_any_worker(settings: Settings, tmp_path: Path) -> None:
    apis = [ApiProcess(settings, tmp_path, f"api{i}") for i in (1, 2)]
    workers = [WorkerProcess(settings, tmp_path, f"worker{i}") for i in (1, 2)]
    try:
        for api in apis:
            await api.ready()
        key = await new_key(settings.database_url, "acme")
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            httpx.AsyncClient(base_url=apis[0].url, headers=headers, timeout=30) as one,
            httpx.AsyncClient(base_url=apis[1].url, headers=headers, timeout=30) as two,
        ):
            jobs = [await submit(two, "demo.sleep", {"seconds": 0.8, "steps": 4}) for _ in range(4)]
            results = await asyncio.gather(*(read_sse(one, f"/v1/jobs/{j['id']}/events") for j in jobs))
            for _, events in results:
                assert_complete_sequence(events)
                assert events[-1]["type"] == "completed"
    finally:
        for api in apis:
            api.stop()
        for worker in workers:
            worker.stop()


async def test_streams_survive_a_redis_restart(
    database: str, namespace: str, registry: Registry, redis_server: RedisServer
) -> None:
    settings = make_settings(database, namespace, redis_url=redis_server.url)
    api = Api(settings, registry)
    await api.start()
    try:
        auth = {"Authorization": f"Bearer {await new_key(database, 'acme')}"}
        async with (
            httpx.AsyncClient(base_url=api.url, headers=auth, timeout=60) as client,
            running_worker(settings),
        ):
            job = await submit(client, "demo.sleep", {"seconds": 4, "steps": 16})
            await wait_status(client, job["id"], "running")

            async def follow() -> list[dict[str, Any]]:
                # like EventSource: reconnect with Last-Event-ID whenever the server closes the stream
                events: list[dict[str, Any]] = []
                while not events or events[-1]["type"] not in ("completed", "failed", "cancelled"):
                    headers = {"Last-Event-ID": events[-1]["id"]} if events else {}
                    try:
                        status, more = await read_sse(client, f"/v1/jobs/{job['id']}/events", headers=headers)
                    except httpx.TransportError:
                        await asyncio.sleep(0.2)
                        continue
                    if status == 204:
                        break
                    events += more
                return events

            followers = [asyncio.ensure_future(follow()) for _ in range(5)]
            await asyncio.sleep(1)
            redis_server.stop()
            await asyncio.sleep(1)
            redis_server.start()
            results = await asyncio.wait_for(asyncio.gather(*followers), 30)
        for events in results:
            assert_complete_sequence(events)
            assert events[-1]["type"] == "completed"
    finally:
        await api.stop()


async def test_a_silent_subscription_is_noticed_and_replaced(redis_server: RedisServer) -> None:
    """A Redis that stops answering without closing the connection (a host frozen or cut off: no
    reset ever arrives) is noticed by the hub's ping, which resubscribes and resyncs its streams."""
    hub = EventHub(redis_server.url, Keys("silent"), liveness_s=0.3)
    sub = Subscriber(Principal(key_id=1, tenant="acme", is_admin=False))
    task = asyncio.ensure_future(hub.run())
    try:
        with hub.subscription(sub, jobs=["job"]):
            await asyncio.wait_for(hub.connected.wait(), 5)
            assert await sub.get(0.1) is RESYNC  # the first subscription's own resync
            assert redis_server.proc is not None
            redis_server.proc.send_signal(signal.SIGSTOP)
            try:
                await eventually(lambda: _false(hub.connected.is_set()), timeout=5, what="the loss noticed")
                assert await sub.get(0.1) is RESYNC
            finally:
                redis_server.proc.send_signal(signal.SIGCONT)
            # subscribed again: live events flow (and the resync markers asked for re-reads)
            publisher = create_redis(redis_server.url)
            event = {"job_id": "job", "seq": 1, "type": "progress"}

            async def delivered() -> bool:
                await publisher.publish(
                    hub.keys.events_channel, orjson.dumps({"tenant": "acme", "event": event})
                )
                while (item := await sub.get(0.2)) is RESYNC:
                    pass
                return item is not None and item.event == event

            try:
                await eventually(delivered, timeout=10, what="a live event after the resubscription")
            finally:
                await publisher.aclose()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _false(value: bool) -> bool:
    return not value


async def test_a_vanished_client_is_forgotten_within_a_couple_of_seconds(
    api: Api, client: httpx.AsyncClient
) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 60})  # no worker: the stream stays open
    hub = api.runner.app[HUB] if api.runner else None
    assert hub is not None
    sock = socket.create_connection(("127.0.0.1", api.port))
    request = (
        f"GET /v1/jobs/{job['id']}/events HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {client.headers['Authorization']}\r\n\r\n"
    )
    sock.sendall(request.encode())
    await asyncio.sleep(0.3)
    assert hub.subscriber_count() == 1
    sock.close()  # no more reads, no write will fail for a while: the server must notice by itself

    async def forgotten() -> bool:
        return hub.subscriber_count() == 0

    await eventually(forgotten, timeout=3, what="the hub to drop the vanished client")


async def test_sigterm_ends_open_streams_so_clients_resume_elsewhere(
    settings: Settings, tmp_path: Path
) -> None:
    api = ApiProcess(settings, tmp_path, "api")
    try:
        await api.ready()
        key = await new_key(settings.database_url, "acme")
        async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}) as client:
            job = await submit(client, "demo.sleep", {"seconds": 60})  # no worker: it stays pending
            follower = asyncio.ensure_future(read_sse(client, f"/v1/jobs/{job['id']}/events"))
            await asyncio.sleep(0.5)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            api.proc.send_signal(signal.SIGTERM)
            status, events = await asyncio.wait_for(follower, 5)
            assert loop.time() - t0 < 3  # not held until the shutdown timeout
            assert status == 200 and [e["type"] for e in events] == ["created"]
            assert await asyncio.to_thread(api.proc.wait, 10) == 0
    finally:
        api.stop()


async def test_an_event_committed_but_never_published_still_reaches_the_stream(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A worker that reaches PostgreSQL but not Redis commits its events and loses their publish;
    the hub's audit notices the followed job is behind and its streams re-read it."""
    job = await submit(client, "demo.sleep", {"seconds": 0})
    stream = asyncio.ensure_future(read_sse(client, f"/v1/jobs/{job['id']}/events"))
    await asyncio.sleep(0.5)  # the stream is open, waiting for live events
    job_id = uuid.UUID(job["id"])
    # what a worker cut off from Redis writes: no publish follows these
    started = await jobstore.start_pending(pool, job_id)
    assert started is not None
    assert await jobstore.complete(pool, job_id, started["runs"], '{"by": "a cut-off worker"}') is not None
    status, events = await asyncio.wait_for(stream, timeout=3 * AUDIT_S + 2)
    assert status == 200
    assert_complete_sequence(events)
    assert [e["type"] for e in events] == ["created", "started", "completed"]
