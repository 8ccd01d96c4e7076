"""POST /v1/jobs: acceptance, durability, validation, idempotency, Prefer: wait."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx

from tests.conftest import ClientFactory, submit, wait_status
from workers.worker import WorkerService

PROBLEM = "application/problem+json"


async def test_submit_answers_202_and_the_job_is_already_durable(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    r = await client.post("/v1/jobs", json={"type": "demo.sleep", "params": {"seconds": 2, "steps": 4}})
    assert r.status_code == 202
    job = r.json()
    assert r.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "pending" and job["type"] == "demo.sleep"
    assert job["params"] == {"seconds": 2.0, "steps": 4}
    assert job["priority"] == "normal" and job["attempts"] == 0 and job["max_attempts"] == 3
    assert job["progress"] == 0.0 and job["result"] is None and job["error"] is None
    assert job["status_url"] == f"/v1/jobs/{job['id']}"
    assert job["events_url"].startswith(f"/v1/jobs/{job['id']}/events?token=")
    assert job["created_at"].endswith("Z") and job["started_at"] is None
    # durable before the answer: the row and its `created` event are committed
    row = await pool.fetchrow("SELECT status, tenant FROM jobs WHERE id = $1", uuid.UUID(job["id"]))
    assert row is not None and row["status"] == "pending" and row["tenant"] == "acme"
    events = await pool.fetch("SELECT seq, type FROM job_events WHERE job_id = $1", uuid.UUID(job["id"]))
    assert [(e["seq"], e["type"]) for e in events] == [(1, "created")]


async def test_submitted_job_runs_to_completion(client: httpx.AsyncClient, worker: WorkerService) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 0.2, "steps": 2}, priority="high")
    done = await wait_status(client, job["id"], "completed")
    assert done["progress"] == 100.0
    assert done["result"] == {"slept": 0.2, "steps": 2}
    assert done["attempts"] == 1 and done["message"] == "step 2/2"
    assert done["started_at"] and done["finished_at"]


async def test_bad_bodies_get_problem_documents(client: httpx.AsyncClient) -> None:
    cases: list[tuple[dict[str, object], int, list[object] | None]] = [
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, None),
        ({"content": b'{"type": "demo.sleep"}', "headers": {"Content-Type": "text/plain"}}, 415, None),
        ({"content": b'{"type": "demo.sleep"}'}, 415, None),
        ({"json": ["a", "list"]}, 422, ["body"]),
        ({"json": {"type": "no.such.type"}}, 422, ["body", "type"]),
        ({"json": {"type": "demo.sleep", "params": {"seconds": -1}}}, 422, ["body", "params", "seconds"]),
        ({"json": {"type": "demo.sleep", "params": {"steps": "many"}}}, 422, ["body", "params", "steps"]),
        ({"json": {"type": "demo.sleep", "params": {"bogus": 1}}}, 422, ["body", "params", "bogus"]),
        ({"json": {"type": "demo.sleep", "priority": "urgent"}}, 422, ["body", "priority"]),
        ({"json": {"type": "demo.sleep", "webhook_url": "ftp://x"}}, 422, ["body", "webhook_url"]),
        ({"json": {"type": "demo.sleep", "extra": True}}, 422, ["body", "extra"]),
        (
            {
                "json": {
                    "type": "report.generate",
                    "params": {"start_date": "2026-02-01", "end_date": "2026-01-01"},
                }
            },
            422,
            ["body", "params"],
        ),
    ]
    for kwargs, status, loc in cases:
        r = await client.post("/v1/jobs", **kwargs)  # type: ignore[arg-type]
        assert r.status_code == status, (kwargs, r.text)
        assert r.headers["Content-Type"].startswith(PROBLEM)
        problem = r.json()
        assert problem["status"] == status and problem["title"] and problem["detail"]
        assert "Traceback" not in r.text
        if loc is not None:
            assert loc in [e["loc"] for e in problem["errors"]], problem
    assert (await client.get("/v1/jobs")).json()["items"] == []  # nothing was stored


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    big = b'{"type": "demo.sleep", "params": {"pad": "' + b"x" * (1024 * 1024) + b'"}}'
    r = await client.post("/v1/jobs", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.headers["Content-Type"].startswith(PROBLEM)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 100_000

    r = await client.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


async def test_idempotency_key_replays_the_original(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    body = {"type": "demo.sleep", "params": {"seconds": 1}}
    first = await client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    # the same body with other whitespace and key order is the same request
    again = await client.post(
        "/v1/jobs",
        content=b'{ "params": {"seconds": 1},   "type": "demo.sleep" }',
        headers={"Idempotency-Key": "order-42", "Content-Type": "application/json"},
    )
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 1

    other = await client.post(
        "/v1/jobs", json={**body, "priority": "high"}, headers={"Idempotency-Key": "order-42"}
    )
    assert other.status_code == 422
    assert other.json()["type"] == "urn:jobwire:problem:idempotency-key-reuse"
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 1

    for bad in ("", "x" * 256):
        r = await client.post("/v1/jobs", json=body, headers={"Idempotency-Key": bad})
        assert r.status_code == 400, bad


async def test_idempotency_under_concurrency_creates_one_job(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    body = {"type": "demo.sleep", "params": {"seconds": 1}}
    answers = await asyncio.gather(
        *(client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "burst"}) for _ in range(20))
    )
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 19
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 1


async def test_idempotency_keys_are_per_tenant(make_client: ClientFactory, pool: asyncpg.Pool) -> None:
    a, b = await make_client("tenant-a"), await make_client("tenant-b")
    body = {"type": "demo.sleep", "params": {}}
    ra = await a.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k"})
    rb = await b.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k"})
    assert ra.status_code == rb.status_code == 202
    assert ra.json()["id"] != rb.json()["id"]


async def test_idempotency_key_still_in_flight_is_409(
    client: httpx.AsyncClient, worker: WorkerService
) -> None:
    body = {"type": "demo.sleep", "params": {"seconds": 1.5}}
    headers = {"Idempotency-Key": "slow", "Prefer": "wait=10"}
    first = asyncio.ensure_future(client.post("/v1/jobs", json=body, headers=headers))
    await asyncio.sleep(0.5)
    second = await client.post("/v1/jobs", json=body, headers=headers)
    assert second.status_code == 409
    assert second.headers["Retry-After"]
    done = await first
    assert done.status_code == 200
    # once answered, the key replays the original answer, status code included
    third = await client.post("/v1/jobs", json=body, headers=headers)
    assert third.status_code == 200 and third.headers["Idempotent-Replayed"] == "true"
    assert third.json()["id"] == done.json()["id"] and third.json()["status"] == "completed"


async def test_prefer_wait_returns_the_finished_job(client: httpx.AsyncClient, worker: WorkerService) -> None:
    r = await client.post(
        "/v1/jobs", json={"type": "demo.sleep", "params": {"seconds": 0.2}}, headers={"Prefer": "wait=10"}
    )
    assert r.status_code == 200
    assert r.headers["Preference-Applied"] == "wait=10"
    assert r.json()["status"] == "completed" and r.json()["result"] == {"slept": 0.2, "steps": 1}

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    r = await client.post(
        "/v1/jobs", json={"type": "demo.sleep", "params": {"seconds": 5}}, headers={"Prefer": "wait=1"}
    )
    assert r.status_code == 202 and "Preference-Applied" not in r.headers
    assert 0.9 < loop.time() - t0 < 3
    assert r.json()["status"] in ("pending", "running")


async def test_webhook_urls_must_be_public_unless_allowed(client: httpx.AsyncClient) -> None:
    for url in (
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.5/x",
        "http://[::ffff:127.0.0.1]/",
    ):
        r = await client.post("/v1/jobs", json={"type": "demo.sleep", "webhook_url": url})
        assert r.status_code == 422, url
        assert r.json()["errors"][0]["loc"] == ["body", "webhook_url"]
    ok = await client.post(
        "/v1/jobs", json={"type": "demo.sleep", "webhook_url": "https://93.184.216.34/hook"}
    )
    assert ok.status_code == 202 and ok.json()["webhook_url"] == "https://93.184.216.34/hook"
