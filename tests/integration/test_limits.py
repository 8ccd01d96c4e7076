"""Per-key request rate and open streams (429 + Retry-After), and the per-tenant running cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets

from jobwire.config import Settings
from jobwire.registry import Registry
from tests.conftest import Api, ClientFactory, eventually, make_settings, submit, wait_status
from workers.worker import WorkerService


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(database, namespace, max_streams_per_key=2)


@pytest.fixture
async def limited(settings: Settings, registry: Registry) -> AsyncIterator[Api]:
    server = Api(settings.model_copy(update={"rate_limit_per_s": 5, "rate_limit_burst": 5}), registry)
    await server.start()
    yield server
    await server.stop()


async def test_a_key_over_its_rate_gets_429_with_retry_after(
    limited: Api, make_client: ClientFactory
) -> None:
    busy = await make_client("acme")
    calm = await make_client("acme")
    busy.base_url = calm.base_url = httpx.URL(limited.url)
    answers = [(await busy.get("/v1/jobs")).status_code for _ in range(5)]
    assert answers == [200] * 5  # the burst
    r = await busy.get("/v1/jobs")
    assert r.status_code == 429
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert int(r.headers["Retry-After"]) >= 1
    assert "5 a second" in r.json()["detail"]
    # other keys are not affected, even of the same tenant
    assert (await calm.get("/v1/jobs")).status_code == 200
    await asyncio.sleep(1.1)  # 5 tokens a second refill
    assert (await busy.get("/v1/jobs")).status_code == 200


async def test_open_streams_per_key_are_capped(api: Api, make_client: ClientFactory) -> None:
    client = await make_client("acme")
    job = await submit(client, "test.block", {"seconds": 30})  # no worker: stays pending, streams stay open
    url = f"{api.url}/v1/jobs/{job['id']}/events"
    headers = dict(client.headers)
    async with httpx.AsyncClient(timeout=10, headers=headers) as http:
        first = await http.send(http.build_request("GET", url), stream=True)
        second = await http.send(http.build_request("GET", url), stream=True)
        assert first.status_code == second.status_code == 200
        third = await http.get(url)
        assert third.status_code == 429 and third.headers["Retry-After"]
        assert "2 streams open" in third.json()["detail"]
        ws_url = api.url.replace("http://", "ws://") + "/v1/ws"
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(ws_url, additional_headers=headers)
        assert refused.value.response.status_code == 429
        await first.aclose()

        async def reopened() -> bool:
            r = await http.send(http.build_request("GET", url), stream=True)
            ok = r.status_code == 200
            await r.aclose()
            return ok

        # the server notices the client left within a second or two and frees the slot
        await eventually(reopened, timeout=10, what="a slot to free up")
        await second.aclose()


@pytest.fixture
async def capped_worker(database: str, namespace: str) -> AsyncIterator[WorkerService]:
    service = WorkerService(make_settings(database, namespace, tenant_max_running=1, tenant_cap_retry_s=0.1))
    await service.start()
    yield service
    await service.stop(grace_s=0)


async def test_a_tenant_runs_at_most_its_cap_at_once(
    make_client: ClientFactory, capped_worker: WorkerService, registry: Registry
) -> None:
    acme = await make_client("acme")
    other = await make_client("globex")
    jobs = [await submit(acme, "demo.sleep", {"seconds": 0.4, "steps": 2}) for _ in range(3)]
    theirs = await submit(other, "demo.sleep", {"seconds": 0.4, "steps": 2})
    peak = 0
    others_ran_alongside = False

    async def all_done() -> bool:
        nonlocal peak, others_ran_alongside
        listed: list[dict[str, Any]] = (await acme.get("/v1/jobs")).json()["items"]
        running = sum(1 for j in listed if j["status"] == "running")
        peak = max(peak, running)
        if running and (await other.get(f"/v1/jobs/{theirs['id']}")).json()["status"] == "running":
            others_ran_alongside = True
        return all(j["status"] == "completed" for j in listed)

    await eventually(all_done, timeout=20, interval=0.02, what="acme's jobs to complete one at a time")
    assert peak == 1
    assert others_ran_alongside  # the cap is per tenant: globex was not held back by acme
    for job in jobs:
        assert (await wait_status(acme, job["id"], "completed"))["attempts"] == 1  # deferral spent none
