"""Hostile and malformed input: every one gets a clear 4xx (or a bounded cost), never a 500, and
secrets never show up in logs or metrics."""

from __future__ import annotations

import asyncio
import base64
import inspect
import re
import sys
import time
import uuid

import httpx
import orjson
import pytest
import websockets
from aiohttp import web

from jobwire.config import Settings
from service import batches, jobs, schedules, sse, webhooks
from tests.conftest import Api, ClientFactory, eventually, make_settings, submit
from tests.integration.test_isolation import PARAM, v1_routes
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
        async with httpx.AsyncClient(timeout=10) as plain:
            metrics = (await plain.get(f"{loud.url}/metrics")).text
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


# ---- numbers and cursors ---------------------------------------------------------------------

# what a careless or hostile client puts where the api reads a number: digits that are not ASCII
# (str.isdigit() and int() take them), values past PostgreSQL's integer and bigint, more digits
# than int() converts (4300), signs, separators and other spellings int() accepts
HOSTILE_NUMBERS = [
    "١٢",  # Arabic-Indic digits
    "²",  # isdigit() is True, int() fails
    "\uff11\uff12",  # fullwidth 12
    "2147483648",  # int4 + 1
    "9223372036854775808",  # int8 + 1
    "9" * 5000,
    "-1",
    " 1",
    "1 ",
    "+1",
    "1_0",
    "0x10",
    "1e3",
    "1.0",
]


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()


HOSTILE_CURSORS = [
    *HOSTILE_NUMBERS,
    _b64(["2026-01-01T00:00:00+00:00", 5]),  # not a job id
    _b64(["2026-01-01T00:00:00+00:00", str(uuid.uuid4()), 1]),
    _b64(["2026-01-01T00:00:00", str(uuid.uuid4())]),  # no time zone
    _b64(["0001-01-01T00:00:00+14:00", str(uuid.uuid4())]),  # before year 1 in UTC
    _b64(["9999-12-31T23:59:59-14:00", str(uuid.uuid4())]),  # after 9999 in UTC
    _b64({"a": 1, "b": 2}),
    "é" * 10,
]

_READS_QUERY = re.compile(r"""query_int\(request, "(\w+)"|request\.query\.get\("(\w+)"\)""")


def _numeric_inputs() -> set[tuple[str, str, str]]:
    """(method, path template, input) for every number or cursor a route reads, found in the
    handler's source and in the module functions it calls (a new route or parameter is walked the
    day it is added)."""
    found: set[tuple[str, str, str]] = set()
    for method, path in v1_routes():
        if path == "/v1/ws":
            continue  # frames: below
        handler = next(
            r.handler
            for table in (jobs.routes, batches.routes, sse.routes, webhooks.routes, schedules.routes)
            for r in table
            if isinstance(r, web.RouteDef) and (r.method, r.path) == (method, path)
        )
        module = sys.modules[handler.__module__]
        source = inspect.getsource(handler)
        for name, value in vars(module).items():
            if (
                inspect.isfunction(value)
                and value is not handler
                and re.search(rf"(?<![.\w]){name}\(", source)
            ):
                source += inspect.getsource(value)
        for match in _READS_QUERY.finditer(source):
            name = match.group(1) or match.group(2)
            if name in ("limit", "wait", "last_event_id"):
                found.add((method, path, f"query:{name}"))
        if "query_cursor(" in source:
            found.add((method, path, "query:cursor"))
        if "_last_event_id(" in source:  # the header, or ?last_event_id= for EventSource polyfills
            found.add((method, path, "header:Last-Event-ID"))
            found.add((method, path, "query:last_event_id"))
        if "prefer_wait(" in source:
            found.add((method, path, "header:Prefer"))
    return found


async def test_every_number_and_cursor_the_api_reads_answers_hostile_values_with_a_problem(
    client: httpx.AsyncClient, worker: object
) -> None:
    job = await submit(client, "test.block", {"seconds": 0})
    endpoint = (await client.post("/v1/webhooks", json={"url": "https://93.184.216.34/h"})).json()
    batch = (
        await client.post("/v1/batches", json={"jobs": [{"type": "test.block", "params": {"seconds": 0}}]})
    ).json()
    ids = {
        "job_id": job["id"],
        "endpoint_id": endpoint["id"],
        "delivery_id": str(uuid.uuid4()),
        "batch_id": batch["id"],
    }
    digest = sse.JobSetIds([job["id"]]).digest
    inputs = _numeric_inputs()
    walked = {(m, p, i) for m, p, i in inputs}
    # the walk finds at least what the api documents
    assert {
        ("GET", "/v1/jobs", "query:limit"),
        ("GET", "/v1/jobs", "query:cursor"),
        ("GET", "/v1/jobs/{job_id}", "query:wait"),
        ("POST", "/v1/jobs", "header:Prefer"),
        ("GET", "/v1/jobs/{job_id}/events", "header:Last-Event-ID"),
        ("GET", "/v1/jobs/{job_id}/events", "query:last_event_id"),
        ("GET", "/v1/events", "header:Last-Event-ID"),
        ("GET", "/v1/webhooks", "query:cursor"),
        ("GET", "/v1/jobs/{job_id}/deliveries", "query:limit"),
        ("GET", "/v1/schedules", "query:cursor"),
        ("GET", "/v1/schedules", "query:limit"),
        ("GET", "/v1/batches", "query:cursor"),
        ("GET", "/v1/batches", "query:limit"),
        ("GET", "/v1/batches/{batch_id}/events", "header:Last-Event-ID"),
    } <= walked, sorted(walked)

    checked = 0
    for method, template, where in sorted(inputs):
        path = PARAM.sub(lambda m: ids[m.group(1)], template)
        if path == "/v1/deliveries/" + ids["delivery_id"]:
            continue
        kind, _, name = where.partition(":")
        values = HOSTILE_CURSORS if name == "cursor" else HOSTILE_NUMBERS
        for value in values:
            if name == "Prefer":
                if value.strip().isascii() and value.strip().isdigit():
                    continue  # a long wait in seconds is capped, as documented: below
                value = f"wait={value}"
            elif path == "/v1/events" and name in ("Last-Event-ID", "last_event_id"):
                value = f"{digest}-{value}"
            if kind == "header" and value != value.strip():
                continue  # not sendable: HTTP strips the whitespace around a header value
            params = {"jobs": job["id"]} if path == "/v1/events" else {}
            headers: dict[bytes, bytes] = {}
            if kind == "query":
                params[name] = value
            else:
                headers[name.encode()] = value.encode()  # UTF-8 bytes on the wire
            body = {"type": "test.block", "params": {"seconds": 0}} if method == "POST" else None
            r = await client.request(method, path, params=params, headers=headers, json=body)
            assert r.status_code in (400, 422), (method, path, where, value[:40], r.status_code, r.text)
            assert r.headers["Content-Type"].startswith(PROBLEM)
            checked += 1
    assert checked > 100

    # a wait preference of thousands of ASCII digits is a long wait: capped, as documented
    r = await client.post(
        "/v1/jobs",
        json={"type": "test.block", "params": {"seconds": 0}},
        headers={"Prefer": "wait=" + "9" * 5000},
    )
    assert r.status_code in (200, 202) and r.headers.get("Preference-Applied", "wait=60") == "wait=60"


async def test_websocket_since_values_answer_hostile_values_with_an_error_frame(
    api: Api, client: httpx.AsyncClient
) -> None:
    job = await submit(client, "test.block", {"seconds": 30})
    ws_url = api.url.replace("http://", "ws://") + "/v1/ws"
    async with websockets.connect(ws_url, additional_headers=dict(client.headers)) as ws:
        hostile: list[object] = [
            *HOSTILE_NUMBERS,
            2**31,
            2**63 - 1,
            -1,
            1.5,
            True,
            None,
            [1],
            {"a": 1},
        ]
        for value in hostile:
            await ws.send(orjson.dumps({"op": "subscribe", "jobs": [job["id"]], "since": {job["id"]: value}}))
            answer = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            assert answer["op"] == "error", (value, answer)
        # the socket still works, and a plain number is a seq
        await ws.send(orjson.dumps({"op": "subscribe", "jobs": [job["id"]], "since": {job["id"]: 0}}))
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 10))["op"] == "subscribed"
