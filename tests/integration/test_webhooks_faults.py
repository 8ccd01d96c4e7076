"""The dispatcher as a real process: SIGKILLed mid-delivery, two side by side, and SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiohttp import web

from jobwire.config import Settings
from jobwire.webhooks import signing
from tests.conftest import ROOT, eventually, make_settings
from tests.integration.test_faults import worker_env
from tests.receiver import Receiver, sleep_then

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(database, namespace, webhook_allow_private=True)


class DispatcherProcess:
    def __init__(self, settings: Settings, log_dir: Path, name: str, **env: str) -> None:
        self.log_path = log_dir / f"{name}.log"
        quick = {
            "JOBWIRE_WEBHOOK_ALLOW_PRIVATE": "true",
            "JOBWIRE_WEBHOOK_TIMEOUT_S": "2",
            "JOBWIRE_WEBHOOK_LEASE_S": "3",
            "JOBWIRE_WEBHOOK_BACKOFF_BASE_S": "0.2",
            "JOBWIRE_WEBHOOK_POLL_S": "0.5",
        }
        env = worker_env(settings, **{**quick, **env})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobwire", "dispatcher"],
            cwd=ROOT,
            env=env,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def dispatchers() -> Iterator[list[DispatcherProcess]]:
    started: list[DispatcherProcess] = []
    yield started
    for d in started:
        d.stop()


async def owe_deliveries(client: httpx.AsyncClient, url: str, n: int) -> list[str]:
    """n jobs, each owing one delivery (job.cancelled) to `url`; returns the expected webhook-ids."""
    sem = asyncio.Semaphore(16)

    async def one() -> str:
        async with sem:
            r = await client.post("/v1/jobs", json={"type": "test.block", "params": {}, "webhook_url": url})
            assert r.status_code == 202, r.text
            job = r.json()
            r = await client.post(f"/v1/jobs/{job['id']}/cancel")
            assert r.status_code == 200, r.text
            # created is event 1, cancelled event 2: the delivery's webhook-id
            return signing.message_id(job["id"], 2)

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def statuses(pool: asyncpg.Pool) -> Counter[str]:
    rows = await pool.fetch("SELECT status, count(*) AS n FROM deliveries GROUP BY status")
    return Counter({r["status"]: r["n"] for r in rows})


async def all_delivered(pool: asyncpg.Pool, n: int, timeout: float) -> None:
    async def check() -> bool:
        return (await statuses(pool))["delivered"] == n

    await eventually(check, timeout=timeout, interval=0.2, what=f"{n} deliveries to be delivered")


def received_ids(receiver: Receiver, path: str) -> Counter[str]:
    return Counter(r.webhook_id for r in receiver.at(path))


async def test_a_sigkilled_dispatcher_loses_nothing_and_duplicates_keep_their_webhook_id(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    receiver: Receiver,
    settings: Settings,
    dispatchers: list[DispatcherProcess],
    tmp_path: Path,
) -> None:
    receiver.default = sleep_then(0.5)  # every answer takes half a second: many in flight at once
    expected = await owe_deliveries(client, receiver.url + "/hook", 60)
    first = DispatcherProcess(settings, tmp_path, "first")
    dispatchers.append(first)
    await eventually(lambda: _at_least(receiver, 10), timeout=20, what="deliveries in flight")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    assert (await statuses(pool))["pending"] > 0  # the kill caught deliveries unfinished

    second = DispatcherProcess(settings, tmp_path, "second")
    dispatchers.append(second)
    await all_delivered(pool, 60, timeout=45)
    got = received_ids(receiver, "/hook")
    assert set(got) == set(expected)  # every delivery arrived...
    # ...and a duplicate, if any, is a whole repeat under the same webhook-id
    assert sum(got.values()) >= 60
    bodies: dict[str, set[bytes]] = {}
    for r in receiver.at("/hook"):
        bodies.setdefault(r.webhook_id, set()).add(r.body)
    assert all(len(b) == 1 for b in bodies.values())


async def _at_least(receiver: Receiver, n: int) -> bool:
    return len(receiver.requests) >= n


async def test_two_dispatchers_share_the_work_without_sending_twice(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    receiver: Receiver,
    settings: Settings,
    dispatchers: list[DispatcherProcess],
    tmp_path: Path,
) -> None:
    """Both dispatchers lease from the same table, neither leases what the other holds, and every
    delivery goes out once under its own webhook-id. How the work splits is up to timing (the first
    dispatcher up may well drain it all), so the receiver holds every answer until both have
    attempts in flight: each sends at most `cap` at once to one endpoint, so more than `cap` at once
    means both are sending."""
    cap = 4
    both_sending = asyncio.Event()

    async def held_until_both_send(request: web.Request) -> web.StreamResponse:
        if receiver.max_in_flight["/hook"] > cap:
            both_sending.set()
        await both_sending.wait()
        return web.Response(status=200)

    receiver.default = held_until_both_send
    expected = await owe_deliveries(client, receiver.url + "/hook", 300)
    # the held attempts must not time out while the second process starts on a loaded machine
    env = {
        "JOBWIRE_WEBHOOK_ENDPOINT_CONCURRENCY": str(cap),
        "JOBWIRE_WEBHOOK_TIMEOUT_S": "30",
        "JOBWIRE_WEBHOOK_LEASE_S": "40",
        # a delivered attempt is logged at debug
        "JOBWIRE_LOG_LEVEL": "debug",
    }
    dispatchers.extend(DispatcherProcess(settings, tmp_path, name, **env) for name in ("a", "b"))
    await asyncio.wait_for(both_sending.wait(), 25)
    await all_delivered(pool, 300, timeout=45)
    got = received_ids(receiver, "/hook")
    assert set(got) == set(expected)
    duplicates = sum(got.values()) - len(got)
    assert duplicates == 0, f"{duplicates} duplicates without any fault"
    assert await pool.fetchval("SELECT count(*) FROM delivery_attempts") == 300
    for d in dispatchers:
        assert d.log_path.read_text().count('"delivery attempt"') > 0, d.log_path.name


async def test_sigterm_finishes_the_attempts_in_flight(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    receiver: Receiver,
    settings: Settings,
    dispatchers: list[DispatcherProcess],
    tmp_path: Path,
) -> None:
    receiver.default = sleep_then(1.0)
    await owe_deliveries(client, receiver.url + "/hook", 5)
    d = DispatcherProcess(settings, tmp_path, "d")
    dispatchers.append(d)
    await eventually(lambda: _at_least(receiver, 5), timeout=20, what="all five in flight")
    d.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(d.proc.wait, 10) == 0
    # the answers came back after the signal and were recorded: nothing left leased or pending
    counts = await statuses(pool)
    assert counts == Counter({"delivered": 5}), counts
    assert await pool.fetchval("SELECT count(*) FROM deliveries WHERE lease IS NOT NULL") == 0
    log = d.log_path.read_text()
    assert "dispatcher stopped" in log, log[-2000:]
