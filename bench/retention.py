"""Retention: bytes per job on disk, one purge pass over many finished jobs, and a steady-state soak.

    python -m bench.retention [--quick] [--jobs N] [--purge-jobs N] [--soak-minutes M] [--rate R]
                              [--write-readme]

1. Bytes per job: N jobs (bench.noop, each with a webhook_url) run through a real api, worker and
   dispatcher to a receiver; the tables' size on disk (pg_total_relation_size: heap, TOAST and
   indexes, after a VACUUM) grows by this much per job.
2. One purge pass: those jobs copied (rows, events, deliveries, attempts, with new ids) until
   --purge-jobs jobs finished 8 days ago, then `jobwire purge` while a submitter POSTs at a steady
   rate: the pass's duration, the longest lock wait seen in pg_stat_activity (sampled every 10 ms)
   and the submission p99 during the pass against the same submitter's p99 just before it.
3. A steady-state soak: JOBWIRE_RETENTION_COMPLETED_S=60 and JOBWIRE_PURGE_INTERVAL_S=10, --rate jobs
   a second with a webhook each for --soak-minutes: the database's size sampled every 5 s, and the
   least-squares slope of the last half (after the first retention window).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import orjson
from redis.asyncio import Redis

from bench.harness import (
    Figure,
    Procs,
    bench_jobs_env,
    fmt_ms,
    free_port,
    jobwire_command,
    migrate_and_key,
    note,
    parse,
    percentile,
    save_results,
    today,
    verdict,
    wait_until_answering,
)
from jobwire.keys import Keys
from jobwire.redis_client import delete_namespace

NAME = "retention"
DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/jobwire_bench_retention"
NAMESPACE = "bench-retention"
TABLES = ("jobs", "job_events", "deliveries", "delivery_attempts", "idempotency_keys")
SUBMIT_RATE = 50.0  # the steady submitter beside the purge pass, jobs a second
BASELINE_S = 10.0
LOCK_SAMPLE_S = 0.01
SOAK_RETENTION_S = 60
SOAK_PURGE_INTERVAL_S = 10
SOAK_SAMPLE_S = 5.0
# "flat": over the soak's last half, the fitted growth (slope x its length) is under this share of
# the tables' mean size there
FLAT_SHARE = 0.05
P99_RATIO = 1.2
# a lock wait this long would be a stall a submitter notices
LOCK_STALL_MS = 100


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return bench_jobs_env(
        {
            "JOBWIRE_DATABASE_URL": DATABASE_URL,
            "JOBWIRE_NAMESPACE": NAMESPACE,
            "JOBWIRE_WEBHOOK_ALLOW_PRIVATE": "true",
            # phases 1 and 2 keep the workers' own purge out of the way
            "JOBWIRE_PURGE_INTERVAL_S": "86400",
            **(extra or {}),
        }
    )


# ---- measuring -------------------------------------------------------------------------------------


async def table_bytes(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT t, pg_total_relation_size(t::regclass) AS b FROM unnest($1::text[]) AS t", list(TABLES)
    )
    return {r["t"]: r["b"] for r in rows}


async def vacuum(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute(f"VACUUM ANALYZE {', '.join(TABLES)}")


async def wait_settled(pool: asyncpg.Pool, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = await pool.fetchval(
            "SELECT (SELECT count(*) FROM jobs WHERE status IN ('pending', 'running'))"
            " + (SELECT count(*) FROM deliveries WHERE status = 'pending')"
        )
        if not left:
            return
        await asyncio.sleep(0.5)
    raise SystemExit("jobs or deliveries did not settle within the deadline")


@dataclass
class Submitter:
    session: aiohttp.ClientSession
    url: str
    key: str
    hook_url: str
    latencies_ms: list[tuple[float, float]] = field(default_factory=list)  # (sent at, ms)
    errors: int = 0

    async def post(self) -> None:
        body = orjson.dumps({"type": "bench.noop", "params": {}, "webhook_url": self.hook_url})
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        t0 = time.perf_counter()
        try:
            async with self.session.post(f"{self.url}/v1/jobs", data=body, headers=headers) as resp:
                await resp.read()
                ok = resp.status == 202
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            self.latencies_ms.append((time.monotonic(), (time.perf_counter() - t0) * 1000))
        else:
            self.errors += 1

    async def burst(self, n: int, concurrency: int = 32) -> None:
        queue = iter(range(n))

        async def lane() -> None:
            for _ in queue:
                await self.post()

        await asyncio.gather(*(lane() for _ in range(concurrency)))

    async def paced(self, rate: float, stop: asyncio.Event) -> None:
        tasks: set[asyncio.Task[None]] = set()
        t0, sent = time.monotonic(), 0
        while not stop.is_set():
            for _ in range(int((time.monotonic() - t0) * rate) + 1 - sent):
                task = asyncio.create_task(self.post())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(max(0.001, t0 + sent / rate - time.monotonic()))
        await asyncio.gather(*tasks)

    def p99(self, since: float, until: float) -> tuple[float, int]:
        window = sorted(ms for at, ms in self.latencies_ms if since <= at <= until)
        return percentile(window, 99), len(window)


# ---- 1. bytes per job ------------------------------------------------------------------------------


async def bytes_per_job(pool: asyncpg.Pool, submitter: Submitter, n: int) -> dict[str, Any]:
    await vacuum(pool)
    before = await table_bytes(pool)
    await submitter.burst(n)
    await wait_settled(pool)
    await vacuum(pool)
    after = await table_bytes(pool)
    rows = {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
    per_table = {t: (after[t] - before[t]) / n for t in TABLES}
    return {
        "jobs": n,
        "bytes_per_job": sum(per_table.values()),
        "by_table": per_table,
        "rows_per_job": {t: rows[t] / n for t in TABLES},
    }


# ---- 2. one purge pass -----------------------------------------------------------------------------

# copies k of every job in the database (new ids derived from the old with md5, so that events,
# deliveries and attempts follow their job), finished 8 days ago: past the default 7-day retention
_COPY = """
WITH j AS (
    INSERT INTO jobs SELECT (jsonb_populate_record(NULL::jobs, to_jsonb(s) || jsonb_build_object(
        'id', md5(s.id::text || k)::uuid, 'finished_at', now() - interval '8 days'))).*
    FROM jobs s, generate_series($1::int, $2::int) k WHERE s.id = ANY($3::uuid[])
), e AS (
    INSERT INTO job_events SELECT (jsonb_populate_record(NULL::job_events, to_jsonb(s)
        || jsonb_build_object('job_id', md5(s.job_id::text || k)::uuid))).*
    FROM job_events s, generate_series($1::int, $2::int) k WHERE s.job_id = ANY($3::uuid[])
), d AS (
    INSERT INTO deliveries SELECT (jsonb_populate_record(NULL::deliveries, to_jsonb(s)
        || jsonb_build_object('id', md5(s.id::text || k)::uuid, 'job_id', md5(s.job_id::text || k)::uuid))).*
    FROM deliveries s, generate_series($1::int, $2::int) k WHERE s.job_id = ANY($3::uuid[])
)
INSERT INTO delivery_attempts (delivery_id, at, status_code, error, duration_ms)
SELECT md5(a.delivery_id::text || k)::uuid, a.at, a.status_code, a.error, a.duration_ms
FROM delivery_attempts a JOIN deliveries s ON s.id = a.delivery_id, generate_series($1::int, $2::int) k
WHERE s.job_id = ANY($3::uuid[])"""


async def fill(pool: asyncpg.Pool, total: int) -> int:
    base = [r["id"] for r in await pool.fetch("SELECT id FROM jobs WHERE finished_at IS NOT NULL")]
    copies = max(1, total // len(base))
    step = max(1, 20_000 // len(base))
    t0 = time.monotonic()
    for first in range(1, copies + 1, step):
        await pool.execute(_COPY, first, min(copies, first + step - 1), base, timeout=600)
        note(f"  copied {min(copies, first + step - 1) * len(base):,} jobs ({time.monotonic() - t0:.0f} s)")
    await vacuum(pool)
    return copies * len(base)


async def watch_locks(pool: asyncpg.Pool, stop: asyncio.Event) -> float:
    """The longest any backend of the database was seen waiting for a lock, in ms."""
    longest = 0.0
    while not stop.is_set():
        waited = await pool.fetchval(
            "SELECT extract(epoch FROM max(now() - query_start)) * 1000 FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        longest = max(longest, float(waited or 0))
        await asyncio.sleep(LOCK_SAMPLE_S)
    return longest


async def purge_pass(pool: asyncpg.Pool, submitter: Submitter, total: int) -> dict[str, Any]:
    note(f"purge: filling {total:,} finished jobs")
    t_fill = time.monotonic()
    jobs = await fill(pool, total)
    fill_s = time.monotonic() - t_fill
    size_before = await pool.fetchval("SELECT pg_database_size(current_database())")
    stop = asyncio.Event()
    pacing = asyncio.create_task(submitter.paced(SUBMIT_RATE, stop))
    await asyncio.sleep(BASELINE_S)
    locks = asyncio.create_task(watch_locks(pool, stop))
    t0 = time.monotonic()
    out = await asyncio.to_thread(
        subprocess.run, [jobwire_command(), "purge"], env=env(), capture_output=True, text=True
    )
    t1 = time.monotonic()
    stop.set()
    longest_lock_ms = await locks
    await pacing
    if out.returncode != 0:
        raise SystemExit(f"jobwire purge failed: {out.stderr[-2000:]}")
    purged = re.match(r"purged (\d+) jobs", out.stdout)
    baseline_p99, baseline_n = submitter.p99(t0 - BASELINE_S, t0)
    during_p99, during_n = submitter.p99(t0, t1)
    return {
        "jobs": jobs,
        "fill_s": fill_s,
        "purged": int(purged.group(1)) if purged else None,
        "output": out.stdout.strip().splitlines()[0],
        "duration_s": t1 - t0,
        "jobs_per_s": jobs / (t1 - t0),
        "longest_lock_wait_ms": longest_lock_ms,
        "submit_rate": SUBMIT_RATE,
        "baseline_p99_ms": baseline_p99,
        "baseline_n": baseline_n,
        "during_p99_ms": during_p99,
        "during_n": during_n,
        "database_bytes_before": size_before,
        "database_bytes_after": await pool.fetchval("SELECT pg_database_size(current_database())"),
    }


# ---- 3. steady state -------------------------------------------------------------------------------


def fit_slope(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


async def soak(pool: asyncpg.Pool, submitter: Submitter, rate: float, minutes: float) -> dict[str, Any]:
    note(f"soak: {rate:g} jobs/s for {minutes:g} min, retention {SOAK_RETENTION_S} s")
    samples: list[dict[str, Any]] = []
    stop = asyncio.Event()
    pacing = asyncio.create_task(submitter.paced(rate, stop))
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) < minutes * 60:
        tables = await table_bytes(pool)
        samples.append(
            {
                "t": elapsed,
                "database": await pool.fetchval("SELECT pg_database_size(current_database())"),
                "tables": sum(tables.values()),
                "by_table": tables,
                "jobs": await pool.fetchval("SELECT count(*) FROM jobs"),
            }
        )
        if len(samples) % 12 == 0:
            last = samples[-1]
            note(f"  {elapsed:.0f} s: tables {mb(last['tables'])}, {last['jobs']} jobs")
        await asyncio.sleep(SOAK_SAMPLE_S)
    stop.set()
    await pacing
    half = [s for s in samples if s["t"] >= samples[-1]["t"] / 2]
    xs = [s["t"] for s in half]
    slope_tables = fit_slope(xs, [float(s["tables"]) for s in half])  # bytes a second
    slope_db = fit_slope(xs, [float(s["database"]) for s in half])
    mean_tables = sum(s["tables"] for s in half) / len(half)
    growth = slope_tables * (xs[-1] - xs[0])
    p99, n = submitter.p99(t0, t0 + minutes * 60)
    return {
        "rate": rate,
        "minutes": minutes,
        "samples": samples,
        "slope_tables_bytes_per_min": slope_tables * 60,
        "slope_database_bytes_per_min": slope_db * 60,
        "mean_tables_bytes": mean_tables,
        "growth_share": growth / mean_tables if mean_tables else 0.0,
        "flat": abs(growth) < FLAT_SHARE * mean_tables,
        "first_database_bytes": samples[0]["database"],
        "last_database_bytes": samples[-1]["database"],
        "max_database_bytes": max(s["database"] for s in samples),
        "submit_p99_ms": p99,
        "submissions": n,
        "errors": submitter.errors,
    }


# ---- the run ---------------------------------------------------------------------------------------


async def start_stack(procs: Procs, extra: dict[str, str]) -> tuple[str, str]:
    api_port, receiver_port = free_port(), free_port()
    receiver = procs.start(
        "receiver", [sys.executable, "-m", "bench.receiver", "serve", "--port", str(receiver_port)]
    )
    await asyncio.to_thread(wait_until_answering, "receiver", receiver, receiver_port, procs.logs["receiver"])
    api = procs.start("api", [jobwire_command(), "api", "--port", str(api_port)], env(extra))
    await asyncio.to_thread(wait_until_answering, "api", api, api_port, procs.logs["api"])
    procs.start("worker", [jobwire_command(), "worker", "--concurrency", "32"], env(extra))
    procs.start("dispatcher", [jobwire_command(), "dispatcher"], env(extra))
    return f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{receiver_port}/hook"


async def reset(pool: asyncpg.Pool) -> None:
    # batches too (none is made here): every table the purge deletes from starts empty
    await pool.execute(f"TRUNCATE {', '.join(TABLES)}, batches, batch_checks, webhook_endpoints CASCADE")
    redis = Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        await delete_namespace(redis, Keys(NAMESPACE))
    finally:
        await redis.aclose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    key = await asyncio.to_thread(migrate_and_key, env(), "bench")
    pool = await asyncpg.create_pool(DATABASE_URL, min_size=1, max_size=4)
    procs = Procs(NAME, env)
    try:
        await reset(pool)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=64)
        ) as session:
            api_url, hook = await start_stack(procs, {})
            submitter = Submitter(session, api_url, key, hook)
            note(f"bytes per job: {args.jobs} jobs through api, worker and dispatcher")
            size = await bytes_per_job(pool, submitter, args.jobs)
            submitter.latencies_ms.clear()
            purge = await purge_pass(pool, submitter, args.purge_jobs)
            await wait_settled(pool)
            procs.stop_all()
            await reset(pool)
            soak_env = {
                "JOBWIRE_RETENTION_COMPLETED_S": str(SOAK_RETENTION_S),
                "JOBWIRE_PURGE_INTERVAL_S": str(SOAK_PURGE_INTERVAL_S),
            }
            api_url, hook = await start_stack(procs, soak_env)
            steady = await soak(pool, Submitter(session, api_url, key, hook), args.rate, args.soak_minutes)
    finally:
        procs.stop_all()
        await pool.close()
    return {"size": size, "purge": purge, "soak": steady}


def mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MB"


def render(r: dict[str, Any], header: str) -> str:
    size, purge, steady = r["size"], r["purge"], r["soak"]
    p99_ok = purge["during_p99_ms"] <= P99_RATIO * purge["baseline_p99_ms"]
    lock_ok = purge["longest_lock_wait_ms"] < LOCK_STALL_MS
    by_table = ", ".join(f"{t} {b:,.0f}" for t, b in size["by_table"].items())
    rows = ", ".join(f"{t} {n:g}" for t, n in size["rows_per_job"].items())
    return "\n".join(
        [
            header,
            "",
            "| figure | measured | target | met |",
            "| --- | --- | --- | --- |",
            "| bytes per job on disk (heap, TOAST, indexes; one webhook each) |"
            f" {size['bytes_per_job']:,.0f} B"
            f" ({by_table}) over {size['jobs']:,} jobs; rows per job: {rows} | sizing | |",
            f"| one purge pass over {purge['jobs']:,} finished jobs (`jobwire purge`, VACUUM included) |"
            f" {purge['duration_s']:.1f} s ({purge['jobs_per_s']:,.0f} jobs/s); database"
            f" {mb(purge['database_bytes_before'])} → {mb(purge['database_bytes_after'])} | cost follows"
            " what it deletes | |",
            f"| longest lock wait seen during the pass (pg_stat_activity every 10 ms) |"
            f" {purge['longest_lock_wait_ms']:.0f} ms | no stall | {verdict(lock_ok)} |",
            f"| submission p99 at {purge['submit_rate']:g}/s: during the pass vs just before |"
            f" {fmt_ms(purge['during_p99_ms'])} vs {fmt_ms(purge['baseline_p99_ms'])}"
            f" ({purge['during_n']} / {purge['baseline_n']} requests) | ≤ {P99_RATIO} times |"
            f" {verdict(p99_ok)} |",
            f"| steady state: {steady['rate']:g} jobs/s for {steady['minutes']:g} min, retention"
            f" {SOAK_RETENTION_S} s, purge every {SOAK_PURGE_INTERVAL_S} s | tables"
            f" {mb(steady['mean_tables_bytes'])} on average over the last half, slope"
            f" {steady['slope_tables_bytes_per_min'] / 1024:+,.1f} kB/min (database"
            f" {steady['slope_database_bytes_per_min'] / 1024:+,.1f} kB/min); growth over the last half"
            f" {steady['growth_share'] * 100:+.1f} % | flat: \\|growth\\| < {FLAT_SHARE * 100:g} % |"
            f" {verdict(steady['flat'])} |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 jobs purged, a 4-minute soak")
    parser.add_argument("--jobs", type=int, default=5000, help="jobs run for the bytes-per-job figure")
    parser.add_argument("--purge-jobs", type=int, default=None, help="finished jobs one pass purges")
    parser.add_argument("--soak-minutes", type=float, default=None)
    parser.add_argument("--rate", type=float, default=100.0, help="the soak's jobs a second")
    args = parse(parser, NAME, argv)
    args.purge_jobs = args.purge_jobs or (200_000 if args.quick else 1_000_000)
    args.soak_minutes = args.soak_minutes or (4 if args.quick else 10)
    result = asyncio.run(run(args))
    header = f"bench.retention, {today()}{' (--quick)' if args.quick else ''}"
    table = render(result, header)
    print(table, file=sys.stderr)
    purge, steady = result["purge"], result["soak"]
    anomalies = [
        *(["the soak's database was not flat"] if not steady["flat"] else []),
        *([f"{steady['errors']} submissions failed in the soak"] if steady["errors"] else []),
        *(["the pass purged fewer jobs than were due"] if (purge["purged"] or 0) < purge["jobs"] else []),
    ]
    headline = [
        Figure("bytes per job on disk", f"{result['size']['bytes_per_job']:,.0f} B", "", "", "sizing", None),
        Figure(
            f"purge pass over {purge['jobs']:,} finished jobs",
            f"{purge['duration_s']:.1f} s, longest lock wait {purge['longest_lock_wait_ms']:.0f} ms",
            "",
            "",
            "no stall",
            purge["longest_lock_wait_ms"] < LOCK_STALL_MS,
        ),
        Figure(
            f"database size, {steady['minutes']:g}-min soak at retention 60 s",
            f"{steady['growth_share'] * 100:+.1f} % over the last half",
            "",
            "",
            f"flat (< {FLAT_SHARE * 100:g} %)",
            steady["flat"],
        ),
    ]
    payload = {
        "date": today(),
        "quick": args.quick,
        **result,
        "table": table,
        "headline": [h.__dict__ for h in headline],
        "anomalies": anomalies,
    }
    save_results(NAME, payload, args.write_readme)
    return 1 if anomalies else 0


if __name__ == "__main__":
    sys.exit(main())
