"""Labels: a filtered job list (`GET /v1/jobs?label=k:v`) over a million jobs.

    python -m bench.labels [--quick] [--jobs N] [--repeat R] [--write-readme]

Fills a database of its own with N jobs (default 1,000,000) in one INSERT … SELECT, spread over 30
days and 20 tenants of very different sizes (the biggest holds about a quarter of them), with the
labels a real deployment would have: most jobs carry `env` (prod 80 %, staging 15 %, dev 5 %) and
`region` (6 values), a skewed `customer` (5,000 values, a few of them huge), and `run` (an import of
1,000 jobs); 30 % carry none. Then, for each kind of query below, R times with a different tenant,
customer or run each time, the list's own function (`jobstore.list_filtered`, the statement
GET /v1/jobs runs, 51 rows for a page of 50) is timed: the first page, and a deep page (a cursor 1,000
jobs in). Target: p99 under 50 ms for every kind.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from bench.harness import (
    RESULTS,
    Figure,
    arguments,
    fmt_ms,
    load_1m,
    note,
    nproc,
    parse,
    percentile,
    save_results,
    today,
    verdict,
)
from jobwire import db, jobstore
from jobwire.jobstore import JobFilter

NAME = "labels"
DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/jobwire_bench_labels"
TARGET_P99_MS = 50.0
PAGE = 51  # a page of 50 and one more, to know whether there is a next page
DEEP = 1_000  # the deep page starts this many jobs in

# One statement: N jobs, ids random (as UUIDv7 are to the index: unique), created one every
# 30 days / N, tenants skewed (power of a uniform), labels as described in the module's docstring.
_FILL = """
INSERT INTO jobs (id, tenant, type, params, priority, status, progress, attempts, max_attempts, last_seq,
                  created_at, started_at, finished_at, updated_at, labels)
SELECT gen_random_uuid(), 't' || floor(power(t, 3) * 20)::int,
       (ARRAY['import.file', 'report.generate', 'email.send', 'demo.sleep'])[1 + i % 4], '{}', 'normal',
       status, CASE WHEN status = 'completed' THEN 100 ELSE 0 END, 1, 3, 3,
       at, at, CASE WHEN status IN ('completed', 'failed') THEN at END, at,
       CASE WHEN z < 0.3 THEN '{}'::jsonb ELSE jsonb_build_object(
           'env', CASE WHEN x < 0.80 THEN 'prod' WHEN x < 0.95 THEN 'staging' ELSE 'dev' END,
           'region', (ARRAY['eu-west', 'eu-central', 'us-east', 'us-west', 'ap-south', 'sa-east'])[1 + i % 6],
           'customer', 'c' || floor(power(c, 3) * 5000)::int,
           'run', 'r' || (i / 1000)) END
FROM (
    SELECT i, now() - make_interval(secs => ($1 - i) * 30 * 86400.0 / $1) AS at,
           random() AS x, random() AS z, random() AS t, random() AS c,
           CASE WHEN y < 0.9 THEN 'completed' WHEN y < 0.96 THEN 'failed'
                WHEN y < 0.98 THEN 'cancelled' ELSE 'pending' END AS status
    FROM (SELECT i, random() AS y FROM generate_series(1, $1::int) AS i) AS g
) AS r"""


async def fill(pool: asyncpg.Pool, jobs: int) -> float:
    await pool.execute("TRUNCATE jobs CASCADE")
    t0 = time.monotonic()
    await pool.execute(_FILL, jobs, timeout=3600)
    await pool.execute("VACUUM ANALYZE jobs, job_labels", timeout=3600)
    return time.monotonic() - t0


async def pick(pool: asyncpg.Pool, sql: str, *args: Any) -> list[Any]:
    return [r[0] for r in await pool.fetch(sql, *args)]


async def kinds(pool: asyncpg.Pool) -> dict[str, Callable[[], tuple[JobFilter, bool]]]:
    """Each kind of query: a function that draws one (its filter, and whether it is an admin's
    across every tenant)."""
    tenants = await pick(pool, "SELECT tenant FROM jobs GROUP BY tenant ORDER BY count(*) DESC")
    big = tenants[0]
    # customers of the biggest tenant, from the largest to ones with a few jobs
    customers = await pick(
        pool,
        "SELECT labels->>'customer' FROM jobs WHERE tenant = $1 AND labels ? 'customer'"
        " GROUP BY 1 ORDER BY count(*) DESC",
        big,
    )
    runs = await pick(pool, "SELECT DISTINCT labels->>'run' FROM jobs WHERE labels ? 'run'")

    def tenant_label(labels: dict[str, str], tenant: str | None = None, **extra: Any) -> JobFilter:
        return JobFilter(tenant=tenant or random.choice(tenants), labels=labels, **extra)

    return {
        "env:prod (most jobs), any tenant": lambda: (tenant_label({"env": "prod"}), False),
        "env:dev (5 %), any tenant": lambda: (tenant_label({"env": "dev"}), False),
        "customer (any size), biggest tenant": lambda: (
            tenant_label({"customer": random.choice(customers)}, big),
            False,
        ),
        "customer + env:prod, biggest tenant": lambda: (
            tenant_label({"customer": random.choice(customers[:200]), "env": "prod"}, big),
            False,
        ),
        "run (1,000 jobs), its tenant": lambda: (tenant_label({"run": random.choice(runs)}), False),
        "env:prod + status failed, any tenant": lambda: (
            tenant_label({"env": "prod"}, statuses=["failed"]),
            False,
        ),
        "customer + status pending, biggest tenant": lambda: (
            tenant_label({"customer": random.choice(customers[:50])}, big, statuses=["pending"]),
            False,
        ),
        "a label no job has, biggest tenant": lambda: (tenant_label({"customer": "nobody"}, big), False),
        "customer, admin across tenants": lambda: (
            JobFilter(tenant=None, labels={"customer": random.choice(customers[:500])}),
            True,
        ),
    }


async def cursor_at(pool: asyncpg.Pool, f: JobFilter, offset: int) -> tuple[datetime, UUID] | None:
    """The keyset position `offset` jobs into `f`'s list (None when it is shorter)."""
    rows = await jobstore.list_filtered(pool, f, limit=offset)
    if len(rows) < offset:
        return None
    return rows[-1]["created_at"], rows[-1]["id"]


async def server_side(
    pool: asyncpg.Pool, f: JobFilter, after: tuple[datetime, UUID] | None
) -> tuple[float, int]:
    """The statement's execution time inside PostgreSQL (ms) and the buffers it touched: what the
    query costs, whatever else the machine is doing to the client."""
    sql, args = await jobstore.list_statement(pool, f, limit=PAGE, after=after)
    plan = orjson.loads(await pool.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *args))[0]
    top = plan["Plan"]
    return float(plan["Execution Time"]), int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])


def summary(wall: list[float], server: list[float], buffers: list[int]) -> dict[str, Any]:
    if not wall:
        return {}
    wall, server = sorted(wall), sorted(server)
    return {
        "p50_ms": percentile(wall, 50),
        "p99_ms": percentile(wall, 99),
        "server_p50_ms": percentile(server, 50),
        "server_p99_ms": percentile(server, 99),
        "max_buffers": max(buffers),
        "samples": len(wall),
    }


async def measure(
    pool: asyncpg.Pool, draw: Callable[[], tuple[JobFilter, bool]], repeat: int
) -> dict[str, Any]:
    pages: dict[str, tuple[list[float], list[float], list[int]]] = {
        "first": ([], [], []),
        "deep": ([], [], []),
    }
    for _ in range(repeat):
        f, _admin = draw()
        for page in ("first", "deep"):
            after = None if page == "first" else await cursor_at(pool, f, DEEP)
            if page == "deep" and after is None:
                continue
            wall, server, buffers = pages[page]
            t0 = time.perf_counter()
            await jobstore.list_filtered(pool, f, limit=PAGE, after=after)
            wall.append((time.perf_counter() - t0) * 1000)
            took, touched = await server_side(pool, f, after)
            server.append(took)
            buffers.append(touched)
    return {page: summary(*values) for page, values in pages.items()}


def worst_p99(r: dict[str, Any]) -> float:
    return max(float(page.get("p99_ms", 0.0)) for page in r.values())


def table(results: dict[str, dict[str, Any]], jobs: int, load: float) -> str:
    def cell(page: dict[str, Any], key: str) -> str:
        return fmt_ms(page[key]) if key in page else "—"

    lines = [
        f"Filtered list over {jobs:,} jobs (`jobstore.list_filtered`, the statement of GET /v1/jobs, a page"
        f" of 50; deep: {DEEP:,} jobs in), wall clock from the client and, in PostgreSQL, the execution"
        f" time and most buffers touched. Target: p99 < {TARGET_P99_MS:.0f} ms. {today()},"
        f" load average {load:.1f} on {nproc()} cores.",
        "",
        "| query | first page p50 | p99 | in PG p99 | buffers | deep page p50 | p99 | in PG p99 | buffers"
        " | p99 < target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        first, deep = r["first"], r["deep"]
        lines.append(
            f"| {name} | {cell(first, 'p50_ms')} | {cell(first, 'p99_ms')} | {cell(first, 'server_p99_ms')}"
            f" | {first.get('max_buffers', '—')} | {cell(deep, 'p50_ms')} | {cell(deep, 'p99_ms')}"
            f" | {cell(deep, 'server_p99_ms')} | {deep.get('max_buffers', '—')}"
            f" | {verdict(worst_p99(r) < TARGET_P99_MS)} |"
        )
    return "\n".join(lines)


async def run(jobs: int, repeat: int, write_readme: bool) -> bool:
    await db.create_database_if_missing(DATABASE_URL)
    await db.apply_schema(DATABASE_URL)
    pool = await db.create_pool(DATABASE_URL, max_size=2)
    try:
        have = await pool.fetchval("SELECT count(*) FROM jobs")
        if have != jobs:
            note(f"labels: filling {jobs:,} jobs")
            took = await fill(pool, jobs)
            note(f"labels: filled in {took:.0f} s")
        results: dict[str, dict[str, Any]] = {}
        for name, draw in (await kinds(pool)).items():
            await measure(pool, draw, max(3, repeat // 10))  # warm the cache
            results[name] = await measure(pool, draw, repeat)
            note(f"  {name}: {results[name]}")
    finally:
        await pool.close()
    worst = max(worst_p99(r) for r in results.values())
    met = bool(worst < TARGET_P99_MS)
    text = table(results, jobs, load_1m())
    note(text)
    headline = Figure(
        figure=f"label-filtered list over {jobs:,} jobs, worst p99",
        jobwire=fmt_ms(worst),
        baseline="—",
        ratio="—",
        target=f"< {TARGET_P99_MS:.0f} ms",
        met=met,
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    save_results(
        NAME,
        {"jobs": jobs, "repeat": repeat, "results": results, "table": text, "headline": headline.__dict__},
        write_readme,
    )
    return met


def main(argv: list[str] | None = None) -> int:
    parser = arguments(NAME, __doc__ or "")
    parser.add_argument("--quick", action="store_true", help="100,000 jobs, 50 queries of each kind")
    parser.add_argument("--jobs", type=int, default=None, help="jobs in the table (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=None, help="queries of each kind (default 300)")
    args = parse(parser, NAME, argv)
    jobs = args.jobs or (100_000 if args.quick else 1_000_000)
    repeat = args.repeat or (50 if args.quick else 300)
    return 0 if asyncio.run(run(jobs, repeat, args.write_readme)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
