"""Webhook delivery: one `jobwire dispatcher` process's throughput against a bare aiohttp sender, and
the latency from a job's completion to its webhook's arrival.

    python -m bench.webhooks [--deliveries N] [--rounds R] [--latency-jobs J] [--write-readme]

1. Throughput. N jobs with a webhook_url are cancelled with the api's own statement
   (`jobstore.cancel_pending`) in one transaction, so N deliveries, written by the transitions
   exactly as in production, commit at once while an idle dispatcher waits on LISTEN. Timed from
   that commit to the last `delivered_at` in PostgreSQL (the receiver's count is checked too). The
   ceiling (`bench/receiver.py send`) POSTs N signed bodies of the same shape to the same receiver
   with as many requests in flight as the dispatcher allows one destination, and no database.
2. Latency. J running jobs are completed with a worker's statement (`jobstore.complete`), one every
   ~10 ms, while the dispatcher idles: from the wall-clock time right after each completion's commit
   returned to the receiver's arrival time of its webhook-id.

The receiver, the dispatcher and the sender each run in their own process (uvloop everywhere). The
machine is shared and noisy: rounds alternate ceiling and jobwire, and the table reports medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any
from uuid import uuid4

import aiohttp
import asyncpg
from redis.asyncio import Redis

from bench.harness import (
    REDIS_URL,
    RESULTS,
    ROOT,
    Figure,
    Procs,
    arguments,
    cpu_seconds,
    fmt_ms,
    free_port,
    jobwire_command,
    load_1m,
    note,
    nproc,
    own_database,
    parse,
    percentile,
    report_stderr,
    save_results,
    server_env,
    today,
    verdict,
    wait_until_answering,
    warn,
)
from jobwire import db, jobstore
from jobwire.config import Settings
from jobwire.jobstore import NewJob
from jobwire.keys import Keys
from jobwire.redis_client import delete_namespace
from jobwire.webhooks import signing
from jobwire.webhooks import store as webhookstore

# a database of its own: the phases truncate every job table between runs
WEBHOOKS_DATABASE_URL = own_database("webhooks")
NAMESPACE = "bench-webhooks"
TENANT = "bench-webhooks"
WEBHOOKS_ENV = {
    "JOBWIRE_DATABASE_URL": WEBHOOKS_DATABASE_URL,
    "JOBWIRE_NAMESPACE": NAMESPACE,
    "JOBWIRE_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver listens on 127.0.0.1
    "JOBWIRE_LOG_LEVEL": "warning",  # one info line per attempt would measure the logger
    "JOBWIRE_LOG_FORMAT": "json",
}
INSERT_CHUNK = 5000  # jobs per INSERT statement while building the backlog
LATENCY_WARMUP = 20  # completions before the measured ones: the first pay for pools and connections
LATENCY_TARGET_MS = 50.0
THROUGHPUT_TARGET = 1000.0
READY_TIMEOUT_S = 30.0
POLL_S = 0.1


@dataclass
class Drain:
    """One throughput run: N deliveries from one process to the receiver."""

    target: str  # jobwire or ceiling
    round: int
    deliveries: int
    elapsed_s: float
    per_s: float
    cpu_pct: float  # the sending process's CPU time over elapsed_s
    received: int  # requests the receiver counted
    unique: int  # distinct webhook-ids among them
    failed: int  # jobwire: deliveries left failed or pending; ceiling: non-2xx answers and errors
    load_1m: float  # the machine's load average when the run started


@dataclass
class Latency:
    jobs: int
    every_s: float
    arrived: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    latencies_ms: list[float]


def bench_env() -> dict[str, str]:
    return server_env(WEBHOOKS_ENV)


def in_flight_to_one_receiver() -> int:
    """What one dispatcher keeps in flight to a single destination; the ceiling gets the same."""
    settings = Settings()
    return min(settings.webhook_concurrency, settings.webhook_endpoint_concurrency)


# ---- processes -------------------------------------------------------------------------------


class Receiver:
    """The receiver process (bench/receiver.py serve) and the questions this benchmark asks it."""

    def __init__(self, procs: Procs) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hook_url = f"{self.url}/hook"
        self.proc = procs.start(
            "receiver", [sys.executable, "-m", "bench.receiver", "serve", "--port", str(self.port)]
        )
        wait_until_answering("receiver", self.proc, self.port, procs.logs["receiver"])
        self._http = aiohttp.ClientSession()

    async def close(self) -> None:
        await self._http.close()

    async def reset(self) -> None:
        async with self._http.post(f"{self.url}/_bench/reset") as resp:
            resp.raise_for_status()

    async def count(self) -> tuple[int, int]:
        """(requests, distinct webhook-ids) so far."""
        async with self._http.get(f"{self.url}/_bench/count") as resp:
            counts: dict[str, int] = await resp.json()
        return counts["requests"], counts["unique"]

    async def arrivals(self) -> dict[str, float]:
        async with self._http.get(f"{self.url}/_bench/arrivals") as resp:
            body: dict[str, Any] = await resp.json()
        arrived: dict[str, float] = body["arrivals"]
        return arrived

    async def wait_unique(self, n: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while (await self.count())[1] < n:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(POLL_S)
        return True


# ---- database --------------------------------------------------------------------------------


def migrate() -> None:
    subprocess.run(
        [jobwire_command(), "migrate"], env=bench_env(), check=True, stdout=subprocess.DEVNULL, cwd=ROOT
    )


async def reset_db(pool: asyncpg.Pool) -> None:
    await pool.execute("TRUNCATE jobs, job_events, idempotency_keys, deliveries, delivery_attempts CASCADE")


async def clean_redis() -> None:
    """The dispatcher's delivery metrics, under this benchmark's namespace."""
    redis = Redis.from_url(REDIS_URL)
    try:
        await delete_namespace(redis, Keys(NAMESPACE))
    finally:
        await redis.aclose()


async def signing_secret(pool: asyncpg.Pool) -> str:
    """The tenant's signing secret, created ahead as `GET /v1/webhooks/signing-secret` would: a
    receiver that verifies signatures has asked for it before its first webhook."""
    row = await webhookstore.signing_secret(pool, TENANT, signing.new_secret())
    secret: str = row["secret"]
    return secret


async def insert_jobs(pool: asyncpg.Pool, n: int, webhook_url: str) -> list[NewJob]:
    jobs = [NewJob(uuid4(), TENANT, "bench.noop", {"i": i}, "normal", 3, webhook_url) for i in range(n)]
    for start in range(0, n, INSERT_CHUNK):
        await jobstore.insert_jobs(pool, jobs[start : start + INSERT_CHUNK])
    return jobs


async def start_dispatcher(procs: Procs, pool: asyncpg.Pool) -> subprocess.Popen[bytes]:
    """Start `jobwire dispatcher` and return once it listens for deliveries, so that nothing of its
    start-up (imports, pools) falls inside a measurement."""
    since = await pool.fetchval("SELECT now()")  # backends opened after this are the new process's
    proc = procs.start("dispatcher", [jobwire_command(), "dispatcher"])
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise SystemExit(
                f"the dispatcher exited with code {proc.returncode}; see {procs.logs['dispatcher']}"
            )
        listening = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND backend_start >= $1 AND query LIKE 'LISTEN %'",
            since,
        )
        if listening:
            return proc
        if time.monotonic() > deadline:
            raise SystemExit(f"the dispatcher did not LISTEN within {READY_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.05)


# ---- throughput ------------------------------------------------------------------------------


async def jobwire_drain(procs: Procs, pool: asyncpg.Pool, receiver: Receiver, n: int, round_no: int) -> Drain:
    await reset_db(pool)
    await receiver.reset()
    jobs = await insert_jobs(pool, n, receiver.hook_url)
    dispatcher = await start_dispatcher(procs, pool)
    try:
        load = load_1m()
        cpu0 = cpu_seconds(dispatcher.pid)
        # one transaction: the dispatcher sees the whole backlog at once, woken by its commit
        async with pool.acquire() as conn, conn.transaction():
            for job in jobs:
                if await jobstore.cancel_pending(conn, job.id, TENANT) is None:
                    raise SystemExit(f"job {job.id} could not be cancelled")
        committed_at = time.time()
        settled = await wait_settled(pool, timeout_s=max(60.0, n / 100))
        cpu = cpu_seconds(dispatcher.pid) - cpu0
    finally:
        procs.stop(dispatcher)
    if not settled:
        note(f"  warning: deliveries still pending after the timeout; see {procs.logs['dispatcher']}")
    row = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'delivered') AS delivered,"
        " EXTRACT(EPOCH FROM max(delivered_at))::float8 AS last_delivered FROM deliveries"
    )
    assert row is not None
    requests, unique = await receiver.count()
    elapsed = (row["last_delivered"] or time.time()) - committed_at
    return Drain(
        target="jobwire",
        round=round_no,
        deliveries=n,
        elapsed_s=elapsed,
        per_s=row["delivered"] / elapsed,
        # the dispatcher idles after the last delivery: its CPU time all went into the drain
        cpu_pct=100 * cpu / elapsed,
        received=requests,
        unique=unique,
        failed=n - row["delivered"],
        load_1m=load,
    )


async def wait_settled(pool: asyncpg.Pool, timeout_s: float) -> bool:
    """Wait until no delivery is pending (each delivered, or failed after its retries)."""
    deadline = time.monotonic() + timeout_s
    while await pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'"):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True


async def ceiling_drain(
    procs: Procs, receiver: Receiver, n: int, in_flight: int, secret: str, round_no: int
) -> Drain:
    await receiver.reset()
    load = load_1m()
    command = [
        sys.executable,
        "-m",
        "bench.receiver",
        "send",
        "--url",
        receiver.hook_url,
        "--n",
        str(n),
        "--concurrency",
        str(in_flight),
        "--secret",
        secret,
    ]
    sender = procs.start("sender", command, stdout=subprocess.PIPE)
    try:
        out, _ = sender.communicate(timeout=max(60.0, n / 100))
    finally:
        procs.stop(sender)
    if sender.returncode != 0:
        raise SystemExit(f"the sender exited with code {sender.returncode}; see {procs.logs['sender']}")
    sent: dict[str, float] = json.loads(out)
    requests, unique = await receiver.count()
    return Drain(
        target="ceiling",
        round=round_no,
        deliveries=n,
        elapsed_s=sent["elapsed_s"],
        per_s=sent["ok"] / sent["elapsed_s"],
        cpu_pct=100 * sent["cpu_s"] / sent["elapsed_s"],
        received=requests,
        unique=unique,
        failed=int(sent["errors"]),
        load_1m=load,
    )


# ---- latency ---------------------------------------------------------------------------------


async def complete_paced(pool: asyncpg.Pool, jobs: Sequence[NewJob], every_s: float) -> dict[str, float]:
    """Complete the jobs one every `every_s`; returns each completion's webhook-id and the wall-clock
    time right after its commit (autocommit: the statement's return is the commit)."""
    committed: dict[str, float] = {}
    async with pool.acquire() as conn:
        t0 = time.monotonic()
        for i, job in enumerate(jobs):
            await asyncio.sleep(max(0.0, t0 + i * every_s - time.monotonic()))
            row = await jobstore.complete(conn, job.id, 1, {"ok": True})  # its first run
            at = time.time()
            if row is None:
                raise SystemExit(f"job {job.id} could not be completed")
            committed[signing.message_id(job.id, row["last_seq"])] = at
    return committed


async def measure_latency(
    procs: Procs, pool: asyncpg.Pool, receiver: Receiver, n: int, every_s: float
) -> Latency:
    await reset_db(pool)
    await receiver.reset()
    jobs = await insert_jobs(pool, LATENCY_WARMUP + n, receiver.hook_url)
    async with pool.acquire() as conn:
        for job in jobs:
            # a worker's start: a job's own webhook_url is owed its terminal event only
            await jobstore.start_pending(conn, job.id)
    dispatcher = await start_dispatcher(procs, pool)
    try:
        await complete_paced(pool, jobs[:LATENCY_WARMUP], every_s)
        if not await receiver.wait_unique(LATENCY_WARMUP, timeout_s=30):
            note("  warning: not every warm-up webhook arrived")
        committed = await complete_paced(pool, jobs[LATENCY_WARMUP:], every_s)
        await receiver.wait_unique(LATENCY_WARMUP + n, timeout_s=30)
        arrived = await receiver.arrivals()
        await wait_settled(pool, timeout_s=10)
    finally:
        procs.stop(dispatcher)
    failed = await pool.fetchval("SELECT count(*) FROM deliveries WHERE status <> 'delivered'")
    latencies = sorted((arrived[msg] - at) * 1000 for msg, at in committed.items() if msg in arrived)
    return Latency(
        jobs=n,
        every_s=every_s,
        arrived=len(latencies),
        failed=failed,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else float("nan"),
        latencies_ms=latencies,
    )


# ---- report ----------------------------------------------------------------------------------


def median_drain(drains: list[Drain], target: str) -> float:
    return statistics.median(d.per_s for d in drains if d.target == target)


def spread(drains: list[Drain], target: str) -> str:
    rates = sorted(d.per_s for d in drains if d.target == target)
    return f"{rates[0]:,.0f}" if len(rates) == 1 else f"{rates[0]:,.0f}-{rates[-1]:,.0f}"


def throughput_met(per_s: float) -> bool:
    return per_s >= THROUGHPUT_TARGET


def headline(drains: list[Drain]) -> list[Figure]:
    """The issue's figure for `python -m bench`, judged as the table judges it."""
    jobwire, ceiling = median_drain(drains, "jobwire"), median_drain(drains, "ceiling")
    return [
        Figure(
            figure="webhook deliveries, one dispatcher, local receiver",
            jobwire=f"{jobwire:,.0f}/s",
            baseline=f"bare sender: {ceiling:,.0f}/s",
            ratio=f"{jobwire / ceiling:.2f}x",
            target=f"≥ {THROUGHPUT_TARGET:,.0f}/s",
            met=throughput_met(jobwire),
        )
    ]


def render(header: str, drains: list[Drain], latency: Latency, in_flight: int) -> str:
    jobwire, ceiling = median_drain(drains, "jobwire"), median_drain(drains, "ceiling")
    cpu = {t: statistics.median(d.cpu_pct for d in drains if d.target == t) for t in ("jobwire", "ceiling")}
    n = drains[0].deliveries
    rate = f"1 per {latency.every_s * 1000:g} ms"
    lines = [
        header,
        "",
        "| figure | jobwire dispatcher | bare sender | ratio | target | met |",
        "| --- | ---: | ---: | ---: | --- | --- |",
        f"| throughput, {n:,} deliveries | {jobwire:,.0f}/s | {ceiling:,.0f}/s | {jobwire / ceiling:.2f}x "
        f"| ≥ {THROUGHPUT_TARGET:,.0f}/s | {verdict(throughput_met(jobwire))} |",
        f"| CPU of the sending process | {cpu['jobwire']:.0f}% | {cpu['ceiling']:.0f}% |  |  |  |",
        f"| latency p50, commit to arrival ({latency.jobs} jobs, {rate}) | {fmt_ms(latency.p50_ms)} "
        "|  |  |  |  |",
        f"| latency p99 | {fmt_ms(latency.p99_ms)} |  |  | ≤ {LATENCY_TARGET_MS:g} ms "
        f"| {verdict(latency.p99_ms <= LATENCY_TARGET_MS)} |",
        f"| latency max | {fmt_ms(latency.max_ms)} |  |  |  |  |",
        "",
        f"Throughput: {n:,} jobs with a webhook_url cancelled in one transaction while the dispatcher "
        "idled, timed from that commit to the last `delivered_at`; the bare sender POSTs as many "
        f"signed bodies, {in_flight} in flight (the dispatcher's cap per destination), with no database. "
        f"Rounds: jobwire {spread(drains, 'jobwire')}/s, bare sender {spread(drains, 'ceiling')}/s. "
        "Latency: a worker's completion statement from the bench process, to the webhook's arrival at "
        "the receiver, same clock, with the dispatcher idle on LISTEN. Load average (1 min) at the "
        f"rounds' start: {min(d.load_1m for d in drains):.1f}-{max(d.load_1m for d in drains):.1f}.",
    ]
    return "\n".join(lines)


def anomalies(drains: list[Drain], latency: Latency) -> list[str]:
    found: list[str] = []
    for d in drains:
        where = f"{d.target}, round {d.round}"
        if d.failed:
            found.append(f"{where}: {d.failed} of {d.deliveries} not delivered")
        if d.unique < d.deliveries:
            found.append(f"{where}: the receiver saw {d.unique} of {d.deliveries} webhook-ids")
        if d.received > d.unique:
            found.append(f"{where}: {d.received - d.unique} duplicate requests")
    if latency.arrived < latency.jobs:
        found.append(f"latency: {latency.jobs - latency.arrived} of {latency.jobs} webhooks did not arrive")
    if latency.failed:
        found.append(f"latency: {latency.failed} deliveries not delivered")
    return found


# ---- main ------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, procs: Procs) -> tuple[list[Drain], Latency, int]:
    in_flight = in_flight_to_one_receiver()
    pool = await db.create_pool(WEBHOOKS_DATABASE_URL, max_size=2)
    receiver = Receiver(procs)
    try:
        await reset_db(pool)
        secret = await signing_secret(pool)
        drains: list[Drain] = []
        # interleaved, so slow drift of the machine's load spreads over both alike
        for round_no in range(1, args.rounds + 1):
            note(f"round {round_no}/{args.rounds}: bare sender, {args.deliveries:,} POSTs")
            drains.append(await ceiling_drain(procs, receiver, args.deliveries, in_flight, secret, round_no))
            note(f"  {drains[-1].per_s:,.0f}/s")
            note(f"round {round_no}/{args.rounds}: jobwire dispatcher, {args.deliveries:,} deliveries")
            drains.append(await jobwire_drain(procs, pool, receiver, args.deliveries, round_no))
            note(f"  {drains[-1].per_s:,.0f}/s")
        note(f"latency: {args.latency_jobs} completions, one every {args.every_ms:g} ms")
        latency = await measure_latency(procs, pool, receiver, args.latency_jobs, args.every_ms / 1000)
        note(f"  p50 {latency.p50_ms:.2f} ms, p99 {latency.p99_ms:.2f} ms")
        await reset_db(pool)
    finally:
        await receiver.close()
        await pool.close()
        await clean_redis()
    return drains, latency, in_flight


def main(argv: list[str] | None = None) -> int:
    parser = arguments("webhooks", __doc__)
    parser.add_argument("--deliveries", type=int, default=20_000, help="backlog per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds; the median is reported")
    parser.add_argument("--latency-jobs", type=int, default=500, help="completions timed for latency")
    parser.add_argument("--every-ms", type=float, default=10.0, help="between two timed completions")
    args = parse(parser, "webhooks", argv)

    RESULTS.mkdir(parents=True, exist_ok=True)
    note("preparing database jobwire_bench_webhooks")
    migrate()
    procs = Procs("webhooks", bench_env)
    t0 = time.monotonic()
    try:
        drains, latency, in_flight = asyncio.run(run(args, procs))
    finally:
        procs.stop_all()
    note(f"done in {time.monotonic() - t0:.0f} s")

    date = today()
    rounds = "1 round" if args.rounds == 1 else f"median of {args.rounds} rounds"
    header = (
        f"Webhook delivery, {date}: nproc {nproc()}, one `jobwire dispatcher` process to one local receiver "
        f"(aiohttp, answers 200 at once), {rounds}"
    )
    table = render(header, drains, latency, in_flight)
    print(table)

    found = anomalies(drains, latency)
    warn(found)
    report_stderr(procs.logs)
    payload: dict[str, Any] = {
        "date": date,
        "nproc": nproc(),
        "deliveries": args.deliveries,
        "rounds": args.rounds,
        "in_flight": in_flight,
        "table": table,
        "headline": [asdict(f) for f in headline(drains)],
        "anomalies": found,
        "drains": [asdict(d) for d in drains],
        "latency": asdict(latency),
    }
    save_results("webhooks", payload, args.write_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
