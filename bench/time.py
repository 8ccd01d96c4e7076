"""Time: how late delayed jobs and schedules start, and whether a queue full of tomorrow's jobs slows
today's, on real `jobwire worker` processes at their default poll.

    python -m bench.time [--quick] [--burst N] [--spaced J] [--backlog B] [--drain N]
                         [--schedule-s S] [--write-readme]

1. Delayed jobs, lateness = started_at - run_at (both PostgreSQL's clock):
   - a burst: N jobs (1,000) all due at the same instant, on one worker (concurrency 50). Its
     baseline, in the same run: the same N jobs due at once, queued together (started_at -
     created_at), which is what the worker's drain rate allows.
   - one at a time: J jobs due 150 ms apart, on an idle worker.
2. A backlog of tomorrow: the drain rate and start latency of immediate jobs, with and without B
   (100,000) scheduled jobs due tomorrow in the same queue. Drain: N no-op jobs queued before the
   worker starts, from the first start to the last finish. Start latency: 50 jobs one at a time on
   an idle worker, started_at - created_at.
3. Schedules: a 1-second interval schedule fired by two worker processes for S seconds (120):
   lateness = the job's created_at - its slot; duplicates = jobs beyond one per slot; missed =
   slots of the window without a job; and how often the unique slot index had to refuse a job
   (the claim protocol alone should never let it come to that).

Every job goes through jobstore.insert_jobs and queue.enqueue, the path of `POST /v1/jobs`.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from redis.asyncio import Redis

from bench.harness import (
    RESULTS,
    Figure,
    Procs,
    arguments,
    bench_jobs_env,
    fmt_ms,
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
    warn,
)
from jobwire import db, jobstore, schedulestore
from jobwire.config import Settings
from jobwire.ids import new_id
from jobwire.keys import Keys
from jobwire.queue import enqueue, queued
from jobwire.redis_client import create_redis, delete_namespace

TIME_DATABASE_URL = own_database("time")
NAMESPACE = "bench-time"
TENANT = "bench-time"
KEYS = Keys(NAMESPACE)
JOB_TYPE = "bench.noop"
CHUNK = 2_000
CONCURRENCY = 50
LATENCY_JOBS = 50
# the targets
DELAYED_P99_MS = 100.0
BACKLOG_SLOWDOWN = 0.10
SCHEDULE_P99_MS = 250.0


def time_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return bench_jobs_env(
        {"JOBWIRE_DATABASE_URL": TIME_DATABASE_URL, "JOBWIRE_NAMESPACE": NAMESPACE, **(extra or {})}
    )


def new_job(run_at: datetime | None = None) -> jobstore.NewJob:
    return jobstore.NewJob(new_id(), TENANT, JOB_TYPE, {}, "normal", 1, None, run_at=run_at)


async def submit(pool: asyncpg.Pool, redis: Redis, jobs: list[jobstore.NewJob]) -> list[jobstore.Row]:
    """Insert and enqueue, in chunks, as the api's submitter does."""
    out: list[jobstore.Row] = []
    for start in range(0, len(jobs), CHUNK):
        rows = list((await jobstore.insert_jobs(pool, jobs[start : start + CHUNK])).values())
        await enqueue(redis, KEYS, [queued(r) for r in rows])
        out += rows
    return out


async def reset(pool: asyncpg.Pool, redis: Redis) -> None:
    await pool.execute("TRUNCATE jobs, job_events, idempotency_keys, schedules CASCADE")
    await delete_namespace(redis, KEYS)


async def until(pool: asyncpg.Pool, sql: str, n: int, *args: Any, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while (await pool.fetchval(sql, *args)) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {n}: {sql}")
        await asyncio.sleep(0.1)


async def finished(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> None:
    await until(
        pool, "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'completed'", len(ids), ids
    )


def ms_of(values: list[timedelta]) -> list[float]:
    return sorted(v.total_seconds() * 1000 for v in values)


@dataclass
class Spread:
    n: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, values: list[timedelta]) -> Spread:
        ms = ms_of(values)
        return cls(len(ms), percentile(ms, 50), percentile(ms, 99), ms[-1] if ms else float("nan"))

    def text(self) -> str:
        return (
            f"p50 {fmt_ms(self.p50_ms)}, p99 {fmt_ms(self.p99_ms)} (max {fmt_ms(self.max_ms)}, n {self.n:,})"
        )


def worker(procs: Procs, name: str) -> Any:
    return procs.start(name, [jobwire_command(), "worker", "--concurrency", str(CONCURRENCY)])


async def idle_worker_ready(pool: asyncpg.Pool, redis: Redis) -> None:
    """Until a just-started worker runs jobs (its imports and connections done)."""
    [row] = await submit(pool, redis, [new_job()])
    await finished(pool, [row["id"]])


# ---- 1. delayed jobs ----------------------------------------------------------------------------


async def delayed(pool: asyncpg.Pool, redis: Redis, burst: int, spaced: int) -> dict[str, Spread]:
    out: dict[str, Spread] = {}
    # the baseline: the burst due at once, queued together
    rows = await submit(pool, redis, [new_job() for _ in range(burst)])
    await finished(pool, [r["id"] for r in rows])
    got = await pool.fetch(
        "SELECT started_at - created_at AS late FROM jobs WHERE id = ANY($1::uuid[])", [r["id"] for r in rows]
    )
    out["burst_now"] = Spread.of([r["late"] for r in got])
    # the burst delayed: all due at one instant, 2 s from now
    due = datetime.now(UTC) + timedelta(seconds=2)
    rows = await submit(pool, redis, [new_job(due) for _ in range(burst)])
    await finished(pool, [r["id"] for r in rows])
    got = await pool.fetch(
        "SELECT started_at - run_at AS late FROM jobs WHERE id = ANY($1::uuid[])", [r["id"] for r in rows]
    )
    out["burst_delayed"] = Spread.of([r["late"] for r in got])
    # one at a time: due 150 ms apart (with jitter), the worker idle between them
    start = datetime.now(UTC) + timedelta(seconds=1)
    jobs = [new_job(start + timedelta(seconds=0.15 * i + random.uniform(0, 0.05))) for i in range(spaced)]
    rows = await submit(pool, redis, jobs)
    await finished(pool, [r["id"] for r in rows])
    got = await pool.fetch(
        "SELECT started_at - run_at AS late FROM jobs WHERE id = ANY($1::uuid[])", [r["id"] for r in rows]
    )
    out["spaced"] = Spread.of([r["late"] for r in got])
    return out


# ---- 2. a backlog of tomorrow -------------------------------------------------------------------


@dataclass
class Today:
    backlog: int
    drain_per_s: float
    start: Spread


async def today_jobs(procs: Procs, pool: asyncpg.Pool, redis: Redis, drain_n: int, backlog: int) -> Today:
    """Drain rate and start latency of immediate jobs, with `backlog` jobs of tomorrow queued."""
    await reset(pool, redis)
    if backlog:
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        t0 = time.monotonic()
        await submit(pool, redis, [new_job(tomorrow) for _ in range(backlog)])
        note(f"  {backlog:,} jobs due tomorrow queued in {time.monotonic() - t0:.1f} s")
    rows = await submit(pool, redis, [new_job() for _ in range(drain_n)])
    w = worker(procs, "drain-worker")
    try:
        ids = [r["id"] for r in rows]
        await finished(pool, ids)
        span = await pool.fetchval(
            "SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM jobs"
            " WHERE id = ANY($1::uuid[])",
            ids,
        )
        lates: list[timedelta] = []
        for _ in range(LATENCY_JOBS):
            await asyncio.sleep(random.uniform(0.05, 0.15))  # spread over the poll cycle
            [row] = await submit(pool, redis, [new_job()])
            await finished(pool, [row["id"]])
            lates.append(
                await pool.fetchval("SELECT started_at - created_at FROM jobs WHERE id = $1", row["id"])
            )
    finally:
        procs.stop(w)
    return Today(backlog, drain_n / float(span), Spread.of(lates))


# ---- 3. schedules -------------------------------------------------------------------------------


@dataclass
class Schedules:
    seconds: float
    workers: int
    slots: int
    jobs: int
    duplicates: int
    missed: int
    refused_by_index: int
    lateness: Spread


async def schedules(procs: Procs, pool: asyncpg.Pool, redis: Redis, seconds: float) -> Schedules:
    await reset(pool, redis)
    workers = [worker(procs, f"scheduler-{i}") for i in range(2)]
    try:
        await idle_worker_ready(pool, redis)
        await asyncio.sleep(1)  # both up
        now = datetime.now(UTC)
        anchor = now.replace(microsecond=0)
        schedule_id = new_id()
        await schedulestore.create(
            pool,
            schedulestore.NewSchedule(
                id=schedule_id, tenant=TENANT, name="every-second", description="", cron=None, interval_s=1,
                anchor_at=anchor, timezone="UTC", job_type=JOB_TYPE, job_params={}, job_priority="normal",
                job_webhook_url=None, job_max_attempts=1, overlap="allow", paused=False,
                next_run_at=anchor + timedelta(seconds=2),
            ),
        )  # fmt: skip
        await asyncio.sleep(seconds + 2)
        await pool.execute(
            "UPDATE schedules SET paused = true, next_run_at = NULL WHERE id = $1", schedule_id
        )
        rows = await pool.fetch(
            "SELECT schedule_slot, created_at FROM jobs WHERE schedule_id = $1 ORDER BY schedule_slot",
            schedule_id,
        )
    finally:
        for w in workers:
            procs.stop(w)
    slots = [r["schedule_slot"] for r in rows]
    distinct = len(set(slots))
    window = int((slots[-1] - slots[0]).total_seconds()) + 1 if slots else 0
    refused = sum(
        path.read_text(errors="replace").count("slot fired already")
        for name, path in procs.logs.items()
        if name.startswith("scheduler-")
    )
    return Schedules(
        seconds,
        len(workers),
        window,
        len(rows),
        len(rows) - distinct,
        window - distinct,
        refused,
        Spread.of([r["created_at"] - r["schedule_slot"] for r in rows]),
    )


# ---- the report ---------------------------------------------------------------------------------


def headline(d: dict[str, Spread], without: Today, with_backlog: Today, s: Schedules) -> list[Figure]:
    drain_ratio = with_backlog.drain_per_s / without.drain_per_s
    start_ratio = with_backlog.start.p50_ms / without.start.p50_ms
    return [
        Figure(
            "delayed job lateness, started_at - run_at, one at a time, default poll",
            d["spaced"].text(),
            "",
            "",
            f"p99 ≤ {DELAYED_P99_MS:.0f} ms",
            d["spaced"].p99_ms <= DELAYED_P99_MS,
        ),
        Figure(
            f"delayed job lateness, {d['burst_delayed'].n:,} due in the same instant, one worker",
            d["burst_delayed"].text(),
            f"the same jobs due at once, queued together: {d['burst_now'].text()}",
            f"p99 {d['burst_delayed'].p99_ms / d['burst_now'].p99_ms:.2f}x",
            f"p99 ≤ {DELAYED_P99_MS:.0f} ms",
            d["burst_delayed"].p99_ms <= DELAYED_P99_MS,
        ),
        Figure(
            f"immediate jobs with {with_backlog.backlog:,} jobs due tomorrow in the queue",
            f"drain {with_backlog.drain_per_s:,.0f} jobs/s; start p50 {fmt_ms(with_backlog.start.p50_ms)}",
            f"no backlog: drain {without.drain_per_s:,.0f} jobs/s; start p50 {fmt_ms(without.start.p50_ms)}",
            f"drain {drain_ratio:.2f}x, start {start_ratio:.2f}x",
            "within 10 %",
            drain_ratio >= 1 - BACKLOG_SLOWDOWN and start_ratio <= 1 + BACKLOG_SLOWDOWN,
        ),
        Figure(
            f"schedule lateness, created_at - slot, 1-second schedule, {s.workers} workers,"
            f" {s.seconds:.0f} s",
            f"{s.lateness.text()}; {s.duplicates} duplicate, {s.missed} missed of {s.slots} slots",
            "",
            "",
            f"p99 ≤ {SCHEDULE_P99_MS:.0f} ms, 0 duplicates",
            s.lateness.p99_ms <= SCHEDULE_P99_MS and s.duplicates == 0,
        ),
    ]


def render(figures: list[Figure], header: str, s: Schedules, with_backlog: Today, without: Today) -> str:
    lines = [
        header,
        "",
        "| figure | jobwire | baseline | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        lines.append(
            f"| {f.figure} | {f.jobwire} | {f.baseline} | {f.ratio} | {f.target} | {verdict(bool(f.met))} |"
        )
    lines += [
        "",
        f"Start latency on an idle worker (started_at - created_at, {LATENCY_JOBS} jobs one at a time): "
        f"{without.start.text()} without the backlog, {with_backlog.start.text()} with it. "
        f"The schedule's slots: {s.jobs} jobs for {s.slots} slots; the unique slot index refused "
        f"{s.refused_by_index} jobs (the claim alone kept every slot to one job).",
    ]
    return "\n".join(lines)


async def run(args: Any, procs: Procs) -> tuple[dict[str, Spread], Today, Today, Schedules]:
    pool = await db.create_pool(TIME_DATABASE_URL, max_size=4)
    redis = create_redis(time_env()["JOBWIRE_REDIS_URL"])
    try:
        await reset(pool, redis)
        note("1. delayed jobs: a burst and one at a time")
        w = worker(procs, "worker")
        try:
            await idle_worker_ready(pool, redis)
            d = await delayed(pool, redis, args.burst, args.spaced)
        finally:
            procs.stop(w)
        note(f"2. immediate jobs without, then with {args.backlog:,} jobs due tomorrow")
        without = await today_jobs(procs, pool, redis, args.drain, 0)
        with_backlog = await today_jobs(procs, pool, redis, args.drain, args.backlog)
        note(f"3. a 1-second schedule on two workers for {args.schedule_s:.0f} s")
        s = await schedules(procs, pool, redis, args.schedule_s)
        await reset(pool, redis)
    finally:
        await redis.aclose()
        await pool.close()
    return d, without, with_backlog, s


def main(argv: list[str] | None = None) -> int:
    parser = arguments("time", __doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of about a minute")
    parser.add_argument("--burst", type=int, default=1_000, help="delayed jobs due in one instant (1,000)")
    parser.add_argument("--spaced", type=int, default=200, help="delayed jobs due one at a time (200)")
    parser.add_argument("--backlog", type=int, default=100_000, help="jobs due tomorrow (100,000)")
    parser.add_argument("--drain", type=int, default=5_000, help="immediate jobs per drain (5,000)")
    parser.add_argument("--schedule-s", type=float, default=120, help="the schedule's window (120 s)")
    args = parse(parser, "time", argv)
    if args.quick:
        args.spaced, args.backlog, args.drain, args.schedule_s = 50, 20_000, 2_000, 15

    RESULTS.mkdir(parents=True, exist_ok=True)
    note(f"preparing database {TIME_DATABASE_URL.rpartition('/')[2]}")
    migrate_and_key(time_env(), TENANT)
    procs = Procs("time", time_env)
    t0 = time.monotonic()
    try:
        d, without, with_backlog, s = asyncio.run(run(args, procs))
    finally:
        procs.stop_all()
    note(f"done in {time.monotonic() - t0:.0f} s")
    date = today()
    figures = headline(d, without, with_backlog, s)
    header = (
        f"Time, {date}: nproc {nproc()}, `jobwire worker --concurrency {CONCURRENCY}` at its default poll "
        f"({Settings().worker_poll_delay_s} s), no-op jobs{' (--quick sizes)' if args.quick else ''}"
    )
    table = render(figures, header, s, with_backlog, without)
    print(table)
    found = [f"{f.figure}: target missed" for f in figures if not f.met]
    warn(found)
    report_stderr({k: v for k, v in procs.logs.items() if not k.startswith("scheduler-")})
    payload: dict[str, Any] = {
        "date": date,
        "nproc": nproc(),
        "args": vars(args),
        "table": table,
        "headline": [asdict(f) for f in figures],
        "delayed": {k: asdict(v) for k, v in d.items()},
        "today": [asdict(without), asdict(with_backlog)],
        "schedules": asdict(s),
    }
    save_results("time", payload, args.write_readme and not args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
