"""Tenant isolation on every /v1 route (the route list comes from the app itself, so a new route is
covered the day it is added), on streams, and for stream tokens."""

from __future__ import annotations

import re

import httpx
import pytest
import websockets
from aiohttp import web

from jobwire.config import Settings
from service import batches, jobs, schedules, sse, webhooks, ws
from tests.conftest import Api, ClientFactory, make_settings, submit
from tests.receiver import Receiver

PARAM = re.compile(r"\{(\w+)(?::[^}]+)?\}")
# per collection, a PATCH body the route would accept from the owner
PATCH_BODIES: dict[str, dict[str, object]] = {
    "jobs": {"delay_s": 60},
    "webhooks": {"events": ["job.failed"]},
    "schedules": {"paused": True, "name": "taken-over"},
}


def v1_routes() -> list[tuple[str, str]]:
    return sorted(
        (route.method, route.path)
        for table in (jobs.routes, batches.routes, sse.routes, ws.routes, webhooks.routes, schedules.routes)
        for route in table
        if isinstance(route, web.RouteDef) and route.path.startswith("/v1/")
    )


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(database, namespace, webhook_allow_private=True)


async def test_another_tenant_sees_nothing_on_any_route(
    make_client: ClientFactory, receiver: Receiver
) -> None:
    owner = await make_client("acme")
    intruder = await make_client("globex")
    # acme owns one of everything: a job, an endpoint, deliveries
    endpoint = (await owner.post("/v1/webhooks", json={"url": receiver.url + "/h"})).json()
    job = await submit(owner, "test.block", {"seconds": 30}, webhook_url=receiver.url + "/own")
    assert (await owner.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 200  # owes deliveries
    delivery = (await owner.get(f"/v1/jobs/{job['id']}/deliveries")).json()["items"][0]
    schedule = (
        await owner.post(
            "/v1/schedules",
            json={"name": "nightly", "cron": "0 3 * * *", "job": {"type": "demo.sleep", "params": {}}},
        )
    ).json()
    batch = (await owner.post("/v1/batches", json={"jobs": [{"type": "test.block"}]})).json()
    ids = {
        "batch_id": batch["id"],
        "job_id": job["id"],
        "endpoint_id": endpoint["id"],
        "delivery_id": delivery["id"],
        "schedule_id": schedule["id"],
    }
    secrets = [endpoint["secret"], (await owner.get("/v1/webhooks/signing-secret")).json()["secret"]]

    checked = 0
    for method, template in v1_routes():
        names = PARAM.findall(template)
        path = PARAM.sub(lambda m: ids[m.group(1)], template)
        if path == "/v1/ws":
            continue  # below: a WebSocket handshake
        if path == "/v1/events":
            path += f"?jobs={job['id']}"
        body: dict[str, object] | None = {} if method == "POST" else None
        if method == "PATCH":  # a body the route would accept from its owner
            body = PATCH_BODIES[template.split("/")[2]]
        if (method, template) == ("POST", "/v1/schedules"):  # a valid one, with acme's name
            body = {"name": "nightly", "interval_s": 60, "job": {"type": "demo.sleep", "params": {}}}
        r = await intruder.request(method, path, json=body)
        text = r.text
        if names or path.startswith("/v1/events"):
            assert r.status_code == 404, (method, path, r.status_code, text)
        else:
            # collections and the tenant's own secret: answered, with none of acme's data
            assert r.status_code in (200, 201, 202, 422), (method, path, r.status_code, text)
        # a 404 echoes the id that was asked for; nothing else of acme's may appear
        for value in (*ids.values(), *secrets):
            assert value in path or value not in text, (method, path, value)
        checked += 1
    assert checked >= 29
    # nothing of acme's changed, and its schedule fired nothing for the intruder
    assert (await owner.get(f"/v1/webhooks/{endpoint['id']}")).json()["events"] == endpoint["events"]
    assert (await owner.get(f"/v1/schedules/{schedule['id']}")).json() == schedule
    assert (await intruder.get("/v1/jobs", params={"schedule_id": schedule["id"]})).json()["items"] == []
    assert (await intruder.get("/v1/jobs", params={"batch_id": batch["id"]})).json()["items"] == []
    assert (await owner.get(f"/v1/batches/{batch['id']}")).json()["status"] == "running"


async def test_stream_tokens_open_their_own_job_only(
    api: Api, make_client: ClientFactory, anon: httpx.AsyncClient
) -> None:
    owner = await make_client("acme")
    mine = await submit(owner, "test.block", {"seconds": 30})
    other = await submit(await make_client("globex"), "test.block", {"seconds": 30})
    token = mine["events_url"].split("token=")[1]
    ws_url = api.url.replace("http://", "ws://") + "/v1/ws"
    # another tenant's job, another job, a forged signature, a token for a key route (expiry:
    # tests/integration/test_stream_tokens.py)
    payload, _ = token.split(".")
    forged = f"{payload}.AAAAAAAAAAAAAAAAAAAAAAAA"
    assert (await anon.get(f"/v1/jobs/{other['id']}/events?token={token}")).status_code == 404
    for bad in (forged, "garbage", ""):
        r = await anon.get(f"/v1/jobs/{mine['id']}/events?token={bad}")
        assert r.status_code == 401, (bad, r.text)
    assert (await anon.get(f"/v1/jobs/{mine['id']}?token={token}")).status_code == 401
    assert (await anon.get(f"/v1/events?jobs={other['id']}&token={token}")).status_code == 404
    for bad in (forged,):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{ws_url}?token={bad}")
        assert refused.value.response.status_code == 401
