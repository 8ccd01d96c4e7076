"""Batches: what a batch of N jobs costs to submit and how fast it drains, each beside the same N
jobs submitted one by one.

    python -m bench.batches [--jobs N] [--rounds R] [--concurrency C] [--submitters S] [--write-readme]

1. Submission cost, no worker running. The same N no-op jobs as one `POST /v1/batches`, and as N
   `POST /v1/jobs` sent over S connections at once (so the api's group commit shares their
   commits: the best case for single submissions). Timed from the first request sent to the last
   `202` received, against a real `jobwire api` process.
2. Drain rate. The N jobs are queued (as one batch, or as N submissions) before ONE worker process
   (`jobwire worker --concurrency C`) starts; the rate is N over the window from the first job's
   `started_at` to the last job's `finished_at`, both PostgreSQL's clock, so worker start-up is not
   timed. For the batch, how long after its last job it settled (its terminal event and webhook,
   `JOBWIRE_BATCH_SETTLE_S`) is reported beside: the drain is of the jobs, the settling follows.

3. Reading a batch. `GET /v1/batches/{id}` of a running N-job batch (its counts and progress are
   read from its jobs on every request), --reads times one after the other: p50 and p99.

Rounds interleave the two ways; the figures are medians, with the range over the rounds in brackets.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio import Redis

from bench.harness import (
    REDIS_URL,
    RESULTS,
    Figure,
    Procs,
    arguments,
    bench_jobs_env,
    free_port,
    jobwire_command,
    migrate_and_key,
    note,
    nproc,
    own_database,
    parse,
    report_stderr,
    save_results,
    today,
    verdict,
    wait_until_answering,
    warn,
)
from jobwire.keys import Keys
from jobwire.redis_client import create_redis, delete_namespace

BATCHES_DATABASE_URL = own_database("batches")
NAMESPACE = "bench-batches"
KEYS = Keys(NAMESPACE)
TENANT = "bench"
JOB_TYPE = "bench.noop"
# the bar: a batch drains at >= 80 % of the rate of the same jobs submitted independently
DRAIN_TARGET = 0.8
WATCH_S = 0.02


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return bench_jobs_env(
        {"JOBWIRE_DATABASE_URL": BATCHES_DATABASE_URL, "JOBWIRE_NAMESPACE": NAMESPACE, **(extra or {})}
    )


@dataclass
class Round:
    way: str  # "batch" or "independent"
    round: int
    jobs: int
    submit_s: float
    drain_s: float
    drain_per_s: float
    settle_after_s: float | None  # the batch's settling after its last job


async def reset(pool: asyncpg.Pool, redis: Redis) -> None:
    await pool.execute("TRUNCATE jobs, job_events, idempotency_keys, batches, batch_checks CASCADE")
    await delete_namespace(redis, KEYS)


async def submit_independent(http: aiohttp.ClientSession, url: str, n: int, submitters: int) -> float:
    gate = asyncio.Semaphore(submitters)

    async def one() -> None:
        async with gate, http.post(f"{url}/v1/jobs", json={"type": JOB_TYPE}) as resp:
            await resp.read()
            if resp.status != 202:
                raise SystemExit(f"POST /v1/jobs answered {resp.status}")

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - t0


async def submit_batch(http: aiohttp.ClientSession, url: str, n: int) -> tuple[float, str]:
    body = {"jobs": [{"type": JOB_TYPE} for _ in range(n)]}
    t0 = time.perf_counter()
    async with http.post(f"{url}/v1/batches", json=body) as resp:
        answer = await resp.json()
        if resp.status != 202:
            raise SystemExit(f"POST /v1/batches answered {resp.status}: {answer}")
    return time.perf_counter() - t0, str(answer["id"])


async def drain(
    procs: Procs, pool: asyncpg.Pool, n: int, concurrency: int, batch_id: str | None
) -> tuple[float, float | None]:
    """Start a worker, wait for every job (and the batch) to end; (drain window, settle lag)."""
    await asyncio.sleep(1.0)  # let the submission's writes settle before the worker starts
    worker = procs.start("worker", [jobwire_command(), "worker", "--concurrency", str(concurrency)])
    deadline = time.monotonic() + 60 + n / 20
    try:
        while True:
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited with code {worker.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit("the jobs did not drain in time")
            done = await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'")
            settled = batch_id is None or await pool.fetchval(
                "SELECT settled_at IS NOT NULL FROM batches WHERE id = $1::uuid", batch_id
            )
            if done == n and settled:
                break
            await asyncio.sleep(WATCH_S)
    finally:
        procs.stop(worker)
    span = await pool.fetchrow("SELECT min(started_at), max(finished_at) FROM jobs")
    assert span is not None  # an aggregate answers one row
    first, last = span
    window = (last - first).total_seconds()
    lag = None
    if batch_id is not None:
        settled_at = await pool.fetchval("SELECT finished_at FROM batches WHERE id = $1::uuid", batch_id)
        lag = (settled_at - last).total_seconds()
    return window, lag


async def time_reads(http: aiohttp.ClientSession, url: str, batch_id: str, reads: int) -> list[float]:
    """Milliseconds of each of `reads` GET /v1/batches/{id}, sorted."""
    times: list[float] = []
    for _ in range(reads):
        t0 = time.perf_counter()
        async with http.get(f"{url}/v1/batches/{batch_id}") as resp:
            await resp.read()
            if resp.status != 200:
                raise SystemExit(f"GET /v1/batches/{batch_id} answered {resp.status}")
        times.append(1000 * (time.perf_counter() - t0))
    return sorted(times)


async def run(args: argparse.Namespace, procs: Procs, key: str) -> tuple[list[Round], list[float]]:
    pool = await asyncpg.create_pool(BATCHES_DATABASE_URL, min_size=1, max_size=2)
    redis = create_redis(REDIS_URL)
    port = free_port()
    api = procs.start("api", [jobwire_command(), "api", "--port", str(port)])
    await asyncio.to_thread(wait_until_answering, "jobwire api", api, port, procs.logs["api"])
    url = f"http://127.0.0.1:{port}"
    rounds: list[Round] = []
    connector = aiohttp.TCPConnector(limit=args.submitters)
    try:
        async with aiohttp.ClientSession(
            connector=connector, headers={"Authorization": f"Bearer {key}"}
        ) as http:
            # warm the api (imports, prepared statements) before anything is timed
            await reset(pool, redis)
            await submit_batch(http, url, 10)
            await submit_independent(http, url, 10, args.submitters)
            for round_no in range(1, args.rounds + 1):
                for way in ("independent", "batch"):
                    await reset(pool, redis)
                    batch_id = None
                    if way == "batch":
                        submit_s, batch_id = await submit_batch(http, url, args.jobs)
                    else:
                        submit_s = await submit_independent(http, url, args.jobs, args.submitters)
                    window, lag = await drain(procs, pool, args.jobs, args.concurrency, batch_id)
                    r = Round(way, round_no, args.jobs, submit_s, window, args.jobs / window, lag)
                    rounds.append(r)
                    extra = f", settled {1000 * lag:.0f} ms after its last job" if lag is not None else ""
                    note(
                        f"round {round_no}/{args.rounds} {way}: submitted in {1000 * submit_s:.0f} ms, "
                        f"drained at {r.drain_per_s:,.0f} jobs/s{extra}"
                    )
            # no worker: the batch stays running, so every read tallies its jobs
            await reset(pool, redis)
            _, batch_id = await submit_batch(http, url, args.jobs)
            reads = await time_reads(http, url, batch_id, args.reads)
            note(f"GET /v1/batches/{{id}} of a {args.jobs:,}-job batch: p50 {reads[len(reads) // 2]:.1f} ms")
    finally:
        procs.stop_all()
        await reset(pool, redis)
        await redis.aclose()
        await pool.close()
    return rounds, reads


def median(rounds: list[Round], way: str, attr: str) -> float:
    return float(statistics.median(getattr(r, attr) for r in rounds if r.way == way))


def spread(rounds: list[Round], way: str, attr: str, fmt: str, scale: float = 1) -> str:
    values = [scale * getattr(r, attr) for r in rounds if r.way == way]
    text = format(statistics.median(values), fmt)
    if len(values) > 1:
        text += f" [{format(min(values), fmt)}-{format(max(values), fmt)}]"
    return text


def headline(rounds: list[Round], n: int) -> list[Figure]:
    submit_ratio = median(rounds, "independent", "submit_s") / median(rounds, "batch", "submit_s")
    drain_ratio = median(rounds, "batch", "drain_per_s") / median(rounds, "independent", "drain_per_s")
    return [
        Figure(
            f"submitting {n:,} jobs: one batch vs {n:,} submissions",
            spread(rounds, "batch", "submit_s", ",.0f", 1000) + " ms",
            spread(rounds, "independent", "submit_s", ",.0f", 1000) + " ms",
            f"{submit_ratio:.1f}x cheaper",
            "far less than N submissions",
            submit_ratio > 1,
        ),
        Figure(
            f"draining {n:,} no-op jobs: a batch vs independent jobs",
            spread(rounds, "batch", "drain_per_s", ",.0f") + " jobs/s",
            spread(rounds, "independent", "drain_per_s", ",.0f") + " jobs/s",
            f"{100 * drain_ratio:.0f} %",
            f">= {100 * DRAIN_TARGET:.0f} %",
            drain_ratio >= DRAIN_TARGET,
        ),
    ]


def percentile(sorted_ms: list[float], pct: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * pct / 100))]


def render(header: str, rounds: list[Round], figures: list[Figure], reads: list[float]) -> str:
    lines = [
        header,
        "",
        "| figure | batch | independent | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f.figure} | {f.jobwire} | {f.baseline} | {f.ratio} | {f.target} | {verdict(bool(f.met))} |"
        )
    lags = [1000 * r.settle_after_s for r in rounds if r.settle_after_s is not None]
    if lags:
        lines += [
            "",
            f"A batch settled (terminal event, `batch.completed` owed) {statistics.median(lags):.0f} ms "
            f"(median; at most {max(lags):.0f} ms) after its last job finished.",
        ]
    if reads:
        lines.append(
            f"`GET /v1/batches/{{id}}` of a running {rounds[0].jobs:,}-job batch (counts read from its jobs):"
            " "
            f"p50 {percentile(reads, 50):.1f} ms, p99 {percentile(reads, 99):.1f} ms over {len(reads)} reads."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = arguments("batches", __doc__)
    parser.add_argument(
        "--jobs", type=int, default=1000, help="jobs per batch, and per drain (default 1,000)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported (default 3)")
    parser.add_argument("--concurrency", type=int, default=50, help="the worker's concurrency (default 50)")
    parser.add_argument(
        "--submitters", type=int, default=50, help="connections sending the single submissions (default 50)"
    )
    parser.add_argument("--reads", type=int, default=200, help="GET /v1/batches/{id} timed (default 200)")
    args = parse(parser, "batches", argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    note(f"preparing database {BATCHES_DATABASE_URL.rpartition('/')[2]} and an API key")
    key = migrate_and_key(env(), TENANT)
    procs = Procs("batches", env)
    rounds, reads = asyncio.run(run(args, procs, key))
    date = today()
    header = (
        f"Batches, {date}: nproc {nproc()}, one api and one worker process (concurrency {args.concurrency}), "
        f"no-op jobs, median of {args.rounds} rounds (range in brackets)"
    )
    figures = headline(rounds, args.jobs)
    table = render(header, rounds, figures, reads)
    print(table)
    found = [
        f"{f.figure}: {f.jobwire} vs {f.baseline}, target {f.target} not met" for f in figures if not f.met
    ]
    warn(found)
    report_stderr(procs.logs)
    payload: dict[str, Any] = {
        "date": date,
        "nproc": nproc(),
        "args": vars(args),
        "rounds": [asdict(r) for r in rounds],
        "reads_ms": {"p50": percentile(reads, 50), "p99": percentile(reads, 99), "n": len(reads)},
        "table": table,
        "headline": [asdict(f) for f in figures],
        "anomalies": found,
    }
    save_results("batches", payload, args.write_readme)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
