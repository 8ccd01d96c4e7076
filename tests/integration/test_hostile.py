"""Hostile and malformed input: every one gets a clear 4xx (or a bounded cost), never a 500, and
secrets never show up in logs or metrics."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from jobwire.config import Settings
from tests.conftest import Api, ClientFactory, eventually, make_settings, submit
from tests.receiver import Receiver
from workers.dispatcher import Dispatcher

PROBLEM = "application/problem+json"
JSON = {"Content-Type": "application/json"}


async def test_nul_characters_are_refused_where_postgresql_would_choke(client: httpx.AsyncClient) -> None:
    bodies = [
        ("/v1/jobs", b'{"type": "demo.sleep", "webhook_url": "https://example.com/\\u0000"}'),
        ("/v1/jobs", b'{"type": "demo.sleep", "params": {"a\\u0000": 1}}'),
        ("/v1/webhooks", b'{"url": "https://example.com/h", "description": "x\\u0000y"}'),
    ]
    for path, body in bodies:
        r = await client.post(path, content=body, headers=JSON)
        assert r.status_code == 422, (path, body, r.text)
        assert r.headers["Content-Type"].startswith(PROBLEM)
        assert r.json()["errors"][0]["type"] == "nul_character"
    r = await client.get("/v1/jobs", params={"type": "a\x00b"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query"]
    # an escaped backslash followed by "u0000" is ordinary text
    r = await client.post(
        "/v1/webhooks", content=b'{"url": "https://example.com/h", "description": "\\\\u0000"}', headers=JSON
    )
    assert r.status_code in (201, 422) and r.status_code != 500
    assert (await client.get("/v1/jobs")).json()["items"] == []


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # nesting far past any parser's stack
        b'{"type": "demo.sleep", "params": {"x": "\xff\xfe"}}',  # not UTF-8
        b'{"type": "demo.sleep", "params": {"x": "\\ud800"}}',  # a lone surrogate
        b'{"type": "demo.sleep"' + b" " * 10_000,  # truncated
        b"\x00\x01\x02",
    ],
)
async def test_malformed_bodies_are_400(client: httpx.AsyncClient, body: bytes) -> None:
    r = await client.post("/v1/jobs", content=body, headers=JSON)
    assert r.status_code in (400, 422), r.text
    assert r.headers["Content-Type"].startswith(PROBLEM)


async def test_oversized_headers_are_refused_and_the_server_carries_on(
    api: Api, client: httpx.AsyncClient
) -> None:
    async with httpx.AsyncClient(base_url=api.url) as raw:
        r = await raw.get("/v1/jobs", headers={"X-Padding": "a" * 100_000})
        assert r.status_code in (400, 431)
        many = {f"X-H{i}": "v" for i in range(500)}
        r = await raw.get("/v1/jobs", headers=many)
        assert r.status_code in (400, 401, 431)
    assert (await client.get("/v1/jobs")).status_code == 200


async def test_slow_clients_holding_connections_do_not_starve_others(
    api: Api, client: httpx.AsyncClient
) -> None:
    # slowloris: many connections trickling a request that never ends
    writers: list[asyncio.StreamWriter] = []
    for _ in range(200):
        _, writer = await asyncio.open_connection("127.0.0.1", api.port)
        writer.write(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n")
        writers.append(writer)
    try:
        for round_ in range(3):
            for w in writers:
                w.write(b"X-Slow: 1\r\n")
            t0 = time.monotonic()
            job = await submit(client, "test.block", {"seconds": 1})
            assert (await client.get(f"/v1/jobs/{job['id']}")).status_code == 200
            assert time.monotonic() - t0 < 2.0, f"round {round_}: a normal client waited"
            await asyncio.sleep(0.2)
    finally:
        for w in writers:
            w.close()


async def test_keys_and_secrets_never_reach_logs_or_metrics(
    database: str,
    namespace: str,
    registry: object,
    make_client: ClientFactory,
    capfd: pytest.CaptureFixture[str],
) -> None:
    settings: Settings = make_settings(
        database, namespace, access_log=True, webhook_allow_private=True, webhook_backoff_max_attempts=1
    )
    loud = Api(settings, registry)  # type: ignore[arg-type]
    await loud.start()
    receiver = Receiver()
    receiver.default = 500
    await receiver.start()
    dispatcher = Dispatcher(settings)
    await dispatcher.start()
    try:
        client = await make_client("acme")
        key = client.headers["Authorization"].removeprefix("Bearer ")
        client.base_url = httpx.URL(loud.url)
        ep = (
            await client.post("/v1/webhooks", json={"url": receiver.url + "/h", "events": ["job.cancelled"]})
        ).json()
        rotated = (await client.post(f"/v1/webhooks/{ep['id']}/rotate-secret")).json()
        tenant_secret = (await client.get("/v1/webhooks/signing-secret")).json()["secret"]
        job = await submit(client, "test.block", {"seconds": 5}, webhook_url=receiver.url + "/own")
        await client.post(f"/v1/jobs/{job['id']}/cancel")
        # the key in a query string (as browsers send it to streams) and a wrong key
        async with httpx.AsyncClient(base_url=loud.url, timeout=10) as anon:
            await anon.get(f"/v1/jobs/{job['id']}/events", params={"token": key})
            await anon.get("/v1/jobs", headers={"Authorization": "Bearer jw_wrong_" + key[-20:]})
        await eventually(lambda: _attempted(receiver, 2), timeout=10, what="both deliveries attempted")
        metrics = (await httpx.AsyncClient().get(f"{loud.url}/metrics")).text
    finally:
        await dispatcher.stop()
        await receiver.stop()
        await loud.stop()
    logged = capfd.readouterr()
    everything = logged.out + logged.err + metrics
    assert "request" in logged.out  # the access log was on and captured
    for secret in (key, ep["secret"], rotated["secret"], tenant_secret):
        assert secret not in everything
        assert secret.removeprefix("whsec_") not in everything


async def _attempted(receiver: Receiver, n: int) -> bool:
    return len(receiver.requests) >= n
