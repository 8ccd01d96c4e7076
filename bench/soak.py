"""Reliability soak: minutes of a mixed workload at 80 % of measured capacity, then an account of
every job, event and webhook, and the memory of each jobwire process over the run.

    python -m bench.soak [--minutes 10] [--rate R] [--write-readme]

Real processes, as deployed: one `jobwire api`, one `jobwire worker --concurrency 20`, one
`jobwire dispatcher`, a flaky webhook receiver (bench/flaky_receiver.py: 500 to 20 % of requests at
random) and a client process (bench/soak_clients.py: 50 SSE followers and 5 WebSocket dashboards),
on a database and a Redis namespace of their own, with a short webhook retry schedule so that
retries settle within the run.

1. Capacity (skipped with --rate): for 30 s, 16 clients keep 100 jobs unfinished (a backlog of five
   times the worker's concurrency, so it never waits for work) while the dashboards, followers,
   dispatcher and receiver run as in the soak. The capacity is the lower of jobs completed per
   second and deliveries delivered per second (two per job) over the last 20 s.
2. The soak: submissions paced at 80 % of that (or --rate), each job a `demo.sleep` of 10 ms with a
   `webhook_url` on the receiver, which also has an endpoint registered for job.completed and
   job.failed: every job owes two deliveries. Every 10 s: RSS and CPU of the api, worker and
   dispatcher, the backlog, and the load average.
3. The account, once submissions stop and everything settles: every 202 stored, terminal, with one
   terminal event and gapless seqs (tests/e2e/load.py's `account`); two deliveries per job, each
   delivered (or failed after its last attempt) and acknowledged by the receiver under its
   webhook-id; every follow a complete 1..N sequence; every terminal event on every dashboard; no
   5xx. Memory: RSS after a one-minute warm-up, at the end, and the least-squares slope between.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import uvloop
from redis.asyncio import Redis

from bench.harness import (
    REDIS_URL,
    RESULTS,
    Procs,
    arguments,
    cpu_seconds,
    free_port,
    jobwire_command,
    load_1m,
    migrate_and_key,
    note,
    nproc,
    own_database,
    parse,
    percentile,
    rss_kb,
    save_results,
    server_env,
    today,
    verdict,
    wait_until_answering,
    warn,
)
from jobwire.keys import Keys
from jobwire.redis_client import delete_namespace
from jobwire.webhooks import signing
from tests.e2e.load import account, unfinished

# a database of its own: the soak empties its tables before it starts
SOAK_DATABASE_URL = own_database("soak")
NAMESPACE = TENANT = "bench-soak"
SOAK_ENV = {
    "JOBWIRE_DATABASE_URL": SOAK_DATABASE_URL,
    "JOBWIRE_NAMESPACE": NAMESPACE,
    "JOBWIRE_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver listens on 127.0.0.1
    # delays 0.5, 1, 2, 4, 5, 5, … s: ten attempts take under a minute, so the retries of the
    # last jobs settle soon after the submissions stop
    "JOBWIRE_WEBHOOK_BACKOFF_BASE_S": "0.5",
    "JOBWIRE_WEBHOOK_BACKOFF_FACTOR": "2",
    "JOBWIRE_WEBHOOK_BACKOFF_MAX_S": "5",
    "JOBWIRE_WEBHOOK_BACKOFF_MAX_ATTEMPTS": "10",
    "JOBWIRE_LOG_FORMAT": "json",
}
JOB = {"type": "demo.sleep", "params": {"seconds": 0.01, "steps": 1}}
HOOK_PATH, ENDPOINT_PATH = "/hook", "/endpoint"
DELIVERIES_PER_JOB = 2  # the job's own webhook_url, and the endpoint registered for job.completed
WORKER_CONCURRENCY = 20
FOLLOWERS, DASHBOARDS = 50, 5
FAIL_RATE = 0.2
LOAD_SHARE = 0.8

CAPACITY_RAMP_S, CAPACITY_MEASURE_S = 10.0, 20.0
CAPACITY_SUBMITTERS = 16
CAPACITY_BACKLOG = 100
SUBMIT_IN_FLIGHT = 64  # the paced submitter's cap: a stalled api slows the pace, not piles up requests
SAMPLE_EVERY_S = 10.0
WARMUP_S = 60.0
# settling ends when the count reaches 0, or when it has not gone down for this long: a backlog left
# by a load spike on this shared machine may take minutes to drain, but it keeps draining
SETTLE_STALL_S = 90.0
CLIENTS_RESULT_TIMEOUT_S = 180.0
POLL_S = 0.5
# "flat": the growth over the measured window (the fitted slope times its length) is below the larger
# of these. A CPython process's RSS moves in steps (a burst of work grows the allocator's arenas and
# the heap once, and they are seldom handed back), of a few MB at most in these processes; a leak
# grows with the work done and keeps going. The table's note says how small a leak per job this
# catches over the run.
FLAT_MB = 4.0
FLAT_SHARE = 0.05
# a shorter window (a development run) cannot tell a step from a trend: no verdict then
FLAT_MIN_WINDOW_S = 300.0
MEASURED = ("api", "worker", "dispatcher")

UNFINISHED_SQL = "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')"
PENDING_DELIVERIES_SQL = "SELECT count(*) FROM deliveries WHERE status = 'pending'"


def soak_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return server_env({**SOAK_ENV, **(extra or {})})


async def start_service(procs: Procs, name: str, command: list[str], port: int) -> None:
    proc = procs.start(name, command)
    await asyncio.to_thread(wait_until_answering, name, proc, port, procs.logs[name])


async def start_clients(procs: Procs, api_url: str, key: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "bench.soak_clients",
        "--url",
        api_url,
        "--followers",
        str(FOLLOWERS),
        "--dashboards",
        str(DASHBOARDS),
    ]
    env = soak_env({"BENCH_SOAK_KEY": key})
    proc = procs.start("clients", command, env, stdout=subprocess.PIPE, stdin=subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    if not line.startswith(b"ready "):
        raise SystemExit(f"the client process did not get ready: {line!r}; see {procs.logs['clients']}")
    return proc


async def clients_result(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Close the clients' stdin (their signal to wrap up) and read their tallies."""
    out, _ = await asyncio.to_thread(proc.communicate, None, CLIENTS_RESULT_TIMEOUT_S)
    for line in out.splitlines():
        tag, _, payload = line.decode().partition(" ")
        if tag == "result":
            result: dict[str, Any] = json.loads(payload)
            return result
    raise SystemExit(f"the client process ended without a result (exit code {proc.returncode})")


# ---- database and Redis ----------------------------------------------------------------------


async def reset_state(pool: asyncpg.Pool) -> None:
    # endpoints too: one left by an earlier run would be owed deliveries of this one; and every
    # table the retention purge deletes from, batches included, so a run starts from empty ones
    await pool.execute(
        "TRUNCATE jobs, job_events, idempotency_keys, deliveries, delivery_attempts, batches, batch_checks,"
        " webhook_endpoints CASCADE"
    )
    redis = Redis.from_url(REDIS_URL)
    try:
        await delete_namespace(redis, Keys(NAMESPACE))  # the Redis server is shared
    finally:
        await redis.aclose()


async def wait_until_zero(pool: asyncpg.Pool, sql: str) -> tuple[bool, float]:
    """Poll a count until it is 0, or until it stops going down for SETTLE_STALL_S;
    (reached 0, seconds waited)."""
    t0 = last_progress = time.monotonic()
    lowest = await pool.fetchval(sql)
    while lowest:
        await asyncio.sleep(POLL_S)
        count = await pool.fetchval(sql)
        if count < lowest:
            lowest, last_progress = count, time.monotonic()
        elif time.monotonic() - last_progress > SETTLE_STALL_S:
            return False, time.monotonic() - t0
    return True, time.monotonic() - t0


# ---- submissions -----------------------------------------------------------------------------


@dataclass
class Submissions:
    """Every POST /v1/jobs of the run and its answer."""

    accepted: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    bad: list[str] = field(default_factory=list)  # samples of answers other than 202
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def non_202(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 202) + self.transport_errors


class Submitter:
    def __init__(self, session: aiohttp.ClientSession, api_url: str, key: str, hook_url: str) -> None:
        self.session = session
        self.url = f"{api_url}/v1/jobs"
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.body = orjson.dumps({**JOB, "webhook_url": hook_url})
        self.tally = Submissions()

    async def post(self) -> None:
        t0 = time.perf_counter()
        try:
            async with self.session.post(self.url, data=self.body, headers=self.headers) as resp:
                payload = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.tally.transport_errors += 1
            if len(self.tally.bad) < 5:
                self.tally.bad.append(f"{type(exc).__name__}: {exc}")
            return
        self.tally.statuses[status] += 1
        if status == 202:
            self.tally.accepted.append(orjson.loads(payload)["id"])
            self.tally.latencies_ms.append((time.perf_counter() - t0) * 1000)
        elif len(self.tally.bad) < 5:
            self.tally.bad.append(f"{status}: {payload[:200]!r}")

    async def paced(self, rate: float, duration_s: float) -> float:
        """POST at `rate` a second for `duration_s`; returns the rate achieved."""
        in_flight = asyncio.Semaphore(SUBMIT_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()

        async def one() -> None:
            try:
                await self.post()
            finally:
                in_flight.release()

        t0 = time.monotonic()
        sent = 0
        while time.monotonic() - t0 < duration_s:
            due = int((time.monotonic() - t0) * rate) + 1 - sent
            for _ in range(due):
                await in_flight.acquire()
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(max(0.001, t0 + sent / rate - time.monotonic()))
        elapsed = time.monotonic() - t0
        await asyncio.gather(*tasks)
        return sent / elapsed


# ---- capacity --------------------------------------------------------------------------------


@dataclass
class Capacity:
    jobs_per_s: float
    deliveries_per_s: float
    per_s: float  # the lower of the two, in jobs
    load_1m: float


async def measure_capacity(submitter: Submitter, pool: asyncpg.Pool) -> Capacity:
    """Keep CAPACITY_BACKLOG jobs unfinished and count what comes out: jobs completed and deliveries
    delivered per second over the measured window."""
    budget = 0  # submissions allowed until the next look at the backlog
    stop = asyncio.Event()

    async def watch_backlog() -> None:
        nonlocal budget
        while not stop.is_set():
            budget = CAPACITY_BACKLOG - await pool.fetchval(UNFINISHED_SQL)
            await asyncio.sleep(0.05)

    async def submit() -> None:
        nonlocal budget
        while not stop.is_set():
            if budget <= 0:
                await asyncio.sleep(0.01)
                continue
            budget -= 1
            await submitter.post()

    async def counts() -> tuple[float, int, int]:
        row = await pool.fetchrow(
            "SELECT (SELECT count(*) FROM jobs WHERE status = 'completed') AS jobs,"
            " (SELECT count(*) FROM deliveries WHERE status = 'delivered') AS deliveries"
        )
        assert row is not None
        return time.monotonic(), row["jobs"], row["deliveries"]

    tasks = [asyncio.create_task(watch_backlog())]
    tasks += [asyncio.create_task(submit()) for _ in range(CAPACITY_SUBMITTERS)]
    try:
        await asyncio.sleep(CAPACITY_RAMP_S)
        load = load_1m()
        t0, jobs0, deliveries0 = await counts()
        await asyncio.sleep(CAPACITY_MEASURE_S)
        t1, jobs1, deliveries1 = await counts()
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    jobs_per_s = (jobs1 - jobs0) / (t1 - t0)
    deliveries_per_s = (deliveries1 - deliveries0) / (t1 - t0)
    return Capacity(
        jobs_per_s, deliveries_per_s, min(jobs_per_s, deliveries_per_s / DELIVERIES_PER_JOB), load
    )


# ---- sampling --------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float  # seconds since the soak's first submission
    rss_kb: dict[str, int]
    cpu_s: dict[str, float]
    unfinished_jobs: int
    pending_deliveries: int
    accepted: int
    load_1m: float


async def take_sample(procs: Procs, pool: asyncpg.Pool, submitter: Submitter, t0: float) -> Sample:
    row = await pool.fetchrow(f"SELECT ({UNFINISHED_SQL}) AS jobs, ({PENDING_DELIVERIES_SQL}) AS deliveries")
    assert row is not None
    return Sample(
        t=time.monotonic() - t0,
        rss_kb={n: rss_kb(p.pid) for n, p in procs.by_name().items()},
        cpu_s={n: cpu_seconds(p.pid) for n, p in procs.by_name().items()},
        unfinished_jobs=row["jobs"],
        pending_deliveries=row["deliveries"],
        accepted=len(submitter.tally.accepted),
        load_1m=load_1m(),
    )


async def sample_every(
    procs: Procs, pool: asyncpg.Pool, submitter: Submitter, t0: float, samples: list[Sample]
) -> None:
    """Until cancelled: one Sample every SAMPLE_EVERY_S, on a fixed grid from t0."""
    while True:
        samples.append(await take_sample(procs, pool, submitter, t0))
        await asyncio.sleep(max(0.0, t0 + len(samples) * SAMPLE_EVERY_S - time.monotonic()))


@dataclass
class Memory:
    name: str
    start_mb: float  # the first sample after the warm-up
    end_mb: float  # the last sample while submitting
    peak_mb: float
    slope_mb_per_10min: float  # least squares over the window
    # the same over the window's second half only: a step early on (a burst of work that grew the
    # heap once) weighs on the whole slope, a trend shows in both
    late_slope_mb_per_10min: float
    growth_mb: float  # the slope over the window's length
    threshold_mb: float
    flat: bool | None  # None: the window is too short to tell
    cpu_pct: float  # mean over the window, of one core


def finish_rates(samples: list[Sample]) -> list[float]:
    """Jobs finished a second between consecutive samples (accepted minus still unfinished)."""
    done = [(s.t, s.accepted - s.unfinished_jobs) for s in samples]
    return [(d1 - d0) / (t1 - t0) for (t0, d0), (t1, d1) in itertools.pairwise(done) if t1 > t0]


def fit_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def memory(name: str, window: list[Sample]) -> Memory:
    ts = [s.t for s in window]
    mbs = [s.rss_kb[name] / 1024 for s in window]
    slope = fit_slope(ts, mbs)  # MB per second
    half = len(ts) // 2
    growth = slope * (ts[-1] - ts[0])
    threshold = max(FLAT_MB, FLAT_SHARE * mbs[0])
    cpu = window[-1].cpu_s[name] - window[0].cpu_s[name]
    return Memory(
        name=name,
        start_mb=mbs[0],
        end_mb=mbs[-1],
        peak_mb=max(mbs),
        slope_mb_per_10min=slope * 600,
        late_slope_mb_per_10min=fit_slope(ts[half:], mbs[half:]) * 600,
        growth_mb=growth,
        threshold_mb=threshold,
        flat=growth < threshold if ts[-1] - ts[0] >= FLAT_MIN_WINDOW_S else None,
        cpu_pct=100 * cpu / (ts[-1] - ts[0]) if ts[-1] > ts[0] else float("nan"),
    )


# ---- deliveries ------------------------------------------------------------------------------


@dataclass
class Deliveries:
    owed: int
    jobs_not_owed_two: int  # jobs with a number of delivery rows other than DELIVERIES_PER_JOB
    statuses: dict[str, int]
    attempts: int
    attempts_500: int
    max_attempts: int  # the most attempts one delivery took
    # the receiver's side
    received: int
    failed_on_purpose: int
    bad_signatures: int
    repeats: int
    delivered_not_acked: int  # delivered in PostgreSQL, but the receiver never answered 200 for it
    acked_not_delivered: int  # answered 200, but not (yet) delivered in PostgreSQL
    delivery_p50_s: float  # created to delivered, retries included
    delivery_p99_s: float


async def account_deliveries(pool: asyncpg.Pool, receiver: dict[str, Any]) -> Deliveries:
    rows = await pool.fetch(
        "SELECT job_id, seq, endpoint_id IS NULL AS own, status, attempts,"
        " EXTRACT(EPOCH FROM delivered_at - created_at)::float8 AS took FROM deliveries"
    )
    per_job = Counter(r["job_id"] for r in rows)
    jobs = await pool.fetchval("SELECT count(*) FROM jobs")
    acked = {path: set(ids) for path, ids in receiver["acked"].items()}
    delivered: dict[str, set[str]] = {HOOK_PATH: set(), ENDPOINT_PATH: set()}
    for r in rows:
        if r["status"] == "delivered":
            delivered[HOOK_PATH if r["own"] else ENDPOINT_PATH].add(signing.message_id(r["job_id"], r["seq"]))
    attempts = await pool.fetchrow(
        "SELECT count(*) AS n, count(*) FILTER (WHERE status_code = 500) AS n500 FROM delivery_attempts"
    )
    assert attempts is not None
    took = sorted(r["took"] for r in rows if r["took"] is not None)
    return Deliveries(
        owed=len(rows),
        jobs_not_owed_two=sum(1 for n in per_job.values() if n != DELIVERIES_PER_JOB) + (jobs - len(per_job)),
        statuses=dict(Counter(r["status"] for r in rows)),
        attempts=attempts["n"],
        attempts_500=attempts["n500"],
        max_attempts=max((r["attempts"] for r in rows), default=0),
        received=receiver["requests"],
        failed_on_purpose=receiver["failed_on_purpose"],
        bad_signatures=receiver["bad_signatures"],
        repeats=receiver["repeats"],
        delivered_not_acked=sum(len(ids - acked.get(path, set())) for path, ids in delivered.items()),
        acked_not_delivered=sum(len(ids - delivered.get(path, set())) for path, ids in acked.items()),
        delivery_p50_s=percentile(took, 50),
        delivery_p99_s=percentile(took, 99),
    )


# ---- the run ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    rate: float
    achieved_rate: float
    duration_s: float
    warmup_s: float
    capacity: Capacity | None
    submissions: Submissions
    samples: list[Sample]
    settled_jobs: bool
    settle_jobs_s: float
    settled_deliveries: bool
    settle_deliveries_s: float
    jobs: dict[str, Any]
    deliveries: Deliveries
    clients: dict[str, Any]
    memory: list[Memory]
    log_lines: dict[str, int]


async def register_webhooks(
    session: aiohttp.ClientSession, api_url: str, key: str, receiver_url: str
) -> None:
    """The endpoint for job.completed and job.failed, and both secrets handed to the receiver so
    that it can check every signature."""
    auth = {"Authorization": f"Bearer {key}"}
    endpoint = {"url": receiver_url + ENDPOINT_PATH, "events": ["job.completed", "job.failed"]}
    async with session.post(f"{api_url}/v1/webhooks", json=endpoint, headers=auth) as resp:
        if resp.status != 201:
            raise SystemExit(f"registering the endpoint answered {resp.status}: {await resp.text()}")
        endpoint_secret = (await resp.json())["secret"]
    async with session.get(f"{api_url}/v1/webhooks/signing-secret", headers=auth) as resp:
        resp.raise_for_status()
        signing_secret = (await resp.json())["secret"]
    secrets = {HOOK_PATH: [signing_secret], ENDPOINT_PATH: [endpoint_secret]}
    async with session.post(f"{receiver_url}/_soak/secrets", data=orjson.dumps(secrets)) as resp:
        resp.raise_for_status()


async def run(args: argparse.Namespace, procs: Procs, pool: asyncpg.Pool, key: str) -> Outcome:
    receiver_port, api_port = free_port(), free_port()
    receiver_url, api_url = f"http://127.0.0.1:{receiver_port}", f"http://127.0.0.1:{api_port}"
    receiver_cmd = [sys.executable, "-m", "bench.flaky_receiver", "--port", str(receiver_port)]
    await start_service(procs, "receiver", [*receiver_cmd, "--fail-rate", str(FAIL_RATE)], receiver_port)
    await start_service(procs, "api", [jobwire_command(), "api", "--port", str(api_port)], api_port)
    procs.start("worker", [jobwire_command(), "worker", "--concurrency", str(WORKER_CONCURRENCY)])
    procs.start("dispatcher", [jobwire_command(), "dispatcher"])

    connector = aiohttp.TCPConnector(limit=SUBMIT_IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        await register_webhooks(session, api_url, key, receiver_url)
        clients = await start_clients(procs, api_url, key)
        submitter = Submitter(session, api_url, key, receiver_url + HOOK_PATH)

        capacity: Capacity | None = None
        if args.rate:
            rate = float(args.rate)
        else:
            note(
                f"capacity: {CAPACITY_RAMP_S + CAPACITY_MEASURE_S:.0f} s "
                f"with {CAPACITY_BACKLOG} jobs kept unfinished"
            )
            capacity = await measure_capacity(submitter, pool)
            rate = LOAD_SHARE * capacity.per_s
            note(
                f"  {capacity.jobs_per_s:.0f} jobs/s completed, "
                f"{capacity.deliveries_per_s:.0f} deliveries/s: the soak runs at {rate:.0f} jobs/s"
            )
            # start from a quiet pipeline: the capacity run's backlog is not the soak's
            await wait_until_zero(pool, UNFINISHED_SQL)
            await wait_until_zero(pool, PENDING_DELIVERIES_SQL)

        duration = args.minutes * 60
        warmup = min(WARMUP_S, duration / 3)  # a short development run keeps two thirds measured
        note(f"soak: {duration:.0f} s at {rate:.0f} jobs/s (warm-up {warmup:.0f} s)")
        samples: list[Sample] = []
        t0 = time.monotonic()
        sampler = asyncio.create_task(sample_every(procs, pool, submitter, t0, samples))
        progress = asyncio.create_task(report_progress(samples))
        try:
            achieved = await submitter.paced(rate, duration)
        finally:
            sampler.cancel()
            progress.cancel()
            await asyncio.gather(sampler, progress, return_exceptions=True)
        # the last sample at the end of the submissions, and none after: the settling is not load
        samples.append(await take_sample(procs, pool, submitter, t0))

        note("settling: waiting for every job to finish and every delivery to settle")
        settled_jobs, settle_jobs_s = await wait_until_zero(pool, UNFINISHED_SQL)
        settled_deliveries, settle_deliveries_s = await wait_until_zero(pool, PENDING_DELIVERIES_SQL)
        clients_seen = await clients_result(clients)
        async with session.get(f"{receiver_url}/_soak/report") as resp:
            receiver_seen: dict[str, Any] = await resp.json()

    note("accounting")
    accepted = submitter.tally.accepted
    jobs = await account(SOAK_DATABASE_URL, accepted)
    jobs["unfinished"] = await unfinished(SOAK_DATABASE_URL, accepted)
    jobs["rows_in_database"] = await pool.fetchval("SELECT count(*) FROM jobs")
    deliveries = await account_deliveries(pool, receiver_seen)
    window = [s for s in samples if s.t >= warmup - 1]
    if len(window) < 3:
        raise SystemExit(f"only {len(window)} samples after the warm-up: run for longer (--minutes)")
    return Outcome(
        rate=rate,
        achieved_rate=achieved,
        duration_s=duration,
        warmup_s=warmup,
        capacity=capacity,
        submissions=submitter.tally,
        samples=samples,
        settled_jobs=settled_jobs,
        settle_jobs_s=settle_jobs_s,
        settled_deliveries=settled_deliveries,
        settle_deliveries_s=settle_deliveries_s,
        jobs=jobs,
        deliveries=deliveries,
        clients=clients_seen,
        memory=[memory(name, window) for name in MEASURED],
        log_lines={},
    )


async def report_progress(samples: list[Sample]) -> None:
    """A line a minute on stderr, so a ten-minute run shows it is alive."""
    shown = 0
    while True:
        await asyncio.sleep(5)
        if samples and samples[-1].t >= shown + 60:
            s = samples[-1]
            shown = int(s.t // 60) * 60
            rss = ", ".join(f"{n} {s.rss_kb[n] / 1024:.1f} MB" for n in MEASURED)
            note(
                f"  {s.t:4.0f} s: {s.accepted:,} accepted, {s.unfinished_jobs} unfinished, "
                f"{s.pending_deliveries} deliveries pending; RSS {rss}; load {s.load_1m:.1f}"
            )


# ---- report ----------------------------------------------------------------------------------


def count_log_lines(logs: dict[str, Path]) -> dict[str, int]:
    """Lines each process wrote to stderr: at JOBWIRE_LOG_LEVEL=warning, every one is a warning or
    an error."""
    return {name: len(path.read_bytes().splitlines()) for name, path in logs.items() if path.exists()}


def anomalies(o: Outcome) -> list[str]:
    found: list[str] = []
    s, j, d = o.submissions, o.jobs, o.deliveries
    n = len(s.accepted)
    if s.non_202:
        found.append(f"{s.non_202} submissions not answered 202: {dict(s.statuses)}, samples {s.bad}")
    if j["stored"] != n or j["rows_in_database"] != n:
        found.append(
            f"{n} accepted, {j['stored']} of them stored, {j['rows_in_database']} jobs in the database"
        )
    if j["unfinished"] or set(j["statuses"]) - {"completed"}:
        found.append(f"jobs not completed: {j['statuses']}")
    if j["one_terminal_event"] != n or j["several_terminal_events"] or j["gapped"]:
        found.append(f"event sequences: {j}")
    if d.jobs_not_owed_two or d.owed != DELIVERIES_PER_JOB * n:
        found.append(f"{d.owed} deliveries for {n} jobs; {d.jobs_not_owed_two} jobs without exactly two")
    if set(d.statuses) - {"delivered"}:
        found.append(f"deliveries not delivered: {d.statuses}")
    if d.delivered_not_acked or d.bad_signatures:
        found.append(
            f"receiver: {d.delivered_not_acked} delivered but never acknowledged, "
            f"{d.bad_signatures} bad signatures"
        )
    f = o.clients["followers"]
    if f["complete"] != f["follows"]:
        found.append(f"SSE follows: {f}")
    for i, b in enumerate(o.clients["dashboards"]):
        if b["terminal"] != n or b["not_ascending"] or b["unfinished_jobs"] or b["late_joins"]:
            found.append(f"dashboard {i}: {b}")
    for m in o.memory:
        if m.flat is False:
            found.append(
                f"{m.name}: RSS grew {m.growth_mb:+.1f} MB over the window "
                f"({m.start_mb:.1f} → {m.end_mb:.1f})"
            )
    for name, lines in o.log_lines.items():
        if lines:
            found.append(
                f"{name} logged {lines} warning/error lines (see {RESULTS / f'soak-{name}.stderr.log'})"
            )
    return found


def render(o: Outcome, header: str) -> str:
    s, j, d = o.submissions, o.jobs, o.deliveries
    n = len(s.accepted)
    f = o.clients["followers"]
    boards = o.clients["dashboards"]
    window = [x for x in o.samples if x.t >= o.warmup_s - 1]
    lat = sorted(s.latencies_ms)
    delivered = d.statuses.get("delivered", 0)
    rates = finish_rates(o.samples)
    rows: list[tuple[str, str, str, bool | None]] = [
        (
            "jobs accepted (202)",
            f"{n:,} ({o.achieved_rate:.0f}/s in the soak; 202 p50 {percentile(lat, 50):.1f} ms, "
            f"p99 {percentile(lat, 99):.1f} ms)",
            "",
            None,
        ),
        ("answers other than 202 (5xx included), transport errors", f"{s.non_202}", "0", s.non_202 == 0),
        (
            "accepted jobs stored and completed",
            f"{j['stored']:,} stored, {j['statuses'].get('completed', 0):,} completed "
            f"(all finished {o.settle_jobs_s:.0f} s after the last submission)",
            "all",
            j["stored"] == n and j["statuses"].get("completed", 0) == n,
        ),
        (
            "exactly one terminal event, gapless seqs",
            f"{j['one_terminal_event']:,} of {n:,} "
            f"({j['gapped']} gapped, {j['several_terminal_events']} with two)",
            "all",
            j["one_terminal_event"] == n and not j["gapped"] and not j["several_terminal_events"],
        ),
        (
            f"deliveries owed ({DELIVERIES_PER_JOB} a job: webhook_url + endpoint)",
            f"{d.owed:,} ({d.jobs_not_owed_two} jobs without exactly {DELIVERIES_PER_JOB})",
            f"{DELIVERIES_PER_JOB * n:,}",
            d.owed == DELIVERIES_PER_JOB * n and not d.jobs_not_owed_two,
        ),
        (
            "deliveries delivered / failed (dead letters) / pending",
            f"{delivered:,} / {d.statuses.get('failed', 0)} / {d.statuses.get('pending', 0)} "
            f"(settled {o.settle_deliveries_s:.0f} s after the jobs)",
            "all delivered",
            delivered == d.owed,
        ),
        (
            "delivered webhook-ids the receiver acknowledged",
            f"{delivered - d.delivered_not_acked:,} of {delivered:,}; {d.bad_signatures} bad signatures",
            "all; 0",
            not d.delivered_not_acked and not d.bad_signatures,
        ),
        (
            "attempts: answered 500 on purpose, most for one delivery, repeats after a 200",
            f"{d.attempts:,}: {d.attempts_500:,} ({100 * d.attempts_500 / max(1, d.attempts):.1f} %), "
            f"{d.max_attempts}, {d.repeats}",
            "",
            None,
        ),
        (
            "delivery time, created to delivered (retries included), p50 / p99",
            f"{d.delivery_p50_s * 1000:.0f} ms / {d.delivery_p99_s:.2f} s",
            "",
            None,
        ),
        (
            f"SSE follows ({FOLLOWERS} followers): complete 1..N, ending terminal",
            f"{f['complete']:,} of {f['follows']:,} ({f['reconnects']} reconnects)",
            "all",
            f["complete"] == f["follows"] and f["follows"] > 0,
        ),
        (
            f"WebSocket dashboards ({DASHBOARDS}, all events): terminal events seen, each",
            f"{min(b['terminal'] for b in boards):,}-{max(b['terminal'] for b in boards):,} of {n:,} "
            f"({sum(b['connects'] for b in boards) - len(boards)} reconnects, "
            f"{sum(b['not_ascending'] for b in boards)} out of order, "
            f"{sum(b['coalesced'] for b in boards)} progress coalesced)",
            "all",
            all(b["terminal"] == n and not b["not_ascending"] and not b["unfinished_jobs"] for b in boards),
        ),
        (
            "backlog during the soak, max: unfinished jobs / pending deliveries; jobs finished a second",
            f"{max(x.unfinished_jobs for x in window):,} / {max(x.pending_deliveries for x in window):,}; "
            f"{min(rates):.0f}-{max(rates):.0f} over 10 s windows (mean {statistics.fmean(rates):.0f})",
            "",
            None,
        ),
    ]
    for m in o.memory:
        rows.append(
            (
                f"{m.name} RSS, after warm-up → end (peak); slope (second half); CPU",
                f"{m.start_mb:.1f} → {m.end_mb:.1f} MB ({m.peak_mb:.1f}); "
                f"{m.slope_mb_per_10min:+.1f} ({m.late_slope_mb_per_10min:+.1f}) MB / 10 min; "
                f"{m.cpu_pct:.0f} %",
                f"flat: < {m.threshold_mb:.1f} MB" if m.flat is not None else "window < 5 min: not judged",
                m.flat,
            )
        )
    lines = [header, "", "| figure | result | target | met |", "| --- | --- | --- | --- |"]
    for figure, result, target, met in rows:
        lines.append(f"| {figure} | {result} | {target} | {'' if met is None else verdict(met)} |")
    loads = [x.load_1m for x in o.samples]
    window_jobs = window[-1].accepted - window[0].accepted
    sensitivity = FLAT_MB * 2**20 / max(1, window_jobs)
    if o.capacity is not None:
        c = o.capacity
        how = (
            f"Capacity, measured first with the same processes and clients: {c.jobs_per_s:.0f} jobs/s "
            f"completed and {c.deliveries_per_s:.0f} deliveries/s delivered over {CAPACITY_MEASURE_S:.0f} s "
            f"with {CAPACITY_BACKLOG} jobs kept unfinished (load average {c.load_1m:.1f}); the soak ran at "
            f"{LOAD_SHARE:.0%} of {c.per_s:.0f} jobs/s."
        )
    else:
        how = f"Rate given with --rate ({o.rate:.0f} jobs/s); capacity not measured."
    lines += [
        "",
        f"{how} Jobs: `demo.sleep` of 10 ms, each with a webhook_url; an endpoint registered for "
        f"job.completed and job.failed; the receiver answers 500 to {FAIL_RATE:.0%} of requests at random "
        "(retries after 0.5, 1, 2, 4, 5, … s, 10 attempts) and checks every signature. Followers start a "
        "follow at most once a second each. RSS sampled every "
        f"{SAMPLE_EVERY_S:.0f} s; start = first sample after the {o.warmup_s:.0f} s warm-up, slope = least "
        f"squares over the {window[-1].t - window[0].t:.0f} s after it; flat = fitted growth below "
        f"max({FLAT_MB:.0f} MB, {FLAT_SHARE:.0%}), which a leak of {sensitivity:.0f} bytes a job or more "
        f"would exceed over the window's {window_jobs:,} jobs. Load average (1 min) during the soak: "
        f"{min(loads):.1f}-{max(loads):.1f} (mean {statistics.fmean(loads):.1f}), the machine shared.",
    ]
    return "\n".join(lines)


# ---- main ------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace, procs: Procs) -> Outcome:
    key = await asyncio.to_thread(migrate_and_key, soak_env(), TENANT)
    pool = await asyncpg.create_pool(SOAK_DATABASE_URL, min_size=1, max_size=4)
    kept = False
    try:
        await reset_state(pool)
        try:
            outcome = await run(args, procs, pool, key)
        finally:
            await asyncio.to_thread(procs.stop_all)
        outcome.log_lines = count_log_lines(procs.logs)
        # a clean run leaves nothing behind; a run that lost something keeps its rows to look at
        kept = bool(anomalies(outcome))
        return outcome
    finally:
        if not kept:
            await reset_state(pool)
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = arguments("soak", __doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak (default 10)")
    parser.add_argument("--rate", type=float, help="jobs a second; default: 80 %% of the measured capacity")
    args = parse(parser, "soak", argv)

    RESULTS.mkdir(parents=True, exist_ok=True)
    note("preparing database jobwire_bench_soak and an API key")
    procs = Procs("soak", soak_env, stdin=subprocess.DEVNULL)
    t0 = time.monotonic()
    try:
        outcome = uvloop.run(main_async(args, procs))
    finally:
        procs.stop_all()
    note(f"done in {time.monotonic() - t0:.0f} s")

    date = today()
    header = (
        f"Reliability soak, {date}: nproc {nproc()}, {args.minutes:g} min at {outcome.rate:.0f} jobs/s, "
        f"one api, one worker (concurrency {WORKER_CONCURRENCY}), one dispatcher, {FOLLOWERS} SSE followers, "
        f"{DASHBOARDS} WebSocket dashboards, a receiver failing {FAIL_RATE:.0%} of requests"
    )
    table = render(outcome, header)
    print(table)
    found = anomalies(outcome)
    warn(found)
    if found:
        note(f"the database {SOAK_DATABASE_URL} keeps this run's rows for a look")
    payload: dict[str, Any] = {
        "date": date,
        "nproc": nproc(),
        "minutes": args.minutes,
        "table": table,
        "anomalies": found,
        **{k: v for k, v in asdict(outcome).items() if k != "submissions"},
        "submissions": {
            "accepted": len(outcome.submissions.accepted),
            "statuses": dict(outcome.submissions.statuses),
            "transport_errors": outcome.submissions.transport_errors,
            "bad": outcome.submissions.bad,
        },
    }
    save_results("soak", payload, args.write_readme, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
