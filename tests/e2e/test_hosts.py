"""Three hosts joined only by a network, on this machine: network namespaces A, B and C on a bridge.
C runs PostgreSQL, a Redis primary and replica and three Sentinels on its own address; A and B each
run an api, a worker and a dispatcher; the test, on the bridge, is the client driving load through
both apis, following streams, and receiving webhooks. Under load:

1. every process of host B is killed, and B comes back;
2. host A is cut off from Redis for 15 s by a firewall rule, and healed;
3. host A is cut off from PostgreSQL for 15 s, and healed;
4. host A's worker is frozen (SIGSTOP) past its lease, and resumed.

Then everything is accounted for: every 202 terminal with one terminal event and a gapless sequence,
every owed webhook delivered and verified with the reference library, every stream complete, and
no write of a run after another run of its job started (each write is signed by its run). The
recovery times are printed; the README records them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from jobwire import db
from tests.conftest import ROOT, eventually, http_ready, make_settings, new_key, submit
from tests.e2e import netns
from tests.e2e.load import (
    Follower,
    Load,
    account,
    all_finished,
    assert_all_honoured,
    assert_webhooks_honoured,
    stuck,
    unfinished,
)
from tests.e2e.sentinel import MASTER, SentinelRedis
from tests.e2e.servers import PostgresServer
from tests.integration.test_faults import worker_env
from tests.receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

LEASE_S = 4  # a job whose worker stops renewing its lease runs elsewhere this long after
CUT_S = 15
API_PORT = 8000
JOB = {"type": "test.traced", "params": {"seconds": 1, "steps": 4}}


@dataclass
class Host:
    """One application host: `jobwire api`, `worker` and `dispatcher` inside its namespace."""

    net: netns.Network
    name: str
    env: dict[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    boots: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.net.ip[self.name]}:{API_PORT}"

    def start(self) -> None:
        self.boots += 1
        commands = {
            "api": ["api", "--host", self.net.ip[self.name], "--port", str(API_PORT)],
            "worker": ["worker", "--concurrency", "10"],
            "dispatcher": ["dispatcher"],
        }
        for role, args in commands.items():
            log = (self.log_dir / f"{self.name}-{role}-{self.boots}.log").open("wb")
            # `ip netns exec` execs the command: the pid is jobwire's own
            self.procs[role] = subprocess.Popen(
                [*self.net.exec(self.name), sys.executable, "-m", "jobwire", *args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def ready(self) -> None:
        await http_ready(self.url, timeout=30)

    def log(self, role: str) -> str:
        return "".join(p.read_text() for p in sorted(self.log_dir.glob(f"{self.name}-{role}-*.log")))


@dataclass
class Cluster:
    net: netns.Network
    pg: PostgresServer
    redis: SentinelRedis
    hosts: dict[str, Host]
    database: str
    receiver: Receiver


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(f"the multi-host fault test needs network namespaces: {reason}")
    net = netns.Network(["a", "b", "c"])
    pg: PostgresServer | None = None
    redis: SentinelRedis | None = None
    receiver: Receiver | None = None
    hosts: dict[str, Host] = {}
    try:
        net.create()
        c = net.ip["c"]
        pg = PostgresServer(c, prefix=net.exec("c"), trust=net.subnet)
        pg.start()
        redis = SentinelRedis(c, prefix=net.exec("c"))
        redis.start()
        await db.migrate(pg.url)
        receiver = Receiver(net.client_ip)
        await receiver.start()
        settings = make_settings(
            pg.url,
            "multihost",
            redis_url="redis://no-such-host.invalid:6379/0",
            redis_sentinels=redis.sentinels,
            redis_sentinel_master=MASTER,
            webhook_allow_private=True,
        )
        for name in ("a", "b"):
            env = worker_env(
                settings,
                TEST_HOST=name.upper(),
                JOBWIRE_WORKER_LEASE_S=str(LEASE_S),
                JOBWIRE_RECONCILE_INTERVAL_S="1",
                JOBWIRE_SSE_HEARTBEAT_S="2",
                JOBWIRE_WEBHOOK_TIMEOUT_S="2",
                JOBWIRE_WEBHOOK_LEASE_S="3",
                JOBWIRE_WEBHOOK_BACKOFF_BASE_S="0.2",
                JOBWIRE_WEBHOOK_POLL_S="1",
            )
            hosts[name] = Host(net, name, env, tmp_path)
            hosts[name].start()
        await asyncio.gather(*(h.ready() for h in hosts.values()))
        yield Cluster(net, pg, redis, hosts, pg.url, receiver)
    finally:
        for host in hosts.values():
            for proc in host.procs.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)  # a frozen worker must be able to die
                proc.kill()
                proc.wait(10)
        if receiver is not None:
            await receiver.stop()
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.remove()
        net.remove()


async def fetch(database: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database, timeout=5)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def running_on(database: str, who: str) -> list[uuid.UUID]:
    """Running jobs whose current run's latest write was signed by `who` (a host, or host/pid)."""
    rows = await fetch(
        database,
        "SELECT j.id FROM jobs j WHERE j.status = 'running' AND (SELECT message FROM job_events e"
        " WHERE e.job_id = j.id ORDER BY seq DESC LIMIT 1) LIKE $1",
        who + "/%",
    )
    return [r["id"] for r in rows]


async def restarted_after(database: str, job_ids: list[uuid.UUID], after: float) -> bool:
    """Whether every one of these jobs started again (or ended) after `after` (epoch seconds)."""
    rows = await fetch(
        database,
        "SELECT count(*) AS n FROM jobs j WHERE j.id = ANY($1::uuid[]) AND NOT EXISTS (SELECT 1 FROM"
        " job_events e WHERE e.job_id = j.id AND e.at > to_timestamp($2)"
        " AND e.type IN ('started', 'completed', 'failed', 'cancelled'))",
        job_ids,
        after,
    )
    return bool(rows[0]["n"] == 0)


async def seconds_until(
    database: str, check: Callable[[], Awaitable[bool]], since: float, what: str, jobs: list[str]
) -> float:
    """Seconds from `since` (epoch) until `check` holds, polled every 0.1 s; on a timeout the
    failure shows where the unfinished ones of `jobs` are."""
    try:
        await eventually(check, timeout=60, interval=0.1, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; unfinished among them: {await stuck(database, jobs)}") from None
    return time.time() - since


def superseded_writes(events: list[asyncpg.Record]) -> list[str]:
    """Writes of a run that landed after a later run of its job had started: each progress write
    and result is signed host/pid/attempt, and the k-th start is attempt k (no manual retries
    here)."""
    wrong: list[str] = []
    starts = 0
    for e in events:
        if e["type"] == "started":
            starts += 1
        elif e["type"] == "progress" and e["message"] and int(e["message"].rsplit("/", 1)[1]) != starts:
            wrong.append(f"seq {e['seq']}: {e['message']} after start {starts}")
        elif e["type"] == "completed" and (result := json.loads(e["data"]))["attempt"] != starts:
            wrong.append(f"seq {e['seq']}: result of {result['by']} after start {starts}")
    return wrong


async def test_hosts_killed_cut_off_and_frozen_lose_nothing(cluster: Cluster) -> None:
    net, database, hosts = cluster.net, cluster.database, cluster.hosts
    a, b = hosts["a"], hosts["b"]
    key = await new_key(database, "acme")
    hook = cluster.receiver.url + "/hook"
    body = {**JOB, "webhook_url": hook}
    # one client per api: a request hanging on a cut-off api holds up only its own
    loads = [Load([h.url], key, body, every_s=0.15) for h in (a, b)]
    stop = asyncio.Event()
    loading = [asyncio.ensure_future(load.run(stop)) for load in loads]
    followers: list[Follower] = []
    following: list[asyncio.Future[None]] = []
    long_jobs: list[str] = []
    recovery: dict[str, float] = {}

    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        secret = (await http.get(a.url + "/v1/webhooks/signing-secret")).json()["secret"]

        async def follow_new_jobs(seconds: float) -> None:
            """Jobs that run through the next fault, followed live: one stream through each api
            (moving to the other when it fails) and one stream of them all."""
            http.base_url = httpx.URL(a.url)
            params = {"seconds": seconds, "steps": int(seconds * 4)}
            made = [(await submit(http, "test.traced", params, webhook_url=hook))["id"] for _ in range(2)]
            long_jobs.extend(made)
            group = [
                Follower([a.url, b.url], key, [made[0]], read_timeout_s=8),
                Follower([b.url, a.url], key, [made[1]], read_timeout_s=8),
                Follower([a.url, b.url], key, made, read_timeout_s=8),
            ]
            followers.extend(group)
            following.extend(asyncio.ensure_future(f.run()) for f in group)

        async def drained_after(since: float, what: str) -> float:
            """Seconds from `since` until every job the load had been answered 202 for by then is
            terminal (the followed jobs are left out: they are made to outlast the fault)."""
            accepted = [j for load in loads for j in load.accepted]

            async def done() -> bool:
                return await unfinished(database, accepted) == 0

            return await seconds_until(database, done, since, what, accepted)

        # ---- 1. host B dies -------------------------------------------------------------------
        await follow_new_jobs(8)
        await asyncio.sleep(3)
        on_b = await running_on(database, "B")
        assert on_b, "host B ran no job when it was killed"
        killed = time.time()
        net.kill_all("b")
        recovery["host B killed -> its running jobs running on A"] = await seconds_until(
            database,
            lambda: restarted_after(database, on_b, killed),
            killed,
            "B's jobs to run elsewhere",
            [str(j) for j in on_b],
        )
        for proc in b.procs.values():
            proc.wait(10)
        b.start()  # the host comes back
        await b.ready()

        # ---- 2. host A cut off from Redis -----------------------------------------------------
        await follow_new_jobs(CUT_S + 4)
        redis_ports = [cluster.redis.primary_port, cluster.redis.replica_port, *cluster.redis.sentinel_ports]
        net.cut("a", "c", redis_ports)
        await asyncio.sleep(CUT_S)
        net.heal("a")
        healed = time.time()
        recovery["A cut from Redis 15 s, healed -> backlog drained"] = await drained_after(
            healed, "the backlog after the Redis cut"
        )

        # ---- 3. host A cut off from PostgreSQL ------------------------------------------------
        await follow_new_jobs(CUT_S + 4)
        net.cut("a", "c", [cluster.pg.port])
        await asyncio.sleep(CUT_S)
        net.heal("a")
        healed = time.time()
        recovery["A cut from PostgreSQL 15 s, healed -> backlog drained"] = await drained_after(
            healed, "the backlog after the PostgreSQL cut"
        )

        # ---- 4. host A's worker frozen past its lease ------------------------------------------
        worker = a.procs["worker"]
        await eventually(
            lambda: running_on(database, f"A/{worker.pid}"), timeout=30, what="A's worker to hold jobs"
        )
        frozen_jobs = await running_on(database, f"A/{worker.pid}")
        worker.send_signal(signal.SIGSTOP)
        frozen = time.time()
        recovery["A's worker frozen -> its jobs running on B"] = await seconds_until(
            database,
            lambda: restarted_after(database, frozen_jobs, frozen),
            frozen,
            "the frozen worker's jobs to run elsewhere",
            [str(j) for j in frozen_jobs],
        )
        await asyncio.sleep(1)
        worker.send_signal(signal.SIGCONT)
        await asyncio.sleep(2)  # it wakes, writes what it was writing, and is refused
        stop.set()
        await asyncio.gather(*loading)

    # ---- the accounts -----------------------------------------------------------------------
    accepted = [j for load in loads for j in load.accepted] + long_jobs
    for load in loads:
        assert not load.bad, load.bad[:5]
    assert all(len(load.accepted) > 50 for load in loads), [load.statuses for load in loads]
    await all_finished(database, accepted, timeout=60)
    report = await account(database, accepted)
    assert_all_honoured(report)
    assert report["statuses"] == {"completed": len(accepted)}, report

    events = await fetch(database, "SELECT * FROM job_events ORDER BY job_id, seq")
    by_job: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for e in events:
        by_job.setdefault(e["job_id"], []).append(e)
    wrong = [w for evs in by_job.values() for w in superseded_writes(evs)]
    assert not wrong, wrong[:10]
    taken_over = sum(1 for evs in by_job.values() if sum(e["type"] == "started" for e in evs) > 1)
    assert taken_over >= len(on_b) + len(frozen_jobs)
    # the frozen worker did try to write for the runs taken from it, and was refused
    assert "superseded run" in a.log("worker")
    for job_id in frozen_jobs:
        assert any(e["type"] == "started" and e["at"].timestamp() > frozen for e in by_job[job_id])

    await asyncio.wait_for(asyncio.gather(*following), timeout=30)
    for follower in followers:
        follower.assert_complete()
    owed = await assert_webhooks_honoured(database, accepted, cluster.receiver.at("/hook"), secret, 60)
    summary = "; ".join(f"{what}: {seconds:.1f} s" for what, seconds in recovery.items())
    reconnects = sum(f.reconnects for f in followers)
    # what a job costs PostgreSQL here: a job with 4 progress events and one webhook, indexes included
    tables = ("jobs", "job_events", "deliveries", "delivery_attempts")
    sizes = " + ".join(f"pg_total_relation_size('{t}')" for t in tables)
    per_job = (await fetch(database, f"SELECT ({sizes})::float8 / count(*) AS b FROM jobs"))[0]["b"]
    print(
        f"\nmulti-host recovery: {summary} ({len(accepted)} jobs, {taken_over} taken over, {owed} "
        f"webhooks, {reconnects} stream reconnects; {per_job / 1024:.1f} KiB of PostgreSQL per job)"
    )
