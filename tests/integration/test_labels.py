"""Labels: stored and validated on submission, and `GET /v1/jobs?label=k:v` (all must match, with the
other filters and the cursor, tenant-scoped)."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from jobwire import jobstore
from jobwire.ids import new_id
from tests.conftest import ClientFactory, submit


async def test_labels_are_stored_and_shown(client: httpx.AsyncClient) -> None:
    job = await submit(client, "demo.sleep", {"seconds": 1}, labels={"customer": "acme", "env": "prod"})
    assert job["labels"] == {"customer": "acme", "env": "prod"}
    r = await client.get(f"/v1/jobs/{job['id']}")
    assert r.json()["labels"] == {"customer": "acme", "env": "prod"}
    plain = await submit(client, "demo.sleep", {"seconds": 1})
    assert plain["labels"] == {}


@pytest.mark.parametrize(
    ("labels", "loc"),
    [
        ({"Customer": "acme"}, ["body", "labels", "Customer", "[key]"]),
        ({"a:b": "x"}, ["body", "labels", "a:b", "[key]"]),
        ({"": "x"}, ["body", "labels", "", "[key]"]),
        ({"k" * 64: "x"}, ["body", "labels", "k" * 64, "[key]"]),
        ({"customer": "x" * 256}, ["body", "labels", "customer"]),
        ({"customer": 3}, ["body", "labels", "customer"]),
        ({f"k{i}": "v" for i in range(21)}, ["body", "labels"]),
        (["customer"], ["body", "labels"]),
    ],
)
async def test_bad_labels_are_a_422_naming_them(
    client: httpx.AsyncClient, labels: object, loc: list[object]
) -> None:
    r = await client.post("/v1/jobs", json={"type": "demo.sleep", "params": {"seconds": 1}, "labels": labels})
    assert r.status_code == 422, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert [e["loc"] for e in r.json()["errors"]] == [loc]
    # nothing stored
    assert (await client.get("/v1/jobs")).json()["items"] == []


async def test_limits_of_labels_are_accepted(client: httpx.AsyncClient) -> None:
    labels = {f"k{i}": "v" * 255 for i in range(19)} | {"k" * 63: ""}
    job = await submit(client, "demo.sleep", {"seconds": 1}, labels=labels)
    assert job["labels"] == labels


async def _ids(client: httpx.AsyncClient, **params: object) -> list[str]:
    r = await client.get("/v1/jobs", params=params)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    return [j["id"] for j in r.json()["items"]]


async def test_label_filter_matches_jobs_with_every_label_given(client: httpx.AsyncClient) -> None:
    a = await submit(client, "demo.sleep", {"seconds": 1}, labels={"customer": "acme", "env": "prod"})
    b = await submit(client, "demo.sleep", {"seconds": 1}, labels={"customer": "acme", "env": "dev"})
    c = await submit(client, "demo.fail", {}, labels={"customer": "acme", "env": "prod", "x": "1"})
    await submit(client, "demo.sleep", {"seconds": 1}, labels={"customer": "globex", "env": "prod"})
    await submit(client, "demo.sleep", {"seconds": 1})
    # a value that is a prefix, or the key as a value, matches nothing
    await submit(client, "demo.sleep", {"seconds": 1}, labels={"customer": "acme-2"})

    assert await _ids(client, label="customer:acme") == [c["id"], b["id"], a["id"]]
    assert await _ids(client, label=["customer:acme", "env:prod"]) == [c["id"], a["id"]]
    assert await _ids(client, label=["env:prod", "customer:acme", "x:1"]) == [c["id"]]
    assert await _ids(client, label="customer:nobody") == []
    assert await _ids(client, label="env:") == []
    # with the other filters and the cursor
    assert await _ids(client, label="customer:acme", type="demo.sleep") == [b["id"], a["id"]]
    assert await _ids(client, label="customer:acme", status="pending") == [c["id"], b["id"], a["id"]]
    assert await _ids(client, label="customer:acme", status="running") == []
    r = await client.get("/v1/jobs", params={"label": "customer:acme", "limit": 2})
    page = r.json()
    assert [j["id"] for j in page["items"]] == [c["id"], b["id"]]
    rest = await _ids(client, label="customer:acme", limit=2, cursor=page["next_cursor"])
    assert rest == [a["id"]]


async def test_label_values_may_hold_colons_and_be_empty(client: httpx.AsyncClient) -> None:
    url = await submit(client, "demo.sleep", {"seconds": 1}, labels={"src": "s3://bucket/a:b"})
    empty = await submit(client, "demo.sleep", {"seconds": 1}, labels={"note": ""})
    assert await _ids(client, label="src:s3://bucket/a:b") == [url["id"]]
    assert await _ids(client, label="note:") == [empty["id"]]


@pytest.mark.parametrize(
    "label", ["customer", "Customer:acme", ":acme", "a b:c", "k" * 64 + ":v", "k:" + "v" * 256]
)
async def test_malformed_label_filter_is_a_422(client: httpx.AsyncClient, label: str) -> None:
    r = await client.get("/v1/jobs", params={"label": label})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["query", "label"]


async def test_a_label_key_given_twice_is_a_422(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/jobs", params={"label": ["env:prod", "env:dev"]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "label"]


async def test_label_filter_is_tenant_scoped(make_client: ClientFactory) -> None:
    acme, globex = await make_client("acme"), await make_client("globex")
    mine = await submit(acme, "demo.sleep", {"seconds": 1}, labels={"customer": "shared"})
    theirs = await submit(globex, "demo.sleep", {"seconds": 1}, labels={"customer": "shared"})
    assert await _ids(acme, label="customer:shared") == [mine["id"]]
    assert await _ids(globex, label="customer:shared") == [theirs["id"]]
    admin = await make_client("ops", admin=True)
    assert await _ids(admin, label="customer:shared") == [theirs["id"], mine["id"]]
    assert await _ids(admin, label="customer:shared", tenant="globex") == [theirs["id"]]


async def test_every_insert_path_indexes_labels_and_a_purge_takes_them_along(pool: asyncpg.Pool) -> None:
    """The list walks job_labels, filled by a trigger on jobs: a job inserted alone (the scheduler's
    path, an idempotent submission) or in a group commit is listed by label, and its rows go with
    it."""

    def job(labels: dict[str, str]) -> jobstore.NewJob:
        return jobstore.NewJob(
            id=new_id(),
            tenant="acme",
            type="demo.sleep",
            params={},
            priority="normal",
            max_attempts=1,
            webhook_url=None,
            labels=labels,
        )

    alone = job({"src": "one", "env": "prod"})
    group = [job({"src": "many", "env": "prod"}), job({}), job({"src": "many"})]
    async with pool.acquire() as conn:
        await jobstore.insert_job(conn, alone)
        await jobstore.insert_jobs(conn, group)
    rows = await pool.fetch("SELECT job_id, key, value, tenant FROM job_labels ORDER BY job_id, key")
    assert {(r["job_id"], r["key"], r["value"], r["tenant"]) for r in rows} == {
        (alone.id, "env", "prod", "acme"),
        (alone.id, "src", "one", "acme"),
        (group[0].id, "env", "prod", "acme"),
        (group[0].id, "src", "many", "acme"),
        (group[2].id, "src", "many", "acme"),
    }

    async def listed(labels: dict[str, str], tenant: str | None = "acme") -> list[uuid.UUID]:
        f = jobstore.JobFilter(tenant=tenant, labels=labels)
        return [r["id"] for r in await jobstore.list_filtered(pool, f, limit=10)]

    assert await listed({"env": "prod"}) == [group[0].id, alone.id]
    # one statement's jobs share their created_at: newest first, then by id
    many = sorted([group[2].id, group[0].id], reverse=True)
    assert await listed({"src": "many"}) == many
    assert await listed({"src": "many", "env": "prod"}) == [group[0].id]
    assert await listed({"src": "many"}, tenant="other") == []
    assert await listed({"src": "many"}, tenant=None) == many

    await pool.execute("DELETE FROM jobs WHERE id = $1", group[0].id)
    assert await pool.fetchval("SELECT count(*) FROM job_labels WHERE job_id = $1", group[0].id) == 0
    assert await listed({"src": "many"}) == [group[2].id]
