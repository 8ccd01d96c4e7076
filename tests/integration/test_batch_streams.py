"""A batch's live stream (SSE and WebSocket) against a real api and worker: progress coalesced, one
terminal event with the final counts, Last-Event-ID, 204 after the end, tenant isolation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from jobwire.config import Settings
from service import schemas
from tests.conftest import Api, ClientFactory, make_settings
from tests.integration.test_streams import read_sse, recv, recv_until, ws_url
from workers.worker import WorkerService


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(database, namespace, batch_settle_s=0.05)


async def submit_batch(client: httpx.AsyncClient, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    r = await client.post("/v1/batches", json={"jobs": jobs})
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


SLEEPS = [{"type": "demo.sleep", "params": {"seconds": 0.6, "steps": 3}} for _ in range(12)]


async def test_the_batch_stream_shows_progress_then_one_terminal_event(
    client: httpx.AsyncClient, worker: WorkerService
) -> None:
    jobs = [*SLEEPS, {"type": "test.say", "params": {"text": "Nope", "fail": True}}]
    batch = await submit_batch(client, jobs)
    status, events = await read_sse(client, f"/v1/batches/{batch['id']}/events")
    assert status == 200
    for e in events:
        schemas.BatchEvent.model_validate(e)
    assert [e["type"] for e in events[:-1]] == ["progress"] * (len(events) - 1)
    assert len(events) >= 3  # the first state, something in between, the end
    last = events[-1]
    assert last["type"] == "completed" and last["status"] == "completed"
    assert last["counts"]["completed"] == 12 and last["counts"]["failed"] == 1
    # the mean of the jobs' progress: the failed one keeps what it reached
    listed = (await client.get("/v1/jobs", params={"batch_id": batch["id"], "limit": 50})).json()["items"]
    assert len(listed) == 13
    assert last["progress"] == round(sum(j["progress"] for j in listed) / 13, 2) < 100
    # coalesced, in order: ids (versions) grow, and progress never goes back
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(set(ids))
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress)
    # what the stream ended with is what the batch says
    assert (await client.get(f"/v1/batches/{batch['id']}")).json()["counts"] == last["counts"]
    # a reconnect with the terminal event's id: 204; with an earlier one: the terminal event
    status, _ = await read_sse(
        client, f"/v1/batches/{batch['id']}/events", headers={"Last-Event-ID": events[-1]["id"]}
    )
    assert status == 204
    status, again = await read_sse(
        client, f"/v1/batches/{batch['id']}/events", headers={"Last-Event-ID": events[0]["id"]}
    )
    assert status == 200 and [e["type"] for e in again] == ["completed"]
    assert again[0]["id"] == last["id"]


async def test_a_reconnect_with_the_current_version_waits_for_the_next_change(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    batch = await submit_batch(client, [{"type": "demo.sleep", "params": {"seconds": 0.2}}])
    _, first = await read_sse(client, f"/v1/batches/{batch['id']}/events", limit=1)
    assert first[0]["type"] == "progress" and first[0]["counts"]["pending"] == 1

    async def rest() -> list[dict[str, Any]]:
        _, events = await read_sse(
            client, f"/v1/batches/{batch['id']}/events", headers={"Last-Event-ID": first[0]["id"]}
        )
        return events

    reader = asyncio.ensure_future(rest())
    await asyncio.sleep(0.5)
    assert not reader.done()  # nothing new yet: no repeat of the state the client has
    worker = WorkerService(settings)
    await worker.start()
    try:
        events = await asyncio.wait_for(reader, 20)
    finally:
        await worker.stop(grace_s=0)
    assert events[-1]["type"] == "completed"
    assert all(e["id"] != first[0]["id"] for e in events)


async def test_the_batch_stream_is_tenant_scoped_and_opens_with_its_token(
    api: Api, make_client: ClientFactory, worker: WorkerService
) -> None:
    acme, umbrella = await make_client("acme"), await make_client("umbrella")
    batch = await submit_batch(acme, [{"type": "demo.sleep", "params": {"seconds": 0.2}}])
    status, _ = await read_sse(umbrella, f"/v1/batches/{batch['id']}/events")
    assert status == 404
    # the stream token alone opens it (a browser's EventSource), and no other batch
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as anon:
        status, events = await read_sse(anon, batch["events_url"])
        assert status == 200 and events[-1]["type"] == "completed"
        other = await submit_batch(acme, [{"type": "demo.sleep"}])
        token = batch["events_url"].split("token=")[1]
        status, _ = await read_sse(anon, f"/v1/batches/{other['id']}/events?token={token}")
        assert status == 404
    # another tenant's batch over the WebSocket: refused, and nothing of it arrives
    async with websockets.connect(
        ws_url(api.url), additional_headers={"Authorization": umbrella.headers["Authorization"]}
    ) as ws:
        await ws.send(json.dumps({"op": "subscribe", "batches": [other["id"]]}))
        assert (await recv(ws))["op"] == "error"
        await ws.send(json.dumps({"op": "ping"}))
        assert await recv(ws) == {"op": "pong"}


async def test_the_websocket_follows_batches(
    api: Api, client: httpx.AsyncClient, worker: WorkerService
) -> None:
    batch = await submit_batch(client, SLEEPS)
    async with websockets.connect(
        ws_url(api.url), additional_headers={"Authorization": client.headers["Authorization"]}
    ) as ws:
        await ws.send(json.dumps({"op": "subscribe", "batches": [batch["id"]]}))
        assert await recv(ws) == {"op": "subscribed", "batches": [batch["id"]]}
        messages = await recv_until(ws, lambda m: m.get("event", {}).get("type") == "completed")
    events = [m["event"] for m in messages if m["op"] == "batch"]
    assert all(e["batch_id"] == batch["id"] for e in events)
    assert events[0]["type"] == "progress" and len(events) >= 2
    assert events[-1]["counts"]["completed"] == 12 and events[-1]["progress"] == 100
