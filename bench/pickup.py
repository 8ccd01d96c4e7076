"""Pickup and progress: how soon an idle jobwire worker starts a submitted job, and how fast one worker
drains jobs that report progress beside jobs that do not, in one run.

    python -m bench.pickup [--jobs N] [--concurrency C] [--rounds R] [--latency-jobs J]

1. Pickup on an idle worker (`jobwire worker` as deployed: its default poll delay): J jobs, one
   at a time, each submitted only after the previous one started, after a random pause of
   10-60 ms. From the `202` of `POST /v1/jobs` to time.time() on the job function's first line
   (the same clock). Targets: p50 ≤ 1.5 ms, p99 ≤ 5 ms. Before the jobs, the idle worker's CPU
   over 5 s.
2. Drain: N jobs queued before ONE worker process (`--concurrency C`, default poll) starts, timed
   from the first job leaving the queue to the queue being empty (bench/lifecycle.py's clock), for
   no-op jobs (`bench.noop`) and for jobs that report progress once (`demo.sleep`, 0 s, one
   step). Every job's events are checked: created, started, (progress,) completed. Target: the
   progress drain ≥ 0.8x the no-op drain of the same round.

The targets alternate within each round, so the machine's drift falls on both alike; medians of
--rounds rounds, ranges in brackets.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio import Redis

from bench.harness import (
    REDIS_URL,
    RESULTS,
    Procs,
    arguments,
    bench_jobs_env,
    cpu_seconds,
    free_port,
    jobwire_command,
    migrate_and_key,
    note,
    nproc,
    own_database,
    parse,
    percentile,
    report_stderr,
    save_results,
    today,
    verdict,
    wait_until_answering,
    warn,
)
from bench.lifecycle import LATENCY_WARMUP, sample_latency, time_drain
from jobwire import db, jobstore
from jobwire.config import Settings
from jobwire.ids import new_id
from jobwire.job import Priority
from jobwire.keys import Keys
from jobwire.redis_client import create_redis, delete_namespace
from service.submitter import Submitter

# a database and a namespace of its own (other benchmarks may run meanwhile): every run empties both
PICKUP_DATABASE_URL = own_database("pickup")
NAMESPACE = "bench-pickup"
TENANT = "bench-pickup"
KEYS = Keys(NAMESPACE)

PICKUP_P50_MS = 1.5
PICKUP_P99_MS = 5.0
DRAIN_SHARE = 0.8  # the progress drain, as a share of the no-op drain
PAUSE_SPREAD_S = 0.05  # the random part of the pause between pickup samples (plus 10 ms)
IDLE_WINDOW_S = 5.0  # how long the idle worker's CPU is measured

# what each drain runs: (label, job type, params, the event types every job must have)
KINDS: dict[str, tuple[str, dict[str, Any], dict[str, int]]] = {
    "noop": ("bench.noop", {}, {"created": 1, "started": 1, "completed": 1}),
    "progress": (
        "demo.sleep",
        {"seconds": 0, "steps": 1},
        {"created": 1, "started": 1, "progress": 1, "completed": 1},
    ),
}


@dataclass
class Drain:
    kind: str
    round: int
    jobs: int
    elapsed_s: float
    per_s: float
    # the worker's CPU time per job: what the load of a shared machine changes least
    cpu_ms_per_job: float
    problems: list[str] = field(default_factory=list)


@dataclass
class Pickup:
    round: int
    jobs: int
    missing: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    idle_cpu_pct: float  # the idle worker's CPU over IDLE_WINDOW_S (100 = one core)


def pickup_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return bench_jobs_env(
        {
            "JOBWIRE_DATABASE_URL": PICKUP_DATABASE_URL,
            "JOBWIRE_NAMESPACE": NAMESPACE,
            "JOBWIRE_LOG_FORMAT": "json",
            **(extra or {}),
        }
    )


async def reset(pool: asyncpg.Pool, redis: Redis) -> None:
    await pool.execute("TRUNCATE jobs, job_events, idempotency_keys CASCADE")
    await delete_namespace(redis, KEYS)


def start_worker(procs: Procs, concurrency: int) -> subprocess.Popen[bytes]:
    """`jobwire worker` as deployed: its default poll delay, whatever this code's default is."""
    return procs.start("worker", [jobwire_command(), "worker", "--concurrency", str(concurrency)])


async def backlog(pool: asyncpg.Pool, redis: Redis, n: int, job_type: str, params: dict[str, Any]) -> None:
    """N jobs submitted as `POST /v1/jobs` submits them (the api's group-commit Submitter)."""
    submitter = Submitter(pool, redis, KEYS)
    writer = asyncio.get_running_loop().create_task(submitter.run())
    try:
        jobs = [
            jobstore.NewJob(new_id(), TENANT, job_type, params, Priority.NORMAL.value, 1, None)
            for _ in range(n)
        ]
        await asyncio.gather(*(submitter.submit(job) for job in jobs))
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def verify(pool: asyncpg.Pool, n: int, per_job: dict[str, int]) -> list[str]:
    problems: list[str] = []
    rows = await pool.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")
    statuses = {r["status"]: r["n"] for r in rows}
    if statuses != {"completed": n}:
        problems.append(f"job statuses {statuses}, expected {n} completed")
    rows = await pool.fetch("SELECT type, count(*) AS n FROM job_events GROUP BY type")
    kinds = {r["type"]: r["n"] for r in rows}
    expected = {kind: count * n for kind, count in per_job.items()}
    if kinds != expected:
        problems.append(f"event rows {kinds}, expected {expected}")
    gaps = await pool.fetchval(
        "SELECT count(*) FROM jobs j"
        " WHERE last_seq <> (SELECT count(*) FROM job_events e WHERE e.job_id = j.id)"
    )
    if gaps:
        problems.append(f"{gaps} jobs whose last_seq is not their number of events")
    return problems


async def drain(
    procs: Procs, pool: asyncpg.Pool, redis: Redis, kind: str, n: int, concurrency: int, round_no: int
) -> Drain:
    job_type, params, per_job = KINDS[kind]
    await reset(pool, redis)
    await backlog(pool, redis, n, job_type, params)
    await asyncio.sleep(1.0)  # let the backlog's writes settle before the clock can start
    worker = start_worker(procs, concurrency)
    try:
        elapsed, drained, cpu_s, _ = await time_drain(redis, KEYS.queue, n, worker)
        problems = await verify(pool, n, per_job)
    finally:
        procs.stop(worker)
    return Drain(kind, round_no, n, elapsed, drained / elapsed, 1000 * cpu_s / drained, problems)


async def pickup(
    procs: Procs, pool: asyncpg.Pool, redis: Redis, api_port: int, key: str, jobs: int, round_no: int
) -> Pickup:
    await reset(pool, redis)
    worker = start_worker(procs, Settings().worker_concurrency)
    url = f"http://127.0.0.1:{api_port}/v1/jobs"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        await asyncio.sleep(2.0)  # its start-up (imports, pools, first poll) is not idling
        cpu0 = cpu_seconds(worker.pid)
        await asyncio.sleep(IDLE_WINDOW_S)
        idle_cpu_pct = 100 * (cpu_seconds(worker.pid) - cpu0) / IDLE_WINDOW_S
        async with aiohttp.ClientSession() as http:

            async def submit(stamp_key: str) -> None:
                body = {"type": "bench.noop", "params": {"stamp_key": stamp_key, "redis_url": REDIS_URL}}
                async with http.post(url, json=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 202:
                        raise SystemExit(f"POST /v1/jobs answered {resp.status}")

            await sample_latency(redis, submit, LATENCY_WARMUP, PAUSE_SPREAD_S)
            samples, missing = await sample_latency(redis, submit, jobs, PAUSE_SPREAD_S)
    finally:
        procs.stop(worker)
    samples.sort()
    return Pickup(
        round_no,
        jobs,
        missing,
        percentile(samples, 50),
        percentile(samples, 99),
        samples[-1] if samples else float("nan"),
        idle_cpu_pct,
    )


async def run(args: argparse.Namespace, procs: Procs, key: str) -> tuple[list[Drain], list[Pickup]]:
    pool = await db.create_pool(PICKUP_DATABASE_URL, max_size=4)
    redis = create_redis(REDIS_URL, socket_timeout=None)  # BLPOP blocks longer than any socket timeout
    drains: list[Drain] = []
    pickups: list[Pickup] = []
    try:
        api_port = free_port()
        api = procs.start("api", [jobwire_command(), "api", "--port", str(api_port)])
        wait_until_answering("jobwire api", api, api_port, procs.logs["api"])
        for round_no in range(1, args.rounds + 1):
            for kind in KINDS:
                note(f"round {round_no}/{args.rounds}: drain {args.jobs:,} {kind} jobs")
                d = await drain(procs, pool, redis, kind, args.jobs, args.concurrency, round_no)
                note(f"  {d.per_s:,.0f} jobs/s in {d.elapsed_s:.2f} s, {d.cpu_ms_per_job:.3f} ms CPU per job")
                for problem in d.problems:
                    note(f"  warning: {problem}")
                drains.append(d)
            if args.latency_jobs:
                note(f"round {round_no}/{args.rounds}: pickup, {args.latency_jobs} jobs")
                p = await pickup(procs, pool, redis, api_port, key, args.latency_jobs, round_no)
                note(
                    f"  p50 {p.p50_ms:.2f} ms, p99 {p.p99_ms:.2f} ms, max {p.max_ms:.2f} ms,"
                    f" idle worker CPU {p.idle_cpu_pct:.2f}%"
                )
                pickups.append(p)
    finally:
        procs.stop_all()
        await reset(pool, redis)
        await redis.aclose()
        await pool.close()
    return drains, pickups


def spread(values: list[float], fmt: str) -> str:
    cell = format(statistics.median(values), fmt)
    if len(values) > 1:
        cell += f" ({format(min(values), fmt)}-{format(max(values), fmt)})"
    return cell


def render(args: argparse.Namespace, drains: list[Drain], pickups: list[Pickup]) -> str:
    poll = Settings().worker_poll_delay_s
    lines = [
        f"Pickup and progress, {today()}: nproc {nproc()}, one worker process, default poll ({poll:g} s), "
        f"median of {args.rounds} rounds (range in brackets)",
        "",
        "| figure | jobwire | target | met |",
        "|---|---|---|---|",
    ]
    if pickups:
        p50s, p99s = [p.p50_ms for p in pickups], [p.p99_ms for p in pickups]
        lines.append(
            f"| pickup p50, ms, 202 → first line, idle worker | {spread(p50s, '.2f')} | ≤ {PICKUP_P50_MS:g} "
            f"| {verdict(statistics.median(p50s) <= PICKUP_P50_MS)} |"
        )
        lines.append(
            f"| pickup p99, ms | {spread(p99s, '.2f')} | ≤ {PICKUP_P99_MS:g} "
            f"| {verdict(statistics.median(p99s) <= PICKUP_P99_MS)} |"
        )
        idle = [p.idle_cpu_pct for p in pickups]
        lines.append(f"| idle worker CPU, % of a core | {spread(idle, '.2f')} | near 0 |  |")
    noop = [d.per_s for d in drains if d.kind == "noop"]
    prog = [d.per_s for d in drains if d.kind == "progress"]
    ratios = [p / n for n, p in zip(noop, prog, strict=True)]
    lines.append(f"| drain, no-op jobs/s, concurrency {args.concurrency} | {spread(noop, ',.0f')} |  |  |")
    lines.append(f"| drain, jobs/s reporting progress once (demo.sleep) | {spread(prog, ',.0f')} |  |  |")
    lines.append(
        f"| progress drain / no-op drain, round by round | {spread(ratios, '.2f')} | ≥ {DRAIN_SHARE:g} "
        f"| {verdict(statistics.median(ratios) >= DRAIN_SHARE)} |"
    )
    cpu_noop = [d.cpu_ms_per_job for d in drains if d.kind == "noop"]
    cpu_prog = [d.cpu_ms_per_job for d in drains if d.kind == "progress"]
    cpu_ratios = [n / p for n, p in zip(cpu_noop, cpu_prog, strict=True)]
    lines.append(f"| worker CPU per job, ms: no-op | {spread(cpu_noop, '.3f')} |  |  |")
    lines.append(f"| worker CPU per job, ms: reporting progress once | {spread(cpu_prog, '.3f')} |  |  |")
    lines.append(f"| no-op CPU / progress CPU per job, by round | {spread(cpu_ratios, '.2f')} |  |  |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = arguments("pickup", __doc__)
    parser.add_argument("--jobs", type=int, default=5_000, help="jobs per drain (default 5,000)")
    parser.add_argument("--concurrency", type=int, default=50, help="the worker's concurrency (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported (default 3)")
    parser.add_argument(
        "--latency-jobs", type=int, default=200, help="jobs per pickup run, 0 to skip (default 200)"
    )
    args = parse(parser, "pickup", argv)

    RESULTS.mkdir(parents=True, exist_ok=True)
    note(f"preparing database {PICKUP_DATABASE_URL.rpartition('/')[2]} and an API key")
    key = migrate_and_key(pickup_env(), TENANT)
    procs = Procs("pickup", pickup_env)
    t0 = time.monotonic()
    drains, pickups = asyncio.run(run(args, procs, key))
    note(f"done in {time.monotonic() - t0:.0f} s")
    table = render(args, drains, pickups)
    print(table)
    found = [f"drain {d.kind} round {d.round}: {p}" for d in drains for p in d.problems]
    found += [f"pickup round {p.round}: {p.missing} jobs never started" for p in pickups if p.missing]
    warn(found)
    report_stderr(procs.logs)
    payload: dict[str, Any] = {
        "date": today(),
        "nproc": nproc(),
        "args": vars(args),
        "table": table,
        "anomalies": found,
        "drains": [asdict(d) for d in drains],
        "pickups": [asdict(p) for p in pickups],
    }
    save_results("pickup", payload, False)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
