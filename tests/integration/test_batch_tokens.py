"""A batch's stream token outlives a long batch: past its expiry it still opens the stream of a
batch that runs, and the TTL bounds its life only once the batch has ended."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from jobwire.config import Settings
from tests.conftest import Api, eventually, make_settings
from tests.integration.test_stream_tokens import expired_copy


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(database, namespace, stream_token_ttl_s=1, batch_settle_s=0.05)


async def test_an_expired_batch_token_streams_while_the_batch_runs_and_not_long_after(
    api: Api, client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    r = await client.post("/v1/batches", json={"jobs": [{"type": "test.block", "params": {"seconds": 30}}]})
    batch = r.json()
    old = expired_copy(batch["events_url"], settings)

    async def status(token: str) -> int:
        path = f"/v1/batches/{batch['id']}/events?token={token}"
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as anon, anon.stream("GET", path) as r:
            return r.status_code

    assert await status(old) == 200  # a reconnect hours later: no 401 while the batch runs
    assert (await client.post(f"/v1/batches/{batch['id']}/cancel")).status_code == 200

    async def settled() -> bool:
        return bool((await client.get(f"/v1/batches/{batch['id']}")).json()["finished_at"])

    await eventually(settled, what="the cancelled batch to settle")
    await pool.execute(
        "UPDATE batches SET settled_at = now() - interval '1 minute' WHERE id = $1::uuid", batch["id"]
    )
    assert await status(old) == 401
    fresh = (await client.get(f"/v1/batches/{batch['id']}")).json()["events_url"].split("token=")[1]
    assert await status(fresh) == 200
