"""Webhooks end to end: a real dispatcher delivering to a real receiver, signatures checked by the
`standardwebhooks` package (the reference implementation, not our code)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import standardwebhooks
from aiohttp import web

from jobwire import db, jobmetrics
from jobwire.config import Settings
from jobwire.registry import Registry
from service import schemas
from tests.conftest import QUICK_WEBHOOKS, Api, ClientFactory, eventually, make_settings, submit, wait_status
from tests.receiver import Receiver, answer, sleep_then
from workers.dispatcher import Dispatcher
from workers.worker import WorkerService


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(database, namespace, **QUICK_WEBHOOKS)


@pytest.fixture
async def dispatcher(settings: Settings) -> AsyncIterator[Dispatcher]:
    d = Dispatcher(settings)
    await d.start()
    yield d
    await d.stop()


async def cancelled_job(client: httpx.AsyncClient, webhook_url: str) -> dict[str, Any]:
    """A job that owes one delivery (job.cancelled) at once, with no worker involved."""
    job = await submit(client, "test.block", {"seconds": 30}, webhook_url=webhook_url)
    r = await client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def deliveries_of(client: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/jobs/{job_id}/deliveries")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def settled(client: httpx.AsyncClient, job_id: str, count: int = 1, timeout: float = 15) -> list[Any]:
    """The job's deliveries once `count` of them have stopped being pending."""

    async def check() -> list[Any] | None:
        items = await deliveries_of(client, job_id)
        done = [d for d in items if d["status"] != "pending"]
        return items if len(done) >= count else None

    return await eventually(check, timeout=timeout, what=f"{count} deliveries of {job_id} to settle")


def verify(secret: str, received: Any) -> Any:
    return standardwebhooks.Webhook(secret).verify(received.body, received.headers)


# ---- signing -----------------------------------------------------------------------------------


async def test_deliveries_are_signed_and_verify_with_the_reference_library(
    client: httpx.AsyncClient, receiver: Receiver, worker: WorkerService, dispatcher: Dispatcher
) -> None:
    r = await client.post(
        "/v1/webhooks",
        json={"url": receiver.url + "/endpoint", "events": ["job.started", "job.completed"]},
    )
    assert r.status_code == 201, r.text
    endpoint = r.json()
    assert endpoint["secret"].startswith("whsec_")
    job = await submit(client, "demo.sleep", {"seconds": 0.2, "steps": 2}, webhook_url=receiver.url + "/job")
    await wait_status(client, job["id"], "completed")
    items = await settled(client, job["id"], count=3)
    assert {(d["event_type"], d["status"]) for d in items} == {
        ("job.started", "delivered"),
        ("job.completed", "delivered"),
        ("job.completed", "delivered"),
    }
    tenant_secret = (await client.get("/v1/webhooks/signing-secret")).json()["secret"]

    at_endpoint = receiver.at("/endpoint")
    assert sorted(verify(endpoint["secret"], m)["type"] for m in at_endpoint) == [
        "job.completed",
        "job.started",
    ]
    (own,) = receiver.at("/job")
    payload = verify(tenant_secret, own)
    assert payload["type"] == "job.completed"
    assert payload["data"]["id"] == job["id"]
    assert payload["data"]["status"] == "completed"
    assert payload["data"]["result"] == {"slept": 0.2, "steps": 2}
    assert own.headers["content-type"] == "application/json"
    # the same event reaches both destinations under one message id
    completed = next(m for m in at_endpoint if m.json["type"] == "job.completed")
    assert completed.webhook_id == own.webhook_id
    # the endpoint's secret does not verify the tenant secret's signature, and vice versa
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verify(endpoint["secret"], own)
    schemas.DeliveryList.model_validate((await client.get(f"/v1/jobs/{job['id']}/deliveries")).json())
    schemas.SigningSecret.model_validate((await client.get("/v1/webhooks/signing-secret")).json())
    for d in items:
        assert d["attempts"] == 1 and d["last_status_code"] == 200 and d["delivered_at"]
        assert len(d["attempt_history"]) == 1 and d["attempt_history"][0]["status_code"] == 200


async def test_a_tampered_body_or_a_stale_timestamp_fails_verification(
    client: httpx.AsyncClient, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    job = await cancelled_job(client, receiver.url + "/hook")
    await settled(client, job["id"])
    secret = (await client.get("/v1/webhooks/signing-secret")).json()["secret"]
    (message,) = receiver.at("/hook")
    assert verify(secret, message)["type"] == "job.cancelled"
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(
            message.body.replace(b"cancelled", b"completed"), message.headers
        )
    stale = dict(message.headers, **{"webhook-timestamp": str(int(time.time()) - 3600)})
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(message.body, stale)


async def test_during_a_rotation_both_secrets_verify(
    client: httpx.AsyncClient, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    endpoint = (
        await client.post("/v1/webhooks", json={"url": receiver.url + "/ep", "events": ["job.cancelled"]})
    ).json()
    old_endpoint_secret = endpoint["secret"]
    old_tenant_secret = (await client.get("/v1/webhooks/signing-secret")).json()["secret"]

    rotated = (await client.post(f"/v1/webhooks/{endpoint['id']}/rotate-secret")).json()
    new_endpoint_secret = rotated["secret"]
    assert new_endpoint_secret != old_endpoint_secret
    r = await client.post("/v1/webhooks/signing-secret/rotate")
    new_tenant_secret = r.json()["secret"]
    assert new_tenant_secret != old_tenant_secret and r.json()["previous_secret_expires_at"]
    # the secret shows only in the answers that create or rotate it
    assert "secret" not in (await client.get(f"/v1/webhooks/{endpoint['id']}")).json()

    job = await cancelled_job(client, receiver.url + "/own")
    await settled(client, job["id"], count=2)
    (at_endpoint,) = receiver.at("/ep")
    (at_own,) = receiver.at("/own")
    assert len(at_endpoint.headers["webhook-signature"].split(" ")) == 2
    for secret in (old_endpoint_secret, new_endpoint_secret):
        assert verify(secret, at_endpoint)["type"] == "job.cancelled"
    for secret in (old_tenant_secret, new_tenant_secret):
        assert verify(secret, at_own)["type"] == "job.cancelled"


# ---- retries -----------------------------------------------------------------------------------


async def test_500_500_200_is_three_attempts_with_growing_delays_and_one_webhook_id(
    client: httpx.AsyncClient, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    url = receiver.on("/flaky", 500, 500, 200)
    job = await cancelled_job(client, url)
    (d,) = await settled(client, job["id"])
    assert d["status"] == "delivered"
    assert d["attempts"] == 3
    assert [a["status_code"] for a in d["attempt_history"]] == [500, 500, 200]
    assert d["attempt_history"][0]["error"].startswith("HTTP 500")
    calls = receiver.at("/flaky")
    assert len(calls) == 3
    assert len({c.webhook_id for c in calls}) == 1
    assert d["webhook_id"] == calls[0].webhook_id
    gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
    # 0.2 s then 0.4 s, each ±20 %
    assert 0.15 <= gaps[0] <= 0.6 and gaps[1] > gaps[0] and 0.3 <= gaps[1] <= 1.0, gaps
    # every attempt is signed afresh: its own timestamp, never older than the one before
    stamps = [int(c.headers["webhook-timestamp"]) for c in calls]
    assert stamps == sorted(stamps) and abs(stamps[0] - time.time()) < 30
    secret = (await client.get("/v1/webhooks/signing-secret")).json()["secret"]
    for c in calls:
        verify(secret, c)
        assert c.body == calls[0].body  # same bytes every time


async def test_a_receiver_down_past_the_schedule_dead_letters_and_redeliver_works(
    client: httpx.AsyncClient, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    await receiver.stop()  # connection refused from now on
    job = await cancelled_job(client, receiver.url + "/down")
    (d,) = await settled(client, job["id"])
    assert d["status"] == "failed"
    assert d["attempts"] == 3
    assert d["next_attempt_at"] is None
    assert all(a["status_code"] is None and a["error"] for a in d["attempt_history"])
    assert "Connect" in d["last_error"]

    await receiver.start()
    r = await client.post(f"/v1/deliveries/{d['id']}/redeliver")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending"

    async def delivered() -> dict[str, Any] | None:
        got = (await client.get(f"/v1/deliveries/{d['id']}")).json()
        return got if got["status"] == "delivered" else None

    final = await eventually(delivered, what="the redelivery")
    assert final["attempts"] == 4
    (message,) = receiver.at("/down")
    assert message.webhook_id == d["webhook_id"]


async def test_retry_after_on_429_is_honoured_within_bounds(
    client: httpx.AsyncClient, receiver: Receiver, settings: Settings, dispatcher: Dispatcher
) -> None:
    # first retry delay is 0.2 s ±20 %; Retry-After: 1 is clamped to at most 2 x delay (≤ 0.48 s),
    # and Retry-After: 0 is raised to at least the delay
    url = receiver.on("/busy", answer(429, **{"Retry-After": "1"}), answer(503, **{"Retry-After": "0"}), 200)
    job = await cancelled_job(client, url)
    (d,) = await settled(client, job["id"])
    assert d["status"] == "delivered"
    calls = receiver.at("/busy")
    first_gap, second_gap = calls[1].at - calls[0].at, calls[2].at - calls[1].at
    assert 0.3 <= first_gap <= 0.8, first_gap  # 2 x (0.16..0.24), not 1 s
    assert 0.3 <= second_gap <= 0.8, second_gap  # the 0.4 s delay, not 0


async def test_410_gone_disables_the_endpoint(
    client: httpx.AsyncClient, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    url = receiver.on("/gone", 410)
    endpoint = (await client.post("/v1/webhooks", json={"url": url, "events": ["job.cancelled"]})).json()
    job = await cancelled_job(client, receiver.url + "/own")
    items = await settled(client, job["id"], count=2)
    gone = next(d for d in items if d["endpoint_id"] == endpoint["id"])
    assert gone["status"] == "failed" and gone["attempts"] == 1 and gone["last_status_code"] == 410
    ep = (await client.get(f"/v1/webhooks/{endpoint['id']}")).json()
    assert ep["disabled"] is True and "410" in ep["disabled_reason"]
    # a disabled endpoint is owed nothing new, and cannot be redelivered to until re-enabled
    later = await cancelled_job(client, receiver.url + "/own")
    assert [d["endpoint_id"] for d in await settled(client, later["id"])] == [None]
    r = await client.post(f"/v1/deliveries/{gone['id']}/redeliver")
    assert r.status_code == 409 and "disabled" in r.json()["detail"]
    r = await client.patch(f"/v1/webhooks/{endpoint['id']}", json={"disabled": False})
    assert r.status_code == 200 and r.json()["disabled"] is False
    assert (await client.post(f"/v1/deliveries/{gone['id']}/redeliver")).status_code == 202


async def test_an_endpoint_failing_for_longer_than_the_window_is_disabled(
    make_client: ClientFactory, receiver: Receiver, settings: Settings, registry: Registry
) -> None:
    client = await make_client("acme")
    quick = settings.model_copy(update={"webhook_disable_after_s": 0.5, "webhook_backoff_max_attempts": 10})
    receiver.default = 500
    endpoint = (
        await client.post("/v1/webhooks", json={"url": receiver.url + "/down", "events": ["job.cancelled"]})
    ).json()
    d = Dispatcher(quick)
    await d.start()
    try:
        await cancelled_job(client, receiver.url + "/ignored")

        async def disabled() -> dict[str, Any] | None:
            ep = (await client.get(f"/v1/webhooks/{endpoint['id']}")).json()
            return ep if ep["disabled"] else None

        ep = await eventually(disabled, timeout=10, what="the endpoint to be disabled")
    finally:
        await d.stop()
    assert "failing without a success since" in ep["disabled_reason"]
    (gone,) = (await client.get(f"/v1/webhooks/{endpoint['id']}/deliveries")).json()["items"]
    assert gone["status"] == "failed" and gone["last_error"].startswith("endpoint disabled")


# ---- what an attempt does with the answer --------------------------------------------------------


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(
    client: httpx.AsyncClient, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    url = receiver.on("/moved", answer(302, Location="/elsewhere"), 200)
    job = await cancelled_job(client, url)
    (d,) = await settled(client, job["id"])
    assert [a["status_code"] for a in d["attempt_history"]] == [302, 200]
    assert "not followed" in d["attempt_history"][0]["error"]
    assert receiver.at("/elsewhere") == []


async def test_a_slow_receiver_hits_the_deadline(
    client: httpx.AsyncClient, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    url = receiver.on("/slow", sleep_then(5), 200)
    job = await cancelled_job(client, url)
    (d,) = await settled(client, job["id"])
    first = d["attempt_history"][0]
    assert first["status_code"] is None and "within 1 s" in first["error"]
    assert 900 <= first["duration_ms"] <= 2500
    assert d["status"] == "delivered"


async def test_a_huge_answer_is_read_only_up_to_the_cap(
    client: httpx.AsyncClient, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    total = 200 * 1024 * 1024
    written = [0]

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_length = total
        await response.prepare(request)
        chunk = b"x" * (1024 * 1024)
        try:
            while written[0] < total:
                await response.write(chunk)
                written[0] += len(chunk)
        except (ConnectionResetError, ConnectionError):
            pass
        return response

    url = receiver.on("/huge", huge)
    job = await cancelled_job(client, url)
    (d,) = await settled(client, job["id"])
    assert d["status"] == "delivered" and d["attempts"] == 1
    assert d["attempt_history"][0]["duration_ms"] < 900
    await asyncio.sleep(0.2)
    assert written[0] < total // 4, written[0]  # the dispatcher hung up long before the end


async def test_one_slow_endpoint_cannot_take_every_slot(
    client: httpx.AsyncClient, receiver: Receiver, settings: Settings
) -> None:
    capped = settings.model_copy(update={"webhook_endpoint_concurrency": 2, "webhook_concurrency": 8})
    receiver.script["/slow"] = [sleep_then(0.7) for _ in range(100)]
    slow = (
        await client.post("/v1/webhooks", json={"url": receiver.url + "/slow", "events": ["job.cancelled"]})
    ).json()
    jobs = [await cancelled_job(client, receiver.url + "/fast") for _ in range(6)]
    d = Dispatcher(capped)
    t0 = time.monotonic()
    await d.start()
    try:
        for job in jobs:
            fast = [x for x in await settled(client, job["id"], timeout=10) if x["endpoint_id"] is None]
            assert fast and fast[0]["status"] == "delivered"
        fast_done = time.monotonic() - t0
        await eventually(
            lambda: _all_delivered(client, slow["id"], 6), timeout=20, what="the slow endpoint's deliveries"
        )
    finally:
        await d.stop()
    assert receiver.max_in_flight["/slow"] <= 2
    # six slow deliveries two at a time take ≥ 2.1 s (each under the 1 s attempt deadline); the fast
    # destination did not wait for them (with room for a busy machine)
    assert fast_done < 1.5, fast_done


async def _all_delivered(client: httpx.AsyncClient, endpoint_id: str, n: int) -> bool:
    items = (await client.get(f"/v1/webhooks/{endpoint_id}/deliveries")).json()["items"]
    return len(items) == n and all(d["status"] == "delivered" for d in items)


# ---- the outbox --------------------------------------------------------------------------------


async def test_deliveries_commit_with_the_job_change_that_owes_them(
    client: httpx.AsyncClient, pool: asyncpg.Pool, receiver: Receiver, worker: WorkerService
) -> None:
    progress_ep = (
        await client.post("/v1/webhooks", json={"url": receiver.url + "/p", "events": ["job.progress"]})
    ).json()
    job = await submit(client, "demo.sleep", {"seconds": 0.3, "steps": 3}, webhook_url=receiver.url + "/own")
    await wait_status(client, job["id"], "completed")
    rows = await pool.fetch(
        "SELECT d.event_type, d.endpoint_id, d.seq, e.type FROM deliveries d"
        " JOIN job_events e ON e.job_id = d.job_id AND e.seq = d.seq WHERE d.job_id = $1 ORDER BY d.seq",
        uuid.UUID(job["id"]),
    )
    # no dispatcher runs: every delivery is still pending, one per owed event, each tied to its event
    own = [r for r in rows if r["endpoint_id"] is None]
    progress = [r for r in rows if r["endpoint_id"] is not None]
    assert [(r["event_type"], r["type"]) for r in own] == [("job.completed", "completed")]
    assert progress and all(r["event_type"] == "job.progress" and r["type"] == "progress" for r in progress)
    assert str(progress[0]["endpoint_id"]) == progress_ep["id"]
    assert {d["status"] for d in await deliveries_of(client, job["id"])} == {"pending"}


# ---- SSRF ---------------------------------------------------------------------------------------

BLOCKED = [
    "http://127.0.0.1:9/hook",
    "http://10.1.2.3/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]:9/hook",
    "http://[::ffff:127.0.0.1]:9/hook",
    "http://localhost:9/hook",  # a name that resolves to loopback
]


async def test_private_destinations_are_refused_at_registration(
    settings: Settings, registry: Registry, make_client: ClientFactory
) -> None:
    strict = Api(settings.model_copy(update={"webhook_allow_private": False}), registry)
    await strict.start()
    try:
        key_client = await make_client("acme")
        async with httpx.AsyncClient(base_url=strict.url, headers=key_client.headers) as c:
            for url in BLOCKED:
                r = await c.post("/v1/webhooks", json={"url": url})
                assert r.status_code == 422, (url, r.text)
                assert r.json()["errors"][0]["loc"] == ["body", "url"]
                r = await c.post("/v1/jobs", json={"type": "test.block", "webhook_url": url})
                assert r.status_code == 422, (url, r.text)
                assert r.json()["errors"][0]["loc"] == ["body", "webhook_url"]
            assert (await c.get("/v1/webhooks")).json()["items"] == []
    finally:
        await strict.stop()


async def test_private_destinations_are_refused_again_at_connect_time(
    client: httpx.AsyncClient, receiver: Receiver, settings: Settings
) -> None:
    # accepted while private addresses were allowed (as a DNS answer that changes later would be)
    by_literal = await cancelled_job(client, f"http://127.0.0.1:{receiver.port}/literal")
    by_name = await cancelled_job(client, f"http://localhost:{receiver.port}/name")
    strict = Dispatcher(settings.model_copy(update={"webhook_allow_private": False}))
    await strict.start()
    try:
        for job in (by_literal, by_name):
            (d,) = await settled(client, job["id"])
            assert d["status"] == "failed" and d["attempts"] == 3
            assert all(a["error"].startswith("refused") for a in d["attempt_history"]), d
    finally:
        await strict.stop()
    assert receiver.requests == []


# ---- the endpoints API ------------------------------------------------------------------------


async def test_endpoints_crud_validation_and_tenant_isolation(
    make_client: ClientFactory, receiver: Receiver
) -> None:
    acme = await make_client("acme")
    other = await make_client("globex")
    r = await acme.post("/v1/webhooks", json={"url": receiver.url + "/a", "description": "billing"})
    assert r.status_code == 201 and r.headers["Location"] == f"/v1/webhooks/{r.json()['id']}"
    ep = r.json()
    assert ep["events"] == ["job.completed", "job.failed", "job.cancelled"] and ep["disabled"] is False
    schemas.EndpointWithSecret.model_validate(ep)  # the documented shape

    for bad, loc in [
        ({"url": "ftp://x/y"}, "url"),
        ({"url": receiver.url, "events": ["job.exploded"]}, "events"),
        ({"url": receiver.url, "events": []}, "events"),
        ({"url": receiver.url, "events": ["job.failed", "job.failed"]}, "events"),
        ({"url": receiver.url, "colour": "red"}, "colour"),
    ]:
        r = await acme.post("/v1/webhooks", json=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"][0]["loc"][:2] == ["body", loc], r.json()
    assert (
        await acme.post("/v1/webhooks", content=b"{", headers={"content-type": "application/json"})
    ).status_code == 400

    r = await acme.patch(f"/v1/webhooks/{ep['id']}", json={"events": ["job.started"], "description": "x"})
    assert r.status_code == 200 and r.json()["events"] == ["job.started"] and r.json()["description"] == "x"
    listed = (await acme.get("/v1/webhooks")).json()
    schemas.EndpointList.model_validate(listed)
    assert [e["id"] for e in listed["items"]] == [ep["id"]] and "secret" not in listed["items"][0]

    # another tenant sees none of it: 404 exactly like an unknown id
    assert (await other.get("/v1/webhooks")).json()["items"] == []
    for method, path in [
        ("GET", f"/v1/webhooks/{ep['id']}"),
        ("PATCH", f"/v1/webhooks/{ep['id']}"),
        ("DELETE", f"/v1/webhooks/{ep['id']}"),
        ("POST", f"/v1/webhooks/{ep['id']}/rotate-secret"),
        ("GET", f"/v1/webhooks/{ep['id']}/deliveries"),
        ("GET", "/v1/webhooks/not-a-uuid"),
    ]:
        r = await other.request(method, path, json={} if method == "PATCH" else None)
        assert r.status_code == 404, (method, path, r.text)
    # each tenant has its own signing secret
    assert (await acme.get("/v1/webhooks/signing-secret")).json()["secret"] != (
        await other.get("/v1/webhooks/signing-secret")
    ).json()["secret"]

    assert (await acme.delete(f"/v1/webhooks/{ep['id']}")).status_code == 204
    assert (await acme.get(f"/v1/webhooks/{ep['id']}")).status_code == 404


async def test_deliveries_are_private_to_their_tenant(
    make_client: ClientFactory, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    acme = await make_client("acme")
    other = await make_client("globex")
    admin = await make_client("ops", admin=True)
    job = await cancelled_job(acme, receiver.url + "/own")
    (d,) = await settled(acme, job["id"])
    assert (await other.get(f"/v1/jobs/{job['id']}/deliveries")).status_code == 404
    assert (await other.get(f"/v1/deliveries/{d['id']}")).status_code == 404
    assert (await other.post(f"/v1/deliveries/{d['id']}/redeliver")).status_code == 404
    assert (await admin.get(f"/v1/deliveries/{d['id']}")).status_code == 200


async def test_webhook_metrics_are_exported(
    client: httpx.AsyncClient, api: Api, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    url = receiver.on("/m", 500, 200)
    job = await cancelled_job(client, url)
    await settled(client, job["id"])
    async with httpx.AsyncClient(timeout=10) as plain:
        text = (await plain.get(f"{api.url}/metrics")).text
    assert 'jobwire_webhook_attempts_total{outcome="5xx"} 1.0' in text
    assert 'jobwire_webhook_attempts_total{outcome="success"} 1.0' in text
    assert 'jobwire_webhook_deliveries_total{outcome="delivered"} 1.0' in text
    assert "jobwire_webhook_delivery_latency_seconds_count 1.0" in text
    assert "jobwire_webhook_deliveries_pending 0.0" in text


async def test_a_redelivery_goes_out_at_once_not_at_the_next_poll(
    client: httpx.AsyncClient, receiver: Receiver, settings: Settings
) -> None:
    # a dispatcher that polls once a minute: only the database's notification can wake it
    d = Dispatcher(settings.model_copy(update={"webhook_poll_s": 60}))
    await d.start()
    try:
        url = receiver.on("/once", 200)
        job = await cancelled_job(client, url)
        (delivery,) = await settled(client, job["id"])
        assert delivery["status"] == "delivered"
        t0 = time.monotonic()
        r = await client.post(f"/v1/deliveries/{delivery['id']}/redeliver")
        assert r.status_code == 202, r.text
        await eventually(
            lambda: asyncio.sleep(0, len(receiver.at("/once")) == 2), timeout=5, what="the redelivery"
        )
        assert time.monotonic() - t0 < 3
    finally:
        await d.stop()


# ---- shutdown ----------------------------------------------------------------------------------


async def _absorb_a_cancel(entered: asyncio.Event) -> None:
    """What asyncio.wait_for does on Python 3.11 (redis-py awaits every socket write with it) when
    a cancel lands just as the operation completes: it returns as if nothing had happened."""
    entered.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(30)


async def _stops_at_once(d: Dispatcher) -> None:
    t0 = time.monotonic()
    async with asyncio.timeout(10):
        await d.stop()
    assert time.monotonic() - t0 < 3


async def test_stop_ends_when_the_writer_absorbs_its_cancel(
    client: httpx.AsyncClient, receiver: Receiver, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    recording = asyncio.Event()

    async def record_deliveries(*_: object) -> None:
        await _absorb_a_cancel(recording)

    monkeypatch.setattr(jobmetrics, "record_deliveries", record_deliveries)
    d = Dispatcher(settings)
    await d.start()
    try:
        job = await cancelled_job(client, receiver.url + "/h")
        await asyncio.wait_for(recording.wait(), 10)  # the writer is past the attempt's row, at its metrics
    finally:
        await _stops_at_once(d)
    assert [x["status"] for x in await deliveries_of(client, job["id"])] == ["delivered"]


async def test_stop_ends_when_the_listener_absorbs_its_cancel(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    connecting = asyncio.Event()
    connect = db.connect

    async def slow_connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
        await _absorb_a_cancel(connecting)
        conn: asyncpg.Connection = await connect(*args, **kwargs)
        return conn

    monkeypatch.setattr(db, "connect", slow_connect)
    d = Dispatcher(settings)
    await d.start()
    await asyncio.wait_for(connecting.wait(), 10)
    await _stops_at_once(d)
