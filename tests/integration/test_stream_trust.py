"""Stream trust: no event of another tenant on any path, WebSocket ops within the key's budget,
streams and stream tokens of a revoked key end, backlogs read in pages, long-polls counted."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse

from jobwire import apikeys, jobstore
from jobwire.config import Settings
from jobwire.registry import Registry
from service import revocation
from tests.conftest import Api, ClientFactory, submit, wait_status
from workers.worker import WorkerService


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/v1/ws"


def auth_of(client: httpx.AsyncClient) -> dict[str, str]:
    return {"Authorization": str(client.headers["Authorization"])}


def key_of(client: httpx.AsyncClient) -> str:
    return str(client.headers["Authorization"]).removeprefix("Bearer ")


async def test_websocket_never_leaks_a_running_job_of_another_tenant(
    api: Api, make_client: ClientFactory, worker: WorkerService
) -> None:
    owner = await make_client("acme")
    intruder = await make_client("globex")
    job = await submit(owner, "demo.sleep", {"seconds": 4, "steps": 80})  # an event every 50 ms
    await wait_status(owner, job["id"], "running")
    leaked: list[dict[str, Any]] = []
    errors = 0
    async with websockets.connect(ws_url(api.url), additional_headers=auth_of(intruder)) as ws:

        async def read() -> None:
            nonlocal errors
            async for raw in ws:
                message = json.loads(raw)
                if message["op"] == "event":
                    leaked.append(message)
                elif message["op"] == "error":
                    errors += 1

        reader = asyncio.create_task(read())
        frame = json.dumps({"op": "subscribe", "jobs": [job["id"]], "since": {job["id"]: 0}})
        # many subscribes in flight at once while the job runs: each one opens the window in which
        # the old code had the job registered before it checked the tenant
        while (await owner.get(f"/v1/jobs/{job['id']}")).json()["status"] == "running":
            await asyncio.gather(*(ws.send(frame) for _ in range(20)))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        reader.cancel()
    assert errors > 100  # every subscribe was answered "no job"
    assert leaked == []


@pytest.fixture(autouse=True)
def quick_revocation_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    # autouse: set before any api of the test starts its revocation loop
    monkeypatch.setattr(revocation, "CHECK_INTERVAL_S", 0.5)


class ReadCounter:
    """Counts the job and event reads the api makes, and the most rows one event read returned."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads = 0
        self.largest = 0
        get_jobs, events_after_many = jobstore.get_jobs, jobstore.events_after_many

        async def counted_get_jobs(*args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            return await get_jobs(*args, **kwargs)

        async def counted_events(*args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            rows = await events_after_many(*args, **kwargs)
            self.largest = max(self.largest, len(rows))
            return rows

        monkeypatch.setattr(jobstore, "get_jobs", counted_get_jobs)
        monkeypatch.setattr(jobstore, "events_after_many", counted_events)


async def long_history(pool: asyncpg.Pool, job_id: str, events: int) -> None:
    """Give a (pending) job `events` events in all, as a long run of progress reports would."""
    await pool.execute(
        "INSERT INTO job_events (job_id, seq, type, status, progress, message, at)"
        " SELECT $1, g, 'progress', 'pending', 0, 'tick ' || g, now() + g * interval '1 ms'"
        " FROM generate_series(2, $2) AS g",
        UUID(job_id),
        events,
    )
    await pool.execute("UPDATE jobs SET last_seq = $2 WHERE id = $1", UUID(job_id), events)


async def test_websocket_ops_are_charged_to_the_key_and_an_abusive_socket_is_closed(
    settings: Settings, registry: Registry, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    limited = Api(settings.model_copy(update={"rate_limit_per_s": 20, "rate_limit_burst": 20}), registry)
    await limited.start()
    try:
        client = await make_client("acme")
        client.base_url = httpx.URL(limited.url)
        job = await submit(client, "test.block")
        reads = ReadCounter(monkeypatch)
        refused = 0
        started = time.monotonic()
        subscribe = json.dumps({"op": "subscribe", "jobs": [job["id"]], "since": {job["id"]: 0}})
        unsubscribe = json.dumps({"op": "unsubscribe", "jobs": [job["id"]]})
        async with websockets.connect(ws_url(limited.url), additional_headers=auth_of(client)) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                for _ in range(10_000):
                    await ws.send(subscribe)
                    await ws.send(unsubscribe)
                    while True:  # drain what has arrived, without waiting for answers
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 0.001)
                        except TimeoutError:
                            break
                        message = json.loads(raw)
                        if message["op"] == "error":
                            assert "too many requests" in message["detail"]
                            refused += 1
                await ws.recv()
        elapsed = time.monotonic() - started
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert "rate limit" in closed.value.rcvd.reason
        assert refused >= 1
        # one state read and one event page per admitted subscribe, and the budget admits at most
        # the burst plus the refill
        assert reads.reads <= 2 * (20 + 20 * elapsed) + 2, (reads.reads, elapsed)
    finally:
        await limited.stop()


async def test_a_subscribe_frame_names_at_most_100_jobs(api: Api, client: httpx.AsyncClient) -> None:
    frame = {"op": "subscribe", "jobs": [str(uuid4()) for _ in range(101)]}
    async with websockets.connect(ws_url(api.url), additional_headers=auth_of(client)) as ws:
        await ws.send(json.dumps(frame))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert answer["op"] == "error" and "at most 100 jobs" in answer["detail"]


async def test_long_histories_are_replayed_in_pages(
    api: Api, client: httpx.AsyncClient, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await submit(client, "test.block")
    total = jobstore.EVENT_PAGE * 2 + 7
    await long_history(pool, job["id"], total)
    reads = ReadCounter(monkeypatch)
    async with aconnect_sse(client, "GET", f"/v1/jobs/{job['id']}/events") as source:
        seqs: list[int] = []
        async for sse in source.aiter_sse():
            if sse.data:
                seqs.append(json.loads(sse.data)["seq"])
                if len(seqs) == total:
                    break
    assert seqs == list(range(1, total + 1))
    async with websockets.connect(ws_url(api.url), additional_headers=auth_of(client)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "jobs": [job["id"]], "since": {job["id"]: 0}}))
        replayed: list[int] = []
        while len(replayed) < total:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["op"] == "event":
                replayed.append(message["event"]["seq"])
    assert replayed == list(range(1, total + 1))
    assert 0 < reads.largest <= jobstore.EVENT_PAGE


async def test_long_polls_hold_a_stream_slot(
    settings: Settings, registry: Registry, make_client: ClientFactory
) -> None:
    capped = Api(settings.model_copy(update={"max_streams_per_key": 1}), registry)
    await capped.start()
    try:
        client = await make_client("acme")
        client.base_url = httpx.URL(capped.url)
        job = await submit(client, "test.block")
        tag = (await client.get(f"/v1/jobs/{job['id']}")).headers["ETag"]
        poll = f"/v1/jobs/{job['id']}?wait=3"
        held = asyncio.create_task(client.get(poll, headers={"If-None-Match": tag}))
        await asyncio.sleep(0.5)  # the first poll is held
        second = await client.get(poll, headers={"If-None-Match": tag})
        assert second.status_code == 429 and second.headers["Retry-After"]
        assert second.json()["type"].endswith("too-many-streams")
        assert (await held).status_code == 304  # the held one ends as before, and frees its slot
        # a submission's Prefer: wait at the cap is answered at once, not refused: the job exists
        url = f"{capped.url}/v1/jobs/{job['id']}/events"
        async with httpx.AsyncClient(headers=dict(client.headers), timeout=30) as other:
            stream = await other.send(other.build_request("GET", url), stream=True)
            assert stream.status_code == 200
            t0 = time.monotonic()
            r = await client.post("/v1/jobs", json={"type": "test.block"}, headers={"Prefer": "wait=30"})
            assert r.status_code == 202 and "Preference-Applied" not in r.headers
            assert time.monotonic() - t0 < 10
            await stream.aclose()
    finally:
        await capped.stop()


async def test_each_stream_token_has_its_own_stream_bucket(
    settings: Settings, registry: Registry, make_client: ClientFactory
) -> None:
    capped = Api(settings.model_copy(update={"max_streams_per_key": 1}), registry)
    await capped.start()
    try:
        client = await make_client("acme")
        client.base_url = httpx.URL(capped.url)
        jobs = [await submit(client, "test.block") for _ in range(2)]
        async with httpx.AsyncClient(base_url=capped.url, timeout=10) as browser:
            first = await browser.send(browser.build_request("GET", jobs[0]["events_url"]), stream=True)
            second = await browser.send(browser.build_request("GET", jobs[1]["events_url"]), stream=True)
            again = await browser.get(jobs[0]["events_url"])
            assert (first.status_code, second.status_code, again.status_code) == (200, 200, 429)
            await first.aclose()
            await second.aclose()
    finally:
        await capped.stop()


async def test_revoking_a_key_ends_its_streams_on_every_api_and_its_tokens(
    api: Api, settings: Settings, registry: Registry, make_client: ClientFactory, pool: asyncpg.Pool
) -> None:
    other_api = Api(settings, registry)
    await other_api.start()
    try:
        client = await make_client("acme")
        job = await submit(client, "test.block")  # no worker: pending, so its streams stay open
        token_url = job["events_url"]
        async with httpx.AsyncClient(base_url=other_api.url, timeout=30) as browser:
            # before the revocation every way in works
            assert (await client.get(f"/v1/jobs/{job['id']}")).status_code == 200

            async def follow(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> int:
                async with aconnect_sse(http, "GET", url, headers=headers) as source:
                    assert source.response.status_code == 200
                    return len([sse async for sse in source.aiter_sse() if sse.data])

            sse_key = asyncio.create_task(follow(client, f"/v1/jobs/{job['id']}/events", {}))
            sse_token = asyncio.create_task(follow(browser, token_url, {}))
            ws = await websockets.connect(ws_url(other_api.url), additional_headers=auth_of(client))
            await ws.send(json.dumps({"op": "subscribe", "all": True}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["op"] == "subscribed"
            await asyncio.sleep(0.5)
            assert not sse_key.done() and not sse_token.done()

            async with pool.acquire() as conn:
                assert await apikeys.revoke_key(conn, key_of(client)) is not None

            # well within the key cache's life (30 s), on both apis
            assert await asyncio.wait_for(sse_key, 20) >= 1
            assert await asyncio.wait_for(sse_token, 20) >= 1
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(20):
                    while True:
                        await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            assert "revoked" in closed.value.rcvd.reason
            # the token minted before the revocation, on either api, and the key itself: 401
            for base in (api.url, other_api.url):
                r = await browser.get(base + token_url)
                assert r.status_code == 401, (base, r.text)
                r = await browser.get(f"{base}/v1/jobs/{job['id']}", headers=auth_of(client))
                assert r.status_code == 401, (base, r.text)
    finally:
        await other_api.stop()
