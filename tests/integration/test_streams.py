"""Live events over SSE and WebSocket, against a real server, real workers and real clients."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import orjson
import pytest
import websockets
from httpx_sse import aconnect_sse

from jobwire.keys import Keys
from jobwire.redis_client import create_redis
from service import metrics
from service.schemas import Event
from tests.conftest import Api, ClientFactory, make_settings, new_key, submit, wait_status
from workers.worker import WorkerService

TERMINAL = {"completed", "failed", "cancelled"}


async def read_sse(
    client: httpx.AsyncClient, path: str, *, headers: dict[str, str] | None = None, limit: int | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """(status, events) of one SSE connection; stops after `limit` events when given."""
    events: list[dict[str, Any]] = []
    async with aconnect_sse(client, "GET", path, headers=headers or {}) as source:
        if source.response.status_code != 200:
            return source.response.status_code, events
        assert source.response.headers["content-type"].startswith("text/event-stream")
        assert source.response.headers["cache-control"] == "no-cache"
        assert source.response.headers["x-accel-buffering"] == "no"
        async for sse in source.aiter_sse():
            if not sse.data:
                continue  # the `retry:` block: browsers dispatch no event for it either
            data = json.loads(sse.data)
            assert sse.event == data["type"]
            events.append({"id": sse.id, **data})
            if limit is not None and len(events) >= limit:
                break
    return 200, events


def assert_complete_sequence(events: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "created" and events[-1]["type"] in TERMINAL


async def test_sse_streams_the_whole_job_then_ends(client: httpx.AsyncClient, worker: WorkerService) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 0.5, "steps": 5})
    status, events = await read_sse(client, f"/v1/jobs/{job['id']}/events")
    assert status == 200
    assert_complete_sequence(events)
    assert [e["id"] for e in events] == [str(e["seq"]) for e in events]
    assert [e["type"] for e in events][:2] == ["created", "started"]
    assert events[-1]["type"] == "completed" and events[-1]["result"] == {"slept": 0.5, "steps": 5}
    assert events[-1]["progress"] == 100.0
    assert all(e["job_id"] == job["id"] and e["at"].endswith("Z") for e in events)
    for e in events:
        Event.model_validate({k: v for k, v in e.items() if k != "id"})  # the documented shape
    # a stream opened after the end replays everything and ends
    status, replay = await read_sse(client, f"/v1/jobs/{job['id']}/events")
    assert [e["seq"] for e in replay] == [e["seq"] for e in events]
    # a reconnect that already has the terminal event: 204, so EventSource stops
    r = await client.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": events[-1]["id"]})
    assert r.status_code == 204


async def test_sse_reconnect_with_last_event_id_gets_exactly_the_rest(
    client: httpx.AsyncClient, worker: WorkerService
) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 1.2, "steps": 6})
    _, first = await read_sse(client, f"/v1/jobs/{job['id']}/events", limit=3)
    assert [e["seq"] for e in first] == [1, 2, 3]
    _, rest = await read_sse(
        client, f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": first[-1]["id"]}
    )
    assert_complete_sequence(first + rest)
    # the query parameter works the same (for clients that cannot set the header)
    _, tail = await read_sse(client, f"/v1/jobs/{job['id']}/events?last_event_id={rest[-3]['seq']}")
    assert [e["seq"] for e in tail] == [rest[-2]["seq"], rest[-1]["seq"]]


async def test_sse_accepts_the_stream_token_and_nothing_else_without_a_key(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, worker: WorkerService
) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 0})
    other = await submit(client, "demo.sleep", {"seconds": 0})
    await wait_status(client, job["id"], "completed")
    status, events = await read_sse(anon, job["events_url"])
    assert status == 200 and events[-1]["type"] == "completed"
    token = job["events_url"].split("token=")[1]
    # the token opens its own job's stream only
    assert (await anon.get(f"/v1/jobs/{other['id']}/events?token={token}")).status_code == 404
    assert (await anon.get(f"/v1/jobs/{job['id']}?token={token}")).status_code == 401
    assert (await anon.get(f"/v1/jobs/{job['id']}/events?token=forged.token")).status_code == 401
    assert (await anon.get(f"/v1/jobs/{job['id']}/events")).status_code == 401


async def test_sse_is_tenant_scoped(make_client: ClientFactory) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    job = await submit(alice, "demo.sleep", {})
    assert (await bob.get(f"/v1/jobs/{job['id']}/events")).status_code == 404
    assert (await bob.get(f"/v1/events?jobs={job['id']}")).status_code == 404


async def test_one_stream_follows_many_jobs_and_resumes_all_of_them(
    client: httpx.AsyncClient, worker: WorkerService
) -> None:
    jobs = [await submit(client, "demo.sleep", {"seconds": 0.6, "steps": 3}) for _ in range(3)]
    path = "/v1/events?jobs=" + ",".join(j["id"] for j in jobs)
    _, first = await read_sse(client, path, limit=5)
    _, rest = await read_sse(client, path, headers={"Last-Event-ID": first[-1]["id"]})
    by_job: dict[str, list[dict[str, Any]]] = {}
    for event in first + rest:
        by_job.setdefault(event["job_id"], []).append(event)
    assert set(by_job) == {j["id"] for j in jobs}
    for events in by_job.values():
        assert_complete_sequence(events)  # no gap, no duplicate across the reconnect
    r = await client.get(path, headers={"Last-Event-ID": rest[-1]["id"]})
    assert r.status_code == 204
    bad = await client.get(path, headers={"Last-Event-ID": "nonsense"})
    assert bad.status_code == 422
    assert (await client.get("/v1/events")).status_code == 422
    assert (await client.get("/v1/events?jobs=not-an-id")).status_code == 422


async def test_sse_sends_retry_and_heartbeats(
    database: str, namespace: str, registry: Any, make_client: ClientFactory
) -> None:
    api = Api(make_settings(database, namespace, sse_heartbeat_s=0.2), registry)
    await api.start()
    try:
        key = await new_key(database, "acme")
        async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}) as c:
            job = await submit(c, "demo.sleep", {})
            chunks = b""
            async with c.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
                async for chunk in r.aiter_bytes():
                    chunks += chunk
                    if chunks.count(b": keepalive") >= 2:
                        break
            assert chunks.startswith(b"retry: 2000\n\n")
            assert b"id: 1\nevent: created\ndata: {" in chunks
    finally:
        await api.stop()


async def test_a_thousand_sse_clients_all_get_every_event(
    client: httpx.AsyncClient, worker: WorkerService
) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 3, "steps": 6})
    limits = httpx.Limits(max_connections=1100, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=str(client.base_url), headers=client.headers, limits=limits, timeout=60
    ) as many:
        results = await asyncio.gather(*(read_sse(many, f"/v1/jobs/{job['id']}/events") for _ in range(1000)))
    sequences = {tuple(e["seq"] for e in events) for _, events in results}
    assert len(sequences) == 1
    (only,) = sequences
    # created, started, progress (the worker merges steps when its writes are slow), completed
    assert only == tuple(range(1, len(only) + 1)) and len(only) >= 4
    assert {e["type"] for e in results[0][1]} == {"created", "started", "progress", "completed"}


# ---- WebSocket ---------------------------------------------------------------------------------


def ws_url(api_url: str) -> str:
    return api_url.replace("http://", "ws://") + "/v1/ws"


async def recv(ws: Any, timeout: float = 10) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(frame, str), "the contract promises JSON text frames"
    message: dict[str, Any] = json.loads(frame)
    return message


async def recv_until(ws: Any, predicate: Any, timeout: float = 15) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        message = await recv(ws, max(0.1, deadline - asyncio.get_running_loop().time()))
        seen.append(message)
        if predicate(message):
            return seen


def key_of(client: httpx.AsyncClient) -> str:
    return str(client.headers["Authorization"]).removeprefix("Bearer ")


async def test_websocket_job_subscription_with_since(
    api: Api, client: httpx.AsyncClient, worker: WorkerService
) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 0.8, "steps": 4})
    await wait_status(client, job["id"], "running")
    async with websockets.connect(
        ws_url(api.url), additional_headers={"Authorization": client.headers["Authorization"]}
    ) as ws:
        await ws.send(json.dumps({"op": "ping"}))
        assert await recv(ws) == {"op": "pong"}
        await ws.send(json.dumps({"op": "subscribe", "jobs": [job["id"]], "since": {job["id"]: 1}}))
        assert await recv(ws) == {"op": "subscribed", "jobs": [job["id"]]}
        messages = await recv_until(ws, lambda m: m.get("event", {}).get("type") == "completed")
    events = [m["event"] for m in messages if m["op"] == "event"]
    assert [e["seq"] for e in events] == list(range(2, events[-1]["seq"] + 1))


async def test_websocket_tenant_feed_is_isolated_and_admins_see_all(
    api: Api, make_client: ClientFactory, worker: WorkerService
) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    admin = await make_client("ops", admin=True)

    async def feed(client: httpx.AsyncClient) -> Any:
        ws = await websockets.connect(ws_url(api.url) + f"?token={key_of(client)}")
        await ws.send(json.dumps({"op": "subscribe", "all": True}))
        assert await recv(ws) == {"op": "subscribed", "all": True}
        stats = await recv(ws)
        assert stats["op"] == "stats" and set(stats["queues"]) >= {"normal", "high", "running"}
        return ws

    ws_alice, ws_bob, ws_admin = await feed(alice), await feed(bob), await feed(admin)
    try:
        job = await submit(alice, "demo.sleep", {"seconds": 0})
        seen_alice = await recv_until(ws_alice, lambda m: m.get("event", {}).get("type") == "completed")
        seen_admin = await recv_until(ws_admin, lambda m: m.get("event", {}).get("type") == "completed")
        assert {m["event"]["job_id"] for m in seen_alice if m["op"] == "event"} == {job["id"]}
        admin_events = [m for m in seen_admin if m["op"] == "event"]
        assert admin_events and all(m["tenant"] == "alice" for m in admin_events)
        assert all("tenant" not in m for m in seen_alice)
        # bob hears nothing of alice's job
        with pytest.raises(TimeoutError):
            while True:
                message = await recv(ws_bob, timeout=1)
                assert message["op"] != "event", message
        await ws_bob.send(json.dumps({"op": "subscribe", "jobs": [job["id"]]}))
        assert (await recv(ws_bob))["op"] == "error"
    finally:
        for ws in (ws_alice, ws_bob, ws_admin):
            await ws.close()


async def test_websocket_closes_a_client_that_cannot_keep_up(
    database: str, namespace: str, registry: Any
) -> None:
    settings = make_settings(database, namespace, stream_queue_max=50)
    api = Api(settings, registry)
    await api.start()
    redis = create_redis(settings.redis_url)
    try:
        key = await new_key(database, "acme", admin=True)
        ws = await websockets.connect(ws_url(api.url) + f"?token={key}", max_queue=1, max_size=2**20)
        await ws.send(json.dumps({"op": "subscribe", "all": True}))
        await recv(ws)
        # bursts of large events while the client reads nothing, until the server has given up on
        # it: 20 MB a burst, more than loopback socket buffers absorb, so its queue overflows (on a
        # busy machine the server may drain more before the queue fills: then another burst)
        pad = "x" * 20_000
        slow = metrics.SLOW_CLIENTS.labels("websocket")
        before = slow._value.get()
        for burst in range(10):
            for i in range(1000):
                event = {
                    "job_id": f"00000000-0000-0000-{burst:04d}-{i:012d}",
                    "seq": 1,
                    "type": "started",
                    "status": "running",
                    "progress": 0.0,
                    "message": pad,
                    "at": "2026-01-01T00:00:00.000000Z",
                }
                await redis.publish(
                    Keys(namespace).events_channel, orjson.dumps({"tenant": "acme", "event": event})
                )
            if slow._value.get() > before:
                break
            await asyncio.sleep(0.5)  # the hub may still be routing the burst
            if slow._value.get() > before:
                break
        assert slow._value.get() > before, "the server never found the client too slow"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(60):
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    finally:
        await redis.aclose()
        await api.stop()


async def test_websocket_rejects_bad_frames(api: Api, client: httpx.AsyncClient) -> None:
    async with websockets.connect(
        ws_url(api.url), additional_headers={"Authorization": client.headers["Authorization"]}
    ) as ws:
        for frame in (
            "not json",
            "[1]",
            json.dumps({"op": "dance"}),
            json.dumps({"op": "subscribe", "jobs": ["x"]}),
        ):
            await ws.send(frame)
            assert (await recv(ws))["op"] == "error"
    assert (await client.get("/v1/ws", headers={"Authorization": "Bearer nope"})).status_code == 401


async def test_metrics_count_requests_and_streams(anon: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    await client.get("/v1/jobs")
    text = (await anon.get("/metrics")).text
    assert 'jobwire_http_requests_total{method="GET",route="/v1/jobs",status="200"}' in text
    assert "jobwire_sse_connections" in text and "jobwire_websocket_connections" in text
    assert 'jobwire_queue_depth{priority="normal"}' in text


async def test_websocket_unsubscribe_stops_the_events(
    api: Api, client: httpx.AsyncClient, worker: WorkerService
) -> None:
    auth = {"Authorization": client.headers["Authorization"]}
    async with websockets.connect(ws_url(api.url), additional_headers=auth) as ws:
        await ws.send(json.dumps({"op": "subscribe", "all": True}))
        assert (await recv(ws))["op"] == "subscribed"
        await ws.send(json.dumps({"op": "unsubscribe", "all": True}))
        await recv_until(ws, lambda m: m["op"] == "unsubscribed")
        job = await submit(client, "demo.sleep", {"seconds": 0})
        await wait_status(client, job["id"], "completed")
        with pytest.raises(TimeoutError):
            while True:
                message = await recv(ws, timeout=1)
                assert message["op"] != "event", message
        # following the finished job by id replays it from `since`, then nothing more arrives
        await ws.send(json.dumps({"op": "subscribe", "jobs": [job["id"]], "since": {job["id"]: 0}}))
        messages = await recv_until(ws, lambda m: m.get("event", {}).get("type") == "completed")
        events = [m["event"] for m in messages if m["op"] == "event"]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        await ws.send(json.dumps({"op": "unsubscribe", "jobs": [job["id"]]}))
        assert (await recv(ws)) == {"op": "unsubscribed", "jobs": [job["id"]]}
