"""CORS (JOBWIRE_CORS_ORIGINS) on REST, SSE and the WebSocket upgrade, and JOBWIRE_PUBLIC_URL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from jobwire.config import Settings
from jobwire.registry import Registry
from tests.conftest import Api, make_settings, new_key, submit

PAGE = "https://app.example.com"
OTHER = "https://evil.example.net"
PUBLIC = "https://jobs.example.com"


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(
        database, namespace, cors_origins=f"{PAGE}, http://localhost:3000", public_url=PUBLIC + "/"
    )


@pytest.fixture
async def key(api: Api, settings: Settings) -> str:
    return await new_key(settings.database_url, "acme")


@pytest.fixture
async def http(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as c:
        yield c


async def test_preflight_answers_204_with_the_allowed_methods_and_headers(http: httpx.AsyncClient) -> None:
    r = await http.options(
        "/v1/jobs",
        headers={
            "Origin": PAGE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert r.status_code == 204, r.text
    assert r.headers["Access-Control-Allow-Origin"] == PAGE
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert {
        "authorization",
        "content-type",
        "idempotency-key",
        "prefer",
        "if-none-match",
        "last-event-id",
    } <= allowed
    assert int(r.headers["Access-Control-Max-Age"]) > 0
    # an origin not listed is refused, with a problem document
    r = await http.options("/v1/jobs", headers={"Origin": OTHER, "Access-Control-Request-Method": "POST"})
    assert r.status_code == 403
    assert "Access-Control-Allow-Origin" not in r.headers


async def test_answers_to_a_listed_origin_expose_location_etag_and_retry_after(
    http: httpx.AsyncClient, key: str
) -> None:
    auth = {"Authorization": f"Bearer {key}", "Origin": PAGE}
    r = await http.post("/v1/jobs", json={"type": "demo.sleep", "params": {"seconds": 5}}, headers=auth)
    assert r.status_code == 202
    assert r.headers["Access-Control-Allow-Origin"] == PAGE
    exposed = {h.strip() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Location", "ETag", "Retry-After"} <= exposed
    assert "Origin" in r.headers["Vary"]
    # a refusal is readable by the page too (it can show why)
    r = await http.get("/v1/jobs", headers={"Origin": PAGE})
    assert r.status_code == 401
    assert r.headers["Access-Control-Allow-Origin"] == PAGE
    # another origin gets no grant
    r = await http.get("/v1/jobs", headers={"Authorization": f"Bearer {key}", "Origin": OTHER})
    assert r.status_code == 200
    assert "Access-Control-Allow-Origin" not in r.headers


async def test_public_url_makes_urls_absolute_and_sse_carries_cors(http: httpx.AsyncClient, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    r = await http.post("/v1/jobs", json={"type": "demo.sleep", "params": {"seconds": 5}}, headers=auth)
    job = r.json()
    assert r.headers["Location"] == f"{PUBLIC}/v1/jobs/{job['id']}"
    assert job["status_url"] == f"{PUBLIC}/v1/jobs/{job['id']}"
    assert job["events_url"].startswith(f"{PUBLIC}/v1/jobs/{job['id']}/events?token=")
    # the stream a page opens with EventSource (token in the URL, no header): granted to the page
    path = job["events_url"].removeprefix(PUBLIC)
    async with http.stream("GET", path, headers={"Origin": PAGE}) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["Access-Control-Allow-Origin"] == PAGE


async def test_websocket_upgrade_checks_the_origin(api: Api, key: str) -> None:
    url = api.url.replace("http://", "ws://") + "/v1/ws"
    auth = {"Authorization": f"Bearer {key}"}
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url, additional_headers=auth, origin=Origin(OTHER)):
            pass
    assert refused.value.response.status_code == 403
    for origin in (PAGE, api.url, None):  # listed, the api's own pages (the dashboard), not a browser
        async with websockets.connect(
            url, additional_headers=auth, origin=Origin(origin) if origin else None
        ) as ws:
            await ws.send('{"op": "ping"}')
            assert await ws.recv()


async def test_without_a_list_there_is_no_cors(database: str, namespace: str, registry: Registry) -> None:
    server = Api(make_settings(database, namespace), registry)
    await server.start()
    try:
        key = await new_key(database, "acme")
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as c:
            r = await c.options("/v1/jobs", headers={"Origin": PAGE, "Access-Control-Request-Method": "POST"})
            assert r.status_code != 204 and "Access-Control-Allow-Origin" not in r.headers
            job = await submit(c, "demo.sleep", {"seconds": 5})
            assert job["status_url"] == f"/v1/jobs/{job['id']}"  # no JOBWIRE_PUBLIC_URL: paths
            r = await c.get("/v1/jobs", headers={"Origin": PAGE})
            assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers
        url = server.url.replace("http://", "ws://") + "/v1/ws"
        async with websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {key}"}, origin=Origin(OTHER)
        ):
            pass
    finally:
        await server.stop()
