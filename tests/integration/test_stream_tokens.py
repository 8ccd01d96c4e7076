"""Stream tokens outlive long jobs: past its expiry a token still opens the stream of a job that can
run, and the TTL bounds its life only once the job is terminal; GET hands out a fresh one."""

from __future__ import annotations

import base64
import time

import asyncpg
import httpx
import pytest

from jobwire.config import Settings
from jobwire.tokens import StreamTokens
from tests.conftest import make_settings, submit, wait_status


@pytest.fixture
def settings(database: str, namespace: str) -> Settings:
    return make_settings(database, namespace, stream_token_ttl_s=1)


def expired_copy(events_url: str, settings: Settings) -> str:
    """The same grant as the token in `events_url` (job, tenant, minting key), expired an hour ago."""
    token = events_url.split("token=")[1]
    payload = token.split(".")[0]
    job_id, tenant, key_id, _ = (
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode().split("|")
    )
    signer = StreamTokens(settings.require_secret_key(), settings.stream_token_ttl_s)
    return signer.issue(job_id, tenant, int(key_id), now=time.time() - 3600)


async def stream_status(anon: httpx.AsyncClient, job_id: str, token: str) -> int:
    async with anon.stream("GET", f"/v1/jobs/{job_id}/events?token={token}") as r:
        return r.status_code


async def test_an_expired_token_streams_while_its_job_can_run_and_not_long_after(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    job = await submit(client, "test.block", {"seconds": 30})  # no worker: pending for as long as it takes
    old = expired_copy(job["events_url"], settings)
    assert await stream_status(anon, job["id"], old) == 200  # a reconnect hours later: no 401
    r = await client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200
    # ended longer ago than the TTL: the old token is over, a fresh one from GET works
    await pool.execute(
        "UPDATE jobs SET finished_at = now() - interval '1 minute' WHERE id = $1::uuid", job["id"]
    )
    assert await stream_status(anon, job["id"], old) == 401
    fresh = (await wait_status(client, job["id"], "cancelled"))["events_url"].split("token=")[1]
    assert fresh != old and await stream_status(anon, job["id"], fresh) == 200
    # and a job that runs again (a retry) makes its old tokens good again
    assert (await client.post(f"/v1/jobs/{job['id']}/retry")).status_code == 202
    assert await stream_status(anon, job["id"], old) == 200


def test_any_ttl_of_a_second_or_more_is_accepted() -> None:
    assert Settings(stream_token_ttl_s=1).stream_token_ttl_s == 1
    with pytest.raises(ValueError):
        Settings(stream_token_ttl_s=0)
