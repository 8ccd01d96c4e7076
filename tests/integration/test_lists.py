"""The lists that share jobwire.db.newest_first (batches, schedules, webhook endpoints): newest
first, page by page with the cursor, and only the caller's tenant."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from jobwire.config import Settings
from tests.conftest import QUICK_WEBHOOKS, ClientFactory, make_settings


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(database, namespace, **QUICK_WEBHOOKS)


def create_body(path: str, n: int) -> dict[str, Any]:
    job = {"type": "demo.sleep", "params": {"seconds": 0}}
    if path == "/v1/batches":
        return {"jobs": [{**job, "delay_s": 86400}]}
    if path == "/v1/schedules":
        return {"name": f"every-hour-{n}", "interval_s": 3600, "job": job}
    return {"url": f"http://127.0.0.1:9/hook-{n}"}


async def pages(client: httpx.AsyncClient, path: str, limit: int) -> list[list[str]]:
    found: list[list[str]] = []
    params: dict[str, str | int] = {"limit": limit}
    while True:
        r = await client.get(path, params=params)
        assert r.status_code == 200, r.text
        found.append([item["id"] for item in r.json()["items"]])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return found
        params["cursor"] = cursor


@pytest.mark.parametrize("path", ["/v1/batches", "/v1/schedules", "/v1/webhooks"])
async def test_pages_are_newest_first_and_the_tenants_own(make_client: ClientFactory, path: str) -> None:
    acme, other = await make_client("acme"), await make_client("other")
    made = []
    for n in range(5):
        r = await acme.post(path, json=create_body(path, n))
        assert r.status_code in (201, 202), r.text
        made.append(r.json()["id"])
    r = await other.post(path, json=create_body(path, 99))
    assert r.status_code in (201, 202), r.text

    newest_first = made[::-1]
    assert await pages(acme, path, 2) == [newest_first[:2], newest_first[2:4], newest_first[4:]]
    assert await pages(acme, path, 5) == [newest_first]
    assert await pages(other, path, 2) == [[r.json()["id"]]]
