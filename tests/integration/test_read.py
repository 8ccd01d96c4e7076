"""GET /v1/jobs/{id} (ETag, 304, long-poll), GET /v1/jobs (filters, cursor), auth and tenants."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import httpx
from aiohttp import web

from jobwire.config import Settings
from jobwire.registry import Registry
from service import batches, bulk, jobs, schedules, sse, webhooks, ws
from tests.conftest import Api, ClientFactory, make_settings, new_key, submit, wait_status
from workers.worker import WorkerService


async def test_get_sends_etag_and_retry_after_until_terminal(
    client: httpx.AsyncClient, worker: WorkerService
) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 0.3})
    r = await client.get(f"/v1/jobs/{job['id']}")
    assert r.status_code == 200 and r.json()["id"] == job["id"]
    assert r.headers["ETag"].startswith('W/"')
    assert int(r.headers["Retry-After"]) >= 1

    done = await wait_status(client, job["id"], "completed")
    r = await client.get(f"/v1/jobs/{job['id']}")
    assert r.json() == done
    assert "Retry-After" not in r.headers
    same = await client.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": r.headers["ETag"]})
    assert same.status_code == 304 and same.content == b""
    assert same.headers["ETag"] == r.headers["ETag"]
    stale = await client.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": 'W/"1"'})
    assert stale.status_code == 200


async def test_long_poll_returns_as_soon_as_the_job_changes(
    client: httpx.AsyncClient, worker: WorkerService
) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 0.6, "steps": 1})
    running = await wait_status(client, job["id"], "running")
    tag = (await client.get(f"/v1/jobs/{job['id']}")).headers["ETag"]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    r = await client.get(f"/v1/jobs/{job['id']}", params={"wait": 20}, headers={"If-None-Match": tag})
    elapsed = loop.time() - t0
    assert r.status_code == 200, r.text
    assert r.json()["status"] != running["status"] or r.json()["progress"] != running["progress"]
    assert elapsed < 5, elapsed


async def test_long_poll_times_out_with_304(client: httpx.AsyncClient) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 1})  # no worker: nothing changes
    tag = (await client.get(f"/v1/jobs/{job['id']}")).headers["ETag"]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    r = await client.get(f"/v1/jobs/{job['id']}", params={"wait": 1}, headers={"If-None-Match": tag})
    assert r.status_code == 304
    assert 0.9 < loop.time() - t0 < 3
    for bad in ("61", "-1", "soon"):
        r = await client.get(f"/v1/jobs/{job['id']}", params={"wait": bad}, headers={"If-None-Match": tag})
        assert r.status_code == 422, bad
        assert r.json()["errors"][0]["loc"] == ["query", "wait"]


async def test_unknown_and_malformed_ids_are_404(client: httpx.AsyncClient) -> None:
    for path in (f"/v1/jobs/{uuid.uuid4()}", "/v1/jobs/not-a-uuid"):
        for method, suffix in (("GET", ""), ("POST", "/cancel"), ("POST", "/retry")):
            r = await client.request(method, path + suffix)
            assert r.status_code == 404, (method, path + suffix)
            assert r.headers["Content-Type"].startswith("application/problem+json")


async def test_list_filters_and_paginates_newest_first(client: httpx.AsyncClient) -> None:
    ids = [(await submit(client, "demo.sleep" if i % 2 else "demo.fail", {}))["id"] for i in range(7)]
    newest_first = list(reversed(ids))

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/jobs", params=params)).json()
        seen += [j["id"] for j in page["items"]]
        # jobs created while paging appear on no page already being walked
        await submit(client, "demo.sleep", {})
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first

    sleeps = (await client.get("/v1/jobs", params={"type": "demo.sleep"})).json()["items"]
    assert sleeps and all(j["type"] == "demo.sleep" for j in sleeps)
    pending = (await client.get("/v1/jobs", params={"status": "pending,running"})).json()["items"]
    assert len(pending) == 7 + 3
    assert (await client.get("/v1/jobs", params={"status": "completed"})).json() == {
        "items": [],
        "next_cursor": None,
    }


async def test_list_rejects_bad_parameters(client: httpx.AsyncClient) -> None:
    for params in ({"limit": 0}, {"limit": 201}, {"limit": "x"}, {"status": "done"}, {"cursor": "garbage"}):
        r = await client.get("/v1/jobs", params=params)
        assert r.status_code == 422, params
        assert r.json()["errors"][0]["loc"][0] == "query"


async def test_tenants_see_only_their_own_jobs(make_client: ClientFactory) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    admin = await make_client("ops", admin=True)
    job = await submit(alice, "demo.sleep", {})
    bobs = await submit(bob, "demo.sleep", {})

    for method, suffix in (("GET", ""), ("POST", "/cancel"), ("POST", "/retry")):
        r = await bob.request(method, f"/v1/jobs/{job['id']}{suffix}")
        assert r.status_code == 404, suffix
    assert [j["id"] for j in (await bob.get("/v1/jobs")).json()["items"]] == [bobs["id"]]
    assert (await bob.get("/v1/jobs", params={"tenant": "alice"})).status_code == 422

    # an admin key sees every tenant, and can filter by one
    assert (await admin.get(f"/v1/jobs/{job['id']}")).status_code == 200
    everything = {j["id"] for j in (await admin.get("/v1/jobs")).json()["items"]}
    assert everything == {job["id"], bobs["id"]}
    only_alice = (await admin.get("/v1/jobs", params={"tenant": "alice"})).json()["items"]
    assert [j["id"] for j in only_alice] == [job["id"]]


async def test_missing_or_bad_keys_are_401(anon: httpx.AsyncClient) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer jw_nope"},
        {"Authorization": "Basic dXNlcjpwdw=="},
        {"Authorization": "Bearer"},
    ):
        r = await anon.get("/v1/jobs", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert r.headers["Content-Type"].startswith("application/problem+json")
    r = await anon.post("/v1/jobs", json={"type": "demo.sleep"})
    assert r.status_code == 401


async def test_health_and_unknown_routes(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/healthz")).json() == {"status": "ok"}
    ready = await anon.get("/readyz")
    assert ready.status_code == 200 and ready.json()["postgresql"] == "ok"
    r = await anon.get("/nowhere")
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/problem+json")
    r = await anon.delete("/healthz")
    assert r.status_code == 405 and r.json()["status"] == 405


async def test_openapi_describes_every_v1_route_with_the_handlers_models(
    anon: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    from service.schemas import BulkResult, Job, JobList, Schedule, ScheduleList

    doc = (await anon.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    # every /v1 route the app serves, and nothing else
    served = {
        (re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.path), route.method)
        for table in (
            jobs.routes,
            batches.routes,
            bulk.routes,
            sse.routes,
            ws.routes,
            webhooks.routes,
            schedules.routes,
        )
        for route in table
        if isinstance(route, web.RouteDef) and route.path.startswith("/v1/")
    }
    documented = {(path, method.upper()) for path, methods in doc["paths"].items() for method in methods}
    assert documented == served
    assert len(served) == 33
    schemas = doc["components"]["schemas"]
    assert {"SubmitJob", "Job", "Problem", "Event", "SleepParams"} <= set(schemas)
    assert doc["x-job-types"]["demo.sleep"]["params"]["$ref"] == "#/components/schemas/SleepParams"
    assert schemas["SubmitDemoSleep"]["properties"]["priority"]["default"] == "normal"
    # clients generated from it call the api where the document was read
    assert doc["servers"][0]["url"] == str(anon.base_url).rstrip("/")
    # what the handlers answer matches the documented models
    job = await submit(client, "demo.sleep", {"seconds": 1})
    Job.model_validate(job)
    JobList.model_validate((await client.get("/v1/jobs")).json())
    counted = await client.post("/v1/jobs/bulk", json={"action": "cancel", "all": True, "dry_run": True})
    assert BulkResult.model_validate(counted.json()).matched == 1
    schedule = await client.post(
        "/v1/schedules", json={"name": "n", "cron": "@daily", "job": {"type": "demo.sleep", "params": {}}}
    )
    Schedule.model_validate(schedule.json())
    ScheduleList.model_validate((await client.get("/v1/schedules")).json())
    Job.model_validate((await client.post(f"/v1/schedules/{schedule.json()['id']}/trigger")).json())
    page = await anon.get("/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")


async def test_openapi_servers_is_the_public_url_when_set(settings: Settings, registry: Registry) -> None:
    server = Api(settings.model_copy(update={"public_url": "https://jobs.example.com"}), registry)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as anon:
            doc = (await anon.get("/openapi.json")).json()
    finally:
        await server.stop()
    assert doc["servers"] == [{"url": "https://jobs.example.com", "description": "this jobwire api"}]


async def test_a_hold_is_capped_by_max_wait_s(database: str, namespace: str, registry: Registry) -> None:
    # a proxy that closes idle requests after a few seconds: the operator lowers the hold
    server = Api(make_settings(database, namespace, max_wait_s=1), registry)
    await server.start()
    try:
        key = await new_key(database, "acme")
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as c:
            t0 = time.monotonic()
            r = await c.post(
                "/v1/jobs", json={"type": "test.block", "params": {}}, headers={"Prefer": "wait=30"}
            )
            assert r.status_code == 202 and time.monotonic() - t0 < 5
            etag = r.headers["ETag"]
            t0 = time.monotonic()
            held = await c.get(f"/v1/jobs/{r.json()['id']}?wait=30", headers={"If-None-Match": etag})
            assert held.status_code == 304 and 0.8 < time.monotonic() - t0 < 5
    finally:
        await server.stop()
