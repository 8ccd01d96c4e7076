"""Behind PgBouncer in transaction pooling mode: api, worker and dispatcher reach PostgreSQL through
a bouncer with fewer server connections than they have clients (so consecutive transactions of one
client land on different server connections), while the dispatcher's LISTEN and the migration use
JOBWIRE_DATABASE_DIRECT_URL. A job's whole life works: submission, the worker, its SSE stream, and
its webhook, which the dispatcher is woken for by NOTIFY (its poll is 30 s)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from jobwire import db
from tests.conftest import PG_URL, eventually, make_settings, new_key, submit
from tests.e2e.load import Follower, account, all_finished, assert_all_honoured, assert_webhooks_honoured
from tests.e2e.servers import PgBouncer
from tests.integration.test_faults import WorkerProcess
from tests.integration.test_streams_faults import ApiProcess
from tests.integration.test_webhooks_faults import DispatcherProcess
from tests.receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


@pytest.fixture
def bouncer() -> Iterator[PgBouncer]:
    target = urlsplit(PG_URL)
    server = PgBouncer(target.hostname or "127.0.0.1", target.port or 5432, pool_size=3)
    try:
        yield server
    finally:
        server.stop()


def bounced_transactions(bouncer: PgBouncer, database: str) -> int:
    """Transactions PgBouncer carried to `database`, from its admin console's SHOW STATS (which
    speaks only the simple query protocol: psql, not asyncpg)."""
    out = subprocess.run(
        ["psql", "-X", "-A", "-F", "\t", "-c", "SHOW STATS", bouncer.url("pgbouncer")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    header = out[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=False)) for line in out[1:]]
    return sum(int(r["total_xact_count"]) for r in rows if r.get("database") == database)


async def test_a_jobs_whole_life_through_pgbouncer_in_transaction_mode(
    database: str, namespace: str, bouncer: PgBouncer, receiver: Receiver, tmp_path: Path
) -> None:
    name = db.database_name(database)
    await eventually(lambda: _answers(bouncer.url(name)), timeout=10, what="pgbouncer to answer")
    settings = make_settings(
        bouncer.url(name), namespace, database_direct_url=database, webhook_allow_private=True
    )
    assert settings.behind_pooler
    key = await new_key(database, "acme")
    api = ApiProcess(settings, tmp_path, "api")
    procs: list[ApiProcess | WorkerProcess | DispatcherProcess] = [
        api,
        WorkerProcess(settings, tmp_path, "worker", concurrency=10),
        DispatcherProcess(settings, tmp_path, "dispatcher", JOBWIRE_WEBHOOK_POLL_S="30"),
    ]
    try:
        await api.ready()
        hook = receiver.url + "/hook"
        async with httpx.AsyncClient(
            base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as http:
            secret = (await http.get("/v1/webhooks/signing-secret")).json()["secret"]
            jobs = await asyncio.gather(
                *(
                    submit(http, "demo.sleep", {"seconds": 0.2, "steps": 4}, webhook_url=hook)
                    for _ in range(60)
                )
            )
            ids = [j["id"] for j in jobs]
            # three one-job streams and one of twenty jobs
            followers = [Follower([api.url], key, [j]) for j in ids[:3]]
            followers.append(Follower([api.url], key, ids[-20:]))
            await asyncio.wait_for(asyncio.gather(*(f.run() for f in followers)), timeout=20)
            for follower in followers:
                follower.assert_complete()
            await all_finished(database, ids, timeout=20)
            report = await account(database, ids)
            assert_all_honoured(report)
            assert report["statuses"] == {"completed": len(ids)}, report
            await assert_webhooks_honoured(database, ids, receiver.at("/hook"), secret, timeout=15)

            # the dispatcher is idle now, its poll 30 s away: a new delivery reaches the receiver at
            # once only if its NOTIFY woke it, on the LISTEN held through the direct URL
            await asyncio.sleep(1)
            sent = time.monotonic()
            last = await submit(http, "demo.sleep", {"seconds": 0}, webhook_url=hook)
            arrived = await eventually(
                lambda: _arrived(receiver, last["id"]), timeout=5, what="the webhook woken by NOTIFY"
            )
            assert arrived - sent < 3
        assert bounced_transactions(bouncer, name) > 3 * len(ids)
        assert "prepared statement" not in bouncer.log()
    finally:
        for p in procs:
            p.proc.kill()
            p.proc.wait(10)


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, statement_cache_size=0, timeout=2)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def _arrived(receiver: Receiver, job_id: str) -> float | None:
    for r in receiver.at("/hook"):
        if r.json["data"]["id"] == job_id:
            return r.at
    return None
