"""Webhook URLs through the api: every URL field stores one canonical form or answers 422, no stored
value can keep a job from finishing, and a slow DNS name cannot stall submissions."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import asyncpg
import httpx
import pytest

from jobwire.config import Settings
from jobwire.registry import Registry
from jobwire.webhooks import ssrf
from tests.conftest import QUICK_WEBHOOKS, Api, ClientFactory, eventually, make_settings, submit, wait_status
from tests.receiver import Receiver
from workers.dispatcher import Dispatcher
from workers.worker import WorkerService

PROBLEM = "application/problem+json"


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(database, namespace, **QUICK_WEBHOOKS)


async def _url_fields(client: httpx.AsyncClient, url: str) -> list[tuple[str, httpx.Response]]:
    """`url` sent in every URL field the api accepts: (the field, the answer)."""
    endpoint = (await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/seed"})).json()
    return [
        ("webhook_url", await client.post("/v1/jobs", json={"type": "test.block", "webhook_url": url})),
        ("url", await client.post("/v1/webhooks", json={"url": url})),
        ("url", await client.patch(f"/v1/webhooks/{endpoint['id']}", json={"url": url})),
    ]


async def test_every_url_field_stores_the_canonical_form(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    port = receiver.port
    for given, stored in [
        (f"HTTP://127.0.0.1:{port}/Hook", f"http://127.0.0.1:{port}/Hook"),
        (f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/"),
        (f"http://127.0.0.1:{port}/a/../b?q=é", f"http://127.0.0.1:{port}/b?q=%C3%A9"),
        ("http://[0:0::1]:80/x", "http://[::1]/x"),
    ]:
        for field, r in await _url_fields(client, given):
            assert r.status_code in (200, 201, 202), (given, r.text)
            body = r.json()
            assert body[field] == stored, (given, body)
            path = f"/v1/jobs/{body['id']}" if field == "webhook_url" else f"/v1/webhooks/{body['id']}"
            assert (await client.get(path)).json()[field] == stored  # what was stored


async def test_urls_that_are_not_canonical_are_refused_in_every_url_field(client: httpx.AsyncClient) -> None:
    for bad in [
        " https://127.0.0.1/hook",  # the audit's: the job never finished
        "https://127.0.0.1/hook\n",
        "https://user:secret@127.0.0.1/hook",
        "https://127.0.0.1/hook#frag",
        "https://2130706433/hook",
        "https://127.0.0.1:99999/",
    ]:
        for field, r in await _url_fields(client, bad):
            assert r.status_code == 422, (bad, r.text)
            assert r.headers["Content-Type"].startswith(PROBLEM)
            assert r.json()["errors"][0]["loc"] == ["body", field], r.text


async def test_a_job_whose_stored_url_is_corrupt_still_finishes(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, receiver: Receiver
) -> None:
    # values written around the api (by hand, or by an older version): none has an origin the
    # outbox can derive, which used to fail every terminal transition of the job
    corrupt = [" https://example.com/hook", "not a url", "", "http://[::1", "HTTPS://\u200b/x"]
    jobs = [await submit(client, "test.block", {"seconds": 0}) for _ in corrupt]
    for job, url in zip(jobs, corrupt, strict=True):
        await pool.execute("UPDATE jobs SET webhook_url = $2 WHERE id = $1", uuid.UUID(job["id"]), url)
    worker = WorkerService(settings)
    await worker.start()
    dispatcher = Dispatcher(settings)
    await dispatcher.start()
    try:
        for job in jobs:
            assert (await wait_status(client, job["id"], "completed", timeout=20))["result"] == "unblocked"

        async def settled(job_id: str) -> dict[str, Any] | None:
            (d,) = (await client.get(f"/v1/jobs/{job_id}/deliveries")).json()["items"]
            return d if d["status"] != "pending" else None

        for job, url in zip(jobs, corrupt, strict=True):
            d = await eventually(partial(settled, job["id"]), timeout=20, what="the delivery settled")
            assert d["url"] == url and d["status"] == "failed" and d["last_error"], d
    finally:
        await dispatcher.stop()
        await worker.stop(grace_s=0)
    assert receiver.requests == []


# ---- DNS at submission -----------------------------------------------------------------------


@pytest.fixture
async def hanging_dns(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[threading.Event]:
    """Names under .slow.test never answer (until the test ends); fast.test is a public address."""
    real = socket.getaddrinfo
    release = threading.Event()

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if isinstance(host, str) and host.endswith(".slow.test"):
            release.wait(60)
            raise socket.gaierror(socket.EAI_AGAIN, "timed out")
        if host == "fast.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port or 0))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(ssrf, "RESOLVE_TIMEOUT_S", 0.5, raising=False)
    yield release
    release.set()


@pytest.fixture
async def strict_client(
    settings: Settings, registry: Registry, make_client: ClientFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an api that checks where webhook URLs resolve."""
    strict = Api(settings.model_copy(update={"webhook_allow_private": False}), registry)
    await strict.start()
    key_client = await make_client("acme")
    async with httpx.AsyncClient(base_url=strict.url, headers=key_client.headers, timeout=30) as c:
        yield c
    await strict.stop()


async def test_a_name_that_never_resolves_does_not_stall_submissions(
    hanging_dns: threading.Event, strict_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = strict_client

    async def post(url: str) -> tuple[httpx.Response, float]:
        t0 = time.monotonic()
        r = await client.post("/v1/jobs", json={"type": "test.block", "webhook_url": url})
        return r, time.monotonic() - t0

    async with asyncio.timeout(15):  # before the fix, the slow ones never answered
        answers = await asyncio.gather(
            *(post(f"https://n{i}.slow.test/hook") for i in range(12)), post("https://fast.test/hook")
        )
    *slow, (fast, fast_s) = answers
    assert fast.status_code == 202, fast.text
    assert fast_s < 5, "a submission with a name that resolves waited behind the slow ones"
    for r, took in slow:
        assert r.status_code == 503 and r.headers["Retry-After"], r.text
        assert r.headers["Content-Type"].startswith(PROBLEM)
        assert took < 5

    # names that hang hold a lookup thread each until the system resolver gives up: past the
    # bound, a submission is told at once instead of queueing behind them
    monkeypatch.setattr(ssrf, "_lookup_slots", threading.BoundedSemaphore(1))
    first, _ = await post("https://again.slow.test/hook")
    assert first.status_code == 503
    second, took = await post("https://more.slow.test/hook")
    assert second.status_code == 503 and "too many" in second.json()["detail"] and took < 0.5
