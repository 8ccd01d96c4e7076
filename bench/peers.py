"""jobwire beside the systems its users would otherwise choose, in one run on one machine.

    python -m bench.peers [--jobs N] [--duration S] [--rounds R] [--latency-jobs M] [--write-readme]

The peers, each written as its documentation writes it (bench/peer_systems/): Celery 5 with Redis as
broker behind a FastAPI endpoint (its prefork pool at its default size, and its threads pool),
procrastinate (PostgreSQL), SAQ (Redis) and bare ARQ (Redis), each behind an aiohttp endpoint, and
BullMQ (Redis) behind Fastify on Node. They are installed for this benchmark only, never into the
project: a venv under ~/.cache/jobwire-bench/peers and an npm directory under
~/.cache/jobwire-bench/node (the first run creates both; Node and npm come from the system).

Three figures per system, rounds interleaving the systems:
- drain: N no-op jobs queued by the system's own client before ONE worker process starts at
  concurrency 50; timed from the first job leaving the system's queue to none being left, read from
  the system's own storage every 5 ms (Celery: the broker's list, so the last prefetched tasks, at
  most 4 per slot, may still run when the clock stops).
- HTTP submission: wrk (64 connections) against the system's endpoint, the server alone (its jobs
  stay queued), `POST /v1/jobs` enqueueing one no-op job per request.
- pickup: M jobs one at a time on an idle worker, from the enqueue's return (jobwire: the 202) to
  the job function's first line, same clock.
jobwire runs as deployed: its api, worker and dispatcher at their defaults (info logs, access log).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import venv
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import asyncpg
from redis.asyncio import Redis

from bench.harness import (
    BENCH,
    DATABASE_URL,
    DEFAULT_LOGGING,
    NOOP_BODY,
    POST_SCRIPT,
    REDIS_URL,
    RESULTS,
    ROOT,
    Figure,
    Procs,
    WrkResult,
    arguments,
    bench_jobs_env,
    free_port,
    jobwire_command,
    migrate_and_key,
    note,
    nproc,
    own_database,
    parse,
    percentile,
    post_env,
    report_logged_problems,
    require_wrk,
    run_wrk,
    save_results,
    today,
    verdict,
    wait_until_answering,
    warn,
)
from jobwire import db, jobstore
from jobwire.ids import new_id
from jobwire.keys import Keys
from jobwire.queue import enqueue, queued
from jobwire.redis_client import delete_namespace

CACHE = Path(os.environ.get("JOBWIRE_BENCH_CACHE") or Path.home() / ".cache" / "jobwire-bench")
PEERS_VENV = CACHE / "peers" / "venv"
NODE_DIR = CACHE / "node"
SYSTEMS = BENCH / "peer_systems"
# what the peers' venv and npm directory get; Celery pinned to the 5 line the comparison names
PIP_PACKAGES = (
    "celery[redis]>=5.4,<6",
    "fastapi",
    "uvicorn[standard]",
    "procrastinate>=3",
    "psycopg[binary]",
    "saq>=0.22",
    "aiohttp",
    "uvloop",
)
NPM_PACKAGES = ("bullmq", "fastify", "ioredis")

NAMESPACE = "bench-peers"
TENANT = "bench-peers"
KEYS = Keys(NAMESPACE)
JOBWIRE_DATABASE_URL = own_database("peers")
PROCRASTINATE_DATABASE_URL = own_database("peers_procrastinate")
CONCURRENCY = 50
CONNECTIONS = 64
WARMUP_S = 2
WATCH_S = 0.005
LATENCY_WARMUP = 5  # jobs through a fresh worker before the measured ones
# the targets, against BullMQ
DRAIN_TARGET = 0.5
SUBMIT_TARGET = 0.5


@dataclass(frozen=True)
class System:
    key: str
    label: str  # its column in the table
    durable: str  # what has happened when the enqueue (or the HTTP answer) returns
    per_job: str  # what its worker does for each job
    http: str  # its endpoint's server ("" when it shares another column's)


SYSTEMS_RUN = (
    System(
        "jobwire",
        "jobwire",
        "committed in PostgreSQL (synchronous commit), then queued in Redis",
        "pending → running → completed, each committed with its event row, published on pub/sub",
        "aiohttp (jobwire api)",
    ),
    System(
        "celery-prefork",
        "Celery 5 (prefork)",
        "in Redis (broker list)",
        "ack on receipt, no result stored (Celery's defaults)",
        "FastAPI on uvicorn",
    ),
    System("celery-threads", "Celery 5 (threads)", "in Redis (broker list)", "as prefork", ""),
    System(
        "procrastinate",
        "procrastinate",
        "committed in PostgreSQL",
        "job row todo → doing → succeeded, with its event rows",
        "aiohttp",
    ),
    System("saq", "SAQ", "in Redis", "job hash written at each status, kept after the end", "aiohttp"),
    System("arq", "bare ARQ", "in Redis", "lease, run, result kept in Redis", "aiohttp"),
    System("bullmq", "BullMQ (Node)", "in Redis", "lease, run, job kept in Redis as completed", "Fastify"),
)


@dataclass
class Measure:
    system: str
    figure: str  # drain, http, latency
    round: int
    value: float  # jobs/s, req/s, or the p50 in ms
    p99_ms: float | None = None
    detail: str = ""
    problem: str = ""


# ---- installing the peers --------------------------------------------------------------------


def peers_python() -> str:
    return str(PEERS_VENV / "bin" / "python")


def install() -> None:
    """The peers' venv and npm directory, created on the first run, checked on every run."""
    if not (PEERS_VENV / "bin" / "python").exists():
        note(f"creating the peers' venv in {PEERS_VENV} (once)")
        venv.create(PEERS_VENV, with_pip=True)
    check = [peers_python(), "-c", "import celery, fastapi, uvicorn, procrastinate, saq, aiohttp, uvloop"]
    if subprocess.run(check, capture_output=True, check=False).returncode != 0:
        note(f"installing {', '.join(PIP_PACKAGES)} into {PEERS_VENV}")
        subprocess.run([peers_python(), "-m", "pip", "install", "-q", *PIP_PACKAGES], check=True)
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise SystemExit("node and npm are needed for BullMQ: apt-get install nodejs npm")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    if not all((NODE_DIR / "node_modules" / name).exists() for name in NPM_PACKAGES):
        note(f"installing {', '.join(NPM_PACKAGES)} into {NODE_DIR}")
        if not (NODE_DIR / "package.json").exists():
            (NODE_DIR / "package.json").write_text('{"name": "jobwire-bench-peers", "private": true}\n')
        subprocess.run([npm, "install", "--silent", *NPM_PACKAGES], cwd=NODE_DIR, check=True)
    # an ES module resolves packages from its own directory: the script runs from a copy there
    shutil.copy(SYSTEMS / "bullmq_peer.mjs", NODE_DIR / "bullmq_peer.mjs")


def peer_command(system: str, *args: str) -> list[str]:
    """The command that runs one mode of a peer's script."""
    if system.startswith("celery"):
        return [peers_python(), str(SYSTEMS / "celery_peer.py"), *args]
    if system in ("procrastinate", "saq"):
        return [peers_python(), str(SYSTEMS / f"{system}_peer.py"), *args]
    if system == "arq":
        if args and args[0] == "work":  # the worker of bench.lifecycle's baseline
            return [sys.executable, "-m", "bench.bare_arq", "--queue", ARQ_QUEUE, "--max-jobs", args[2],
                    "--poll-delay", str(ARQ_POLL_S)]  # fmt: skip
        return [sys.executable, str(SYSTEMS / "arq_peer.py"), *args]
    if system == "bullmq":
        return [shutil.which("node") or "node", str(NODE_DIR / "bullmq_peer.mjs"), *args]
    raise ValueError(system)


ARQ_QUEUE = "bench-peers:arq-queue"
# ARQ's default poll (0.5 s) would make it start a batch of jobs only twice a second: jobwire's
# default poll instead, as the figures were taken
ARQ_POLL_S = 0.02


def peer_env() -> dict[str, str]:
    return {
        **os.environ,
        "JOBWIRE_BENCH_PEERS_PG": PROCRASTINATE_DATABASE_URL,
        "PYTHONPATH": str(ROOT),
    }


def jobwire_env() -> dict[str, str]:
    return bench_jobs_env(
        {"JOBWIRE_DATABASE_URL": JOBWIRE_DATABASE_URL, "JOBWIRE_NAMESPACE": NAMESPACE, **DEFAULT_LOGGING}
    )


# ---- state -----------------------------------------------------------------------------------


async def recreate_procrastinate_database() -> None:
    admin = await asyncpg.connect(DATABASE_URL.rpartition("/")[0] + "/postgres")
    name = PROCRASTINATE_DATABASE_URL.rpartition("/")[2]
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


def prepare() -> str:
    key = migrate_and_key(jobwire_env(), TENANT)
    asyncio.run(recreate_procrastinate_database())
    subprocess.run(
        [peers_python(), "-m", "procrastinate", "--app=procrastinate_peer.app", "schema", "--apply"],
        cwd=SYSTEMS,
        env=peer_env(),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return key


PEER_KEY_PATTERNS = (
    "bench-peers-celery*",
    "_kombu.binding.bench-peers-celery*",
    "unacked*",
    "saq:bench-peers-saq:*",
    "bull:bench-peers-bullmq:*",
    f"{ARQ_QUEUE}*",
    "arq:*bench-peers-*",
    "bench-peers:stamps*",
)


async def reset() -> None:
    """Every system's jobs and keys gone, so each measurement starts the same."""
    redis = Redis.from_url(REDIS_URL)
    try:
        await delete_namespace(redis, KEYS)
        for pattern in PEER_KEY_PATTERNS:
            doomed = [k async for k in redis.scan_iter(match=pattern, count=1000)]
            for start in range(0, len(doomed), 1000):
                await redis.unlink(*doomed[start : start + 1000])
    finally:
        await redis.aclose()
    for url, sql in (
        (JOBWIRE_DATABASE_URL, "TRUNCATE jobs, job_events, idempotency_keys CASCADE"),
        (PROCRASTINATE_DATABASE_URL, "TRUNCATE procrastinate_jobs CASCADE"),
    ):
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


async def llen(redis: Redis, key: str) -> int:
    # redis-py types the list commands for its sync and async clients at once
    return await cast(Awaitable[int], redis.llen(key))


async def remaining(system: str, redis: Redis, pg: asyncpg.Connection) -> int:
    """Jobs not yet finished, read from the system's own storage."""
    if system == "jobwire":
        return int(await redis.zcard(KEYS.queue))
    if system == "arq":
        return int(await redis.zcard(ARQ_QUEUE))
    if system.startswith("celery"):
        return await llen(redis, "bench-peers-celery")
    if system == "saq":
        return int(await redis.zcard("saq:bench-peers-saq:incomplete"))
    if system == "bullmq":
        return await llen(redis, "bull:bench-peers-bullmq:wait") + await llen(
            redis, "bull:bench-peers-bullmq:active"
        )
    if system == "procrastinate":
        left: int = await pg.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        )
        return left
    raise ValueError(system)


async def jobwire_backlog(n: int) -> None:
    """N no-op jobs through the path of POST /v1/jobs once a request is validated."""
    pool = await db.create_pool(JOBWIRE_DATABASE_URL, max_size=2)  # with jobwire's JSON codecs
    redis = Redis.from_url(REDIS_URL)
    try:
        for start in range(0, n, 1000):
            jobs = [
                jobstore.NewJob(new_id(), TENANT, "bench.noop", {}, "normal", 1, None)
                for _ in range(min(1000, n - start))
            ]
            rows = list((await jobstore.insert_jobs(pool, jobs)).values())
            await enqueue(redis, KEYS, [queued(r) for r in rows])
    finally:
        await redis.aclose()
        await pool.close()


# ---- the three figures -----------------------------------------------------------------------


def start_jobwire(procs: Procs, roles: tuple[str, ...], concurrency: int) -> int:
    """jobwire's processes at their defaults; returns the api's port (0 without one)."""
    port = 0
    for role in roles:
        if role == "api":
            port = free_port()
            api = procs.start(
                "jobwire-api", [jobwire_command(), "api", "--port", str(port)], env=jobwire_env()
            )
            wait_until_answering("jobwire api", api, port, procs.logs["jobwire-api"])
        elif role == "worker":
            command = [jobwire_command(), "worker", "--concurrency", str(concurrency)]
            procs.start("jobwire-worker", command, env=jobwire_env())
        else:
            procs.start(f"jobwire-{role}", [jobwire_command(), role], env=jobwire_env())
    return port


def start_worker(procs: Procs, system: str) -> None:
    if system == "jobwire":
        start_jobwire(procs, ("api", "dispatcher", "worker"), CONCURRENCY)
        return
    args = ["work", "--concurrency", str(CONCURRENCY)]
    if system == "celery-prefork":
        # prefork's default size: one child per CPU (50 children would be 50 processes)
        args = ["work", "--concurrency", str(nproc()), "--pool", "prefork"]
    elif system == "celery-threads":
        args += ["--pool", "threads"]
    procs.start(f"{system}-worker", peer_command(system, *args), env=peer_env())


async def drain(procs: Procs, system: str, n: int, round_no: int) -> Measure:
    await reset()
    if system == "jobwire":
        await jobwire_backlog(n)
    else:
        subprocess.run(peer_command(system, "fill", str(n)), env=peer_env(), check=True, cwd=ROOT)
    redis = Redis.from_url(REDIS_URL)
    pg = await asyncpg.connect(PROCRASTINATE_DATABASE_URL)
    problem = ""
    try:
        queued_now = await remaining(system, redis, pg)
        if queued_now != n:
            problem = f"{queued_now} jobs queued of {n}"
        await asyncio.sleep(1.0)  # the backlog's writes settle before the clock can start
        start_worker(procs, system)
        deadline = time.monotonic() + 60 + n / 20
        left = n
        while left >= queued_now and time.monotonic() < deadline:
            await asyncio.sleep(WATCH_S)
            left = await remaining(system, redis, pg)
        t0, first_left = time.monotonic(), left
        while left > 0 and time.monotonic() < deadline:
            await asyncio.sleep(WATCH_S)
            left = await remaining(system, redis, pg)
        elapsed = time.monotonic() - t0
        if left:
            problem = f"{left} jobs left after {elapsed:.0f} s"
    finally:
        procs.stop_all()
        await pg.close()
        await redis.aclose()
    per_s = first_left / elapsed if elapsed > 0 else float("nan")
    return Measure(
        system, "drain", round_no, per_s, detail=f"{first_left} jobs in {elapsed:.2f} s", problem=problem
    )


def http(procs: Procs, system: str, wrk: str, duration: int, key: str, round_no: int) -> Measure:
    asyncio.run(reset())
    try:
        if system == "jobwire":
            port = start_jobwire(procs, ("api",), CONCURRENCY)
        else:
            port = free_port()
            server = procs.start(
                f"{system}-http", peer_command(system, "serve", "--port", str(port)), env=peer_env()
            )
            wait_until_answering(system, server, port, procs.logs[f"{system}-http"])
        url = f"http://127.0.0.1:{port}/v1/jobs"
        env = post_env(key, NOOP_BODY)
        run_wrk(wrk, url, CONNECTIONS, WARMUP_S, POST_SCRIPT, env)
        result: WrkResult = run_wrk(wrk, url, CONNECTIONS, duration, POST_SCRIPT, env)
    finally:
        procs.stop_all()
    errors = result.non_2xx + result.socket_errors
    return Measure(
        system,
        "http",
        round_no,
        result.requests_per_s,
        result.p99_ms,
        detail=f"p50 {result.p50_ms:.2f} ms",
        problem=f"{errors} errors ({result.statuses})" if errors else "",
    )


async def jobwire_latency(port: int, key: str, jobs: int) -> tuple[list[float], int]:
    """The same loop as the peers' (bench/peer_systems/common.py), through POST /v1/jobs."""
    stamps = "bench-peers:stamps"
    redis = Redis.from_url(REDIS_URL)
    latencies: list[float] = []
    missing = 0
    headers = {"Authorization": f"Bearer {key}"}
    body = {"type": "bench.noop", "params": {"stamp_key": stamps}}
    try:
        async with aiohttp.ClientSession(headers=headers) as http_client:
            await redis.delete(stamps)
            for _ in range(jobs):
                async with http_client.post(f"http://127.0.0.1:{port}/v1/jobs", json=body) as response:
                    await response.read()
                    if response.status != 202:
                        raise SystemExit(f"POST /v1/jobs answered {response.status}")
                acked = time.time()
                got = await redis.blpop([stamps], timeout=10)
                if got is None:
                    missing += 1
                    continue
                latencies.append((float(got[1]) - acked) * 1000)
                await asyncio.sleep(random.uniform(0.01, 0.03))
    finally:
        await redis.aclose()
    return latencies, missing


def latency(procs: Procs, system: str, jobs: int, key: str, round_no: int) -> Measure:
    asyncio.run(reset())
    try:
        if system == "jobwire":
            port = start_jobwire(procs, ("api", "dispatcher", "worker"), CONCURRENCY)
            values, missing = asyncio.run(jobwire_latency(port, key, jobs + LATENCY_WARMUP))
        else:
            start_worker(procs, system)
            command = peer_command(
                system, "latency", str(jobs + LATENCY_WARMUP), "--key", "bench-peers:stamps"
            )
            done = subprocess.run(
                command, env=peer_env(), capture_output=True, text=True, check=False, cwd=ROOT
            )
            if done.returncode != 0:
                raise SystemExit(f"{system} latency failed ({done.returncode}):\n{done.stderr[-2000:]}")
            out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
            values, missing = out["latencies_ms"], out["missing"]
    finally:
        procs.stop_all()
    measured = sorted(values[LATENCY_WARMUP:])
    return Measure(
        system,
        "latency",
        round_no,
        percentile(measured, 50),
        percentile(measured, 99),
        detail=f"n {len(measured)}",
        problem=f"{missing} jobs never started" if missing else "",
    )


# ---- the table -------------------------------------------------------------------------------


def median_of(measures: list[Measure], system: str, figure: str, attr: str = "value") -> float | None:
    values = [getattr(m, attr) for m in measures if m.system == system and m.figure == figure]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def cell(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def render(header: str, measures: list[Measure], systems: tuple[System, ...]) -> str:
    def row(title: str, cells: Callable[[System], str]) -> str:
        return f"| {title} | " + " | ".join(cells(s) for s in systems) + " |"

    def drain(s: System) -> str:
        return cell(median_of(measures, s.key, "drain"), ",.0f")

    def submit(s: System) -> str:
        if not s.http:
            return "(one FastAPI endpoint for both pools)"
        return cell(median_of(measures, s.key, "http"), ",.0f")

    def pickup(s: System) -> str:
        p50, p99 = median_of(measures, s.key, "latency"), median_of(measures, s.key, "latency", "p99_ms")
        return "" if p50 is None or p99 is None else f"{p50:.1f}/{p99:.1f}"

    lines = [
        header,
        "",
        "| figure | " + " | ".join(s.label for s in systems) + " |",
        "| --- |" + " ---: |" * len(systems),
        row(f"drain, no-op jobs/s, one worker process, concurrency {CONCURRENCY}", drain),
        row(f"HTTP submission, req/s (wrk, {CONNECTIONS} connections)", submit),
        row("pickup, enqueue → first line, p50/p99 ms", pickup),
        row("HTTP server", lambda s: s.http or "FastAPI on uvicorn"),
        row("when the enqueue returns, the job is", lambda s: s.durable),
        row("per job, the worker", lambda s: s.per_job),
    ]
    return "\n".join(lines)


def ratios(measures: list[Measure]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for figure in ("drain", "http"):
        jw, bull = median_of(measures, "jobwire", figure), median_of(measures, "bullmq", figure)
        out[figure] = jw / bull if jw and bull else None
    return out


def headline(measures: list[Measure]) -> list[Figure]:
    r = ratios(measures)
    jw_drain, bull_drain = median_of(measures, "jobwire", "drain"), median_of(measures, "bullmq", "drain")
    jw_http, bull_http = median_of(measures, "jobwire", "http"), median_of(measures, "bullmq", "http")
    return [
        Figure(
            figure="no-op drain beside BullMQ, one worker process each, concurrency 50 (bench.peers)",
            jobwire=f"{cell(jw_drain, ',.0f')} jobs/s (as deployed)",
            baseline=f"BullMQ: {cell(bull_drain, ',.0f')} jobs/s",
            ratio="" if r["drain"] is None else f"{r['drain']:.2f}x",
            target=f"≥ {DRAIN_TARGET:g}x BullMQ",
            met=None if r["drain"] is None else r["drain"] >= DRAIN_TARGET,
        ),
        Figure(
            figure="HTTP submission beside Fastify + BullMQ, wrk 64 connections (bench.peers)",
            jobwire=f"{cell(jw_http, ',.0f')} req/s (defaults, durable in PostgreSQL)",
            baseline=f"Fastify + BullMQ: {cell(bull_http, ',.0f')} req/s (in Redis)",
            ratio="" if r["http"] is None else f"{r['http']:.2f}x",
            target=f"≥ {SUBMIT_TARGET:g}x Fastify + BullMQ",
            met=None if r["http"] is None else r["http"] >= SUBMIT_TARGET,
        ),
    ]


def footnote(args: Any) -> str:
    return (
        f"Drain: {args.jobs:,} no-op jobs queued by each system's own client before its worker starts, timed "
        "from the first job leaving its queue to none being left (Celery: its broker list, so up to 4 "
        f"prefetched tasks per slot may still run at the end; prefork at its default size, {nproc()} "
        "children). bare ARQ polls every "
        f"{ARQ_POLL_S:g} s (ARQ's own 0.5 s would start a batch only twice a second). "
        f"HTTP: each server alone, one process, {args.duration} s of wrk after {WARMUP_S} s of warm-up; "
        "jobwire at its defaults (info logs, access log) where the others log as their frameworks do by "
        f"default. Pickup: {args.latency_jobs} jobs one at a time on an idle worker (jobwire: api, worker "
        "and dispatcher at their defaults). Medians of the rounds; every system on the same shared 2-core "
        "machine in one run, so only the ratios mean much."
    )


def main(argv: list[str] | None = None) -> int:
    parser = arguments("peers", __doc__)
    parser.add_argument("--jobs", type=int, default=3000, help="no-op jobs per drain (default 3,000)")
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per system (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported (default 3)")
    parser.add_argument("--latency-jobs", type=int, default=100, help="pickup jobs per round (default 100)")
    parser.add_argument(
        "--systems",
        default=",".join(s.key for s in SYSTEMS_RUN),
        help="comma-separated subset (default: all)",
    )
    args = parse(parser, "peers", argv)
    chosen = {name.strip() for name in args.systems.split(",")}
    systems = tuple(s for s in SYSTEMS_RUN if s.key in chosen)

    wrk = require_wrk()
    RESULTS.mkdir(parents=True, exist_ok=True)
    install()
    note("preparing databases jobwire_bench_peers, jobwire_bench_peers_procrastinate and an API key")
    key = prepare()
    procs = Procs("peers", peer_env)
    measures: list[Measure] = []
    try:
        for round_no in range(1, args.rounds + 1):
            for s in systems:
                note(f"round {round_no}/{args.rounds}: {s.label}: drain {args.jobs:,}")
                measures.append(asyncio.run(drain(procs, s.key, args.jobs, round_no)))
                if s.http:
                    note(f"round {round_no}/{args.rounds}: {s.label}: HTTP, {args.duration} s")
                    measures.append(http(procs, s.key, wrk, args.duration, key, round_no))
                note(f"round {round_no}/{args.rounds}: {s.label}: pickup, {args.latency_jobs} jobs")
                measures.append(latency(procs, s.key, args.latency_jobs, key, round_no))
                for m in measures[-3:]:
                    if m.system == s.key:
                        note(f"  {m.figure}: {m.value:,.1f} {m.detail} {m.problem}")
    finally:
        procs.stop_all()
        asyncio.run(reset())

    date = today()
    header = (
        f"Peers, {date}: nproc {nproc()}, one worker process each, concurrency {CONCURRENCY}, "
        f"medians of {args.rounds} interleaved rounds"
    )
    table = render(header, measures, systems) + "\n\n" + footnote(args)
    r = ratios(measures)
    if r["drain"] is not None and r["http"] is not None:
        table += (
            f" jobwire / BullMQ: drain {r['drain']:.2f}x (target ≥ {DRAIN_TARGET:g}x, "
            f"{verdict(r['drain'] >= DRAIN_TARGET)}), HTTP submission {r['http']:.2f}x (target ≥ "
            f"{SUBMIT_TARGET:g}x, {verdict(r['http'] >= SUBMIT_TARGET)})."
        )
    print(table)
    found = [f"{m.system} {m.figure} round {m.round}: {m.problem}" for m in measures if m.problem]
    warn(found)
    report_logged_problems({n: p for n, p in procs.logs.items() if n.startswith("jobwire-")})
    payload: dict[str, Any] = {
        "date": date,
        "nproc": nproc(),
        "args": vars(args),
        "table": table,
        "headline": [asdict(f) for f in headline(measures)],
        "anomalies": found,
        "measures": [asdict(m) for m in measures],
        "systems": [asdict(s) for s in systems],
    }
    save_results("peers", payload, args.write_readme)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
