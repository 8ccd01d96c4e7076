"""Submission throughput: jobwire against a bare aiohttp ceiling and a naive INSERT + enqueue_job.

    python -m bench.submit [--duration S] [--connections C] [--rounds N] [--write-readme]

Each target is one server process, loaded by wrk with POST /v1/jobs. jobwire is measured three ways:
as deployed at its defaults (info logs, the access log on, a worker and a dispatcher running beside
the api and working off what it accepts), the same processes with logging off (what logging costs),
and tuned (the api alone, logging off). The machine is shared and noisy, so absolute numbers mean
little: the table reports each target against the two baselines measured in the same run.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import asyncpg
from redis.asyncio import Redis

from bench.baselines import NAIVE_QUEUE, NAIVE_TABLE_DDL
from bench.harness import (
    BENCH,
    DATABASE_URL,
    DEFAULT_LOGGING,
    DEMO_BODY,
    LOGGING_TARGET,
    NOOP_BODY,
    POST_SCRIPT,
    REDIS_URL,
    RESULTS,
    ROOT,
    WRK_THREADS,
    Figure,
    WrkResult,
    arguments,
    bench_jobs_env,
    cpu_seconds,
    free_port,
    jobwire_command,
    migrate_and_key,
    note,
    nproc,
    parse,
    post_env,
    report_logged_problems,
    report_stderr,
    require_wrk,
    save_results,
    server_env,
    stop_server,
    today,
    wait_until_answering,
    warn,
)
from bench.harness import run_wrk as harness_wrk
from jobwire.keys import Keys
from jobwire.redis_client import delete_namespace

NAMESPACE = "bench"  # harness.ENV's, which the servers get
# "jobwire": tuned, the api alone with logging off; "deployed": the api at its defaults beside a worker
# and a dispatcher; "deployed, logs off": the same processes, with logging off
# "naive, deployed": the naive handler beside a bare ARQ worker running what it accepts, the baseline of
# the deployed ones
TARGETS = ("ceiling", "naive", "jobwire", "naive, deployed", "deployed, logs off", "deployed")
DEPLOYED = ("deployed, logs off", "deployed")
WITH_WORKER = ("naive, deployed", *DEPLOYED)
# the deployed targets' workers run what they accept: no-op jobs (bench.noop; ARQ's noop)
BESIDE_CONCURRENCY = "10"  # jobwire's default worker concurrency, and ARQ's default max_jobs
BESIDE_POLL_S = "0.02"  # a short poll for the bare ARQ worker (ARQ's own 0.5 s would leave it idle)
WARMUP_S = 3
# the targets for submission
NAIVE_TARGET = 3.0  # jobwire's req/s, as a multiple of naive's
CEILING_TARGET = 0.40  # jobwire's req/s, as a share of the ceiling's
LATENCY_CONNECTIONS = 64  # jobwire's p99 <= naive's p50, at this many connections


@dataclass
class Run:
    target: str
    round: int
    result: WrkResult
    # CPU time per request answered over the measured run, in µs: of the server process, and of the
    # processes beside it (worker, dispatcher). It changes far less with the machine's load than
    # req/s does, so it is what the cost of logging is judged on
    server_cpu_us: float = 0.0
    beside_cpu_us: float = 0.0


# ---- setup and reset -------------------------------------------------------------------------


def prepare() -> str:
    """Create the bench database and its schema; return a fresh API key for tenant `bench`."""
    key = migrate_and_key(server_env(), NAMESPACE)
    asyncio.run(create_naive_table())
    return key


async def create_naive_table() -> None:
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        await conn.execute(NAIVE_TABLE_DDL)
    finally:
        await conn.close()


async def reset_state() -> None:
    """Empty every table and Redis key a target writes, so each measured run starts the same."""
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        # CASCADE: deliveries and their attempts reference jobs
        await conn.execute("TRUNCATE jobs, job_events, idempotency_keys, naive_jobs CASCADE")
    finally:
        await conn.close()

    redis = Redis.from_url(REDIS_URL)
    try:
        # the naive jobs' ARQ keys are `arq:job:<uuid>`, with no namespace to match on: find them
        # through the queue (nothing consumes it) rather than deleting every `arq:job:*`
        naive_ids: list[bytes] = await redis.zrange(NAIVE_QUEUE, 0, -1)
        doomed = [b"arq:job:" + job_id for job_id in naive_ids] + [NAIVE_QUEUE.encode()]
        for start in range(0, len(doomed), 1000):
            await redis.unlink(*doomed[start : start + 1000])
        await delete_namespace(redis, Keys(NAMESPACE))
    finally:
        await redis.aclose()


# ---- servers ---------------------------------------------------------------------------------


def target_env(target: str) -> dict[str, str]:
    if target in DEPLOYED:
        # harness.ENV turns logging off (level warning, no access log): the defaults put it back
        return bench_jobs_env(DEFAULT_LOGGING if target == "deployed" else None)
    return server_env()


def start_server(target: str, port: int, stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    if target == "jobwire" or target in DEPLOYED:
        command = [jobwire_command(), "api", "--port", str(port)]
    else:
        command = [
            sys.executable,
            str(BENCH / "baselines.py"),
            target.partition(",")[0],
            "--port",
            str(port),
            "--database-url",
            DATABASE_URL,
        ]
    env = target_env(target)
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT)


def start_beside(target: str, stderr: IO[bytes]) -> list[subprocess.Popen[bytes]]:
    """What runs beside a deployed target's server: jobwire's worker and dispatcher at their defaults,
    or for naive, a bare ARQ worker on its queue."""
    if target == "naive, deployed":
        commands = [
            [sys.executable, "-m", "bench.bare_arq", "--queue", NAIVE_QUEUE, "--max-jobs", BESIDE_CONCURRENCY,
             "--poll-delay", BESIDE_POLL_S],
        ]  # fmt: skip
    else:
        commands = [[jobwire_command(), "worker"], [jobwire_command(), "dispatcher"]]
    return [
        subprocess.Popen(command, env=target_env(target), stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT)
        for command in commands
    ]


# ---- wrk ----------------------------------------------------------------------------------


def run_wrk(wrk: str, port: int, connections: int, duration: int, key: str, body: str) -> WrkResult:
    url = f"http://127.0.0.1:{port}/v1/jobs"
    return harness_wrk(wrk, url, connections, duration, POST_SCRIPT, post_env(key, body))


# ---- one run ---------------------------------------------------------------------------------


def measure(
    target: str, wrk: str, key: str, connections: int, duration: int, log: IO[bytes], log_path: Path
) -> tuple[WrkResult, float, float]:
    """wrk's result, and the server's and the beside processes' CPU µs per request."""
    asyncio.run(reset_state())
    port = free_port()
    proc = start_server(target, port, log)
    beside: list[subprocess.Popen[bytes]] = []
    body = NOOP_BODY if target in WITH_WORKER else DEMO_BODY
    try:
        if target in WITH_WORKER:
            beside = start_beside(target, log)
        wait_until_answering(target, proc, port, log_path)
        # warm-up fills the connection pools and caches; its numbers are thrown away
        run_wrk(wrk, port, connections, WARMUP_S, key, body)
        if target not in WITH_WORKER:
            # with a worker running, its backlog stays: a deployed api works beside a busy worker
            asyncio.run(reset_state())
        before = [cpu_seconds(p.pid) for p in (proc, *beside)]
        result = run_wrk(wrk, port, connections, duration, key, body)
        used = [cpu_seconds(p.pid) - b for p, b in zip((proc, *beside), before, strict=True)]
        requests = max(1.0, result.requests_per_s * duration)
        return result, 1e6 * used[0] / requests, 1e6 * sum(used[1:]) / requests
    finally:
        for p in [proc, *beside]:
            stop_server(p)


# ---- report ----------------------------------------------------------------------------------


def combine(results: list[WrkResult]) -> WrkResult:
    """Median of the rounds for speed; errors are summed, a median could hide them."""
    statuses: dict[int, int] = {}
    for r in results:
        for status, count in r.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    return WrkResult(
        requests_per_s=statistics.median(r.requests_per_s for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        statuses=statuses,
    )


def errors_cell(r: WrkResult) -> str:
    cell = str(r.non_2xx)
    if r.statuses:
        cell += " (" + ", ".join(f"{s}: {n}" for s, n in sorted(r.statuses.items())) + ")"
    if r.socket_errors:
        cell += f" + {r.socket_errors} socket errors"
    return cell


def render(combined: dict[str, WrkResult], cpu: dict[str, tuple[float, float]], header: str) -> str:
    naive = combined["naive"].requests_per_s
    ceiling = combined["ceiling"].requests_per_s
    lines: list[str] = [
        header,
        "",
        "| target | req/s | p50 ms | p99 ms | non-2xx | vs naive | vs ceiling | server CPU µs/req "
        "| worker (+ dispatcher) CPU µs/req |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for target in TARGETS:
        r = combined[target]
        # a deployed target against the naive handler deployed too
        naive = combined["naive, deployed" if target in WITH_WORKER else "naive"].requests_per_s
        server_cpu, beside_cpu = cpu[target]
        beside_cell = f"{beside_cpu:.0f}" if target in WITH_WORKER else ""
        lines.append(
            f"| {LABELS[target]} | {r.requests_per_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {errors_cell(r)} | {r.requests_per_s / naive:.2f}x | {r.requests_per_s / ceiling:.2f}x "
            f"| {server_cpu:.0f} | {beside_cell} |"
        )
    quiet, loud = combined["deployed, logs off"].requests_per_s, combined["deployed"].requests_per_s
    lines += [
        "",
        f"Logging at the defaults (info, access log on) costs the deployed api "
        f"{cpu_cost(cpu):.0%} more CPU per request ({cpu['deployed'][0]:.0f} against "
        f"{cpu['deployed, logs off'][0]:.0f} µs), and {logging_cost(combined):.0%} of its throughput "
        f"({loud:,.0f} against {quiet:,.0f} req/s with logging off; req/s swings far more from round to "
        "round on the shared machine than CPU per request does). CPU: medians over the rounds of each "
        "process's CPU time over the measured run, per request answered. Deployed: "
        "`jobwire api`, `jobwire worker` and `jobwire dispatcher` at their defaults, the worker running "
        "the accepted no-op jobs while wrk submits; naive deployed: the naive handler beside a bare ARQ "
        f"worker (max_jobs {BESIDE_CONCURRENCY}, poll {BESIDE_POLL_S} s) running its no-op jobs. A deployed "
        "row's `vs naive` is against naive deployed. The api and its worker share the 2 cores with wrk "
        "and PostgreSQL. Tuned, naive and ceiling run alone (jobs: demo.sleep, left queued).",
    ]
    return "\n".join(lines)


LABELS = {
    "ceiling": "ceiling",
    "naive": "naive",
    "jobwire": "jobwire, tuned (api alone, logging off)",
    "naive, deployed": "naive as deployed (beside a bare ARQ worker)",
    "deployed, logs off": "jobwire as deployed, logging off",
    "deployed": "jobwire as deployed, defaults (info, access log)",
}


def cpu_cost(cpu: dict[str, tuple[float, float]]) -> float:
    """The api's extra CPU per request with logging at the defaults (0.1: 10 % more)."""
    return cpu["deployed"][0] / cpu["deployed, logs off"][0] - 1


def median_cpu(runs: list[Run]) -> dict[str, tuple[float, float]]:
    return {
        t: (
            statistics.median(r.server_cpu_us for r in runs if r.target == t),
            statistics.median(r.beside_cpu_us for r in runs if r.target == t),
        )
        for t in {r.target for r in runs}
    }


def logging_cost(combined: dict[str, WrkResult]) -> float:
    """The share of the logs-off throughput that logging at the defaults costs (0.1: 10 % fewer req/s)."""
    return 1 - combined["deployed"].requests_per_s / combined["deployed, logs off"].requests_per_s


def headline(
    combined: dict[str, WrkResult], cpu: dict[str, tuple[float, float]], connections: int
) -> list[Figure]:
    jw, naive, ceiling = combined["deployed"], combined["naive, deployed"], combined["ceiling"]
    tuned, naive_alone = combined["jobwire"], combined["naive"]
    vs_naive = jw.requests_per_s / naive.requests_per_s
    vs_ceiling = jw.requests_per_s / ceiling.requests_per_s
    missed = [
        name
        for name, ok in (("vs naive", vs_naive >= NAIVE_TARGET), ("vs ceiling", vs_ceiling >= CEILING_TARGET))
        if not ok
    ]
    latency_judged = connections == LATENCY_CONNECTIONS
    cost, extra_cpu = logging_cost(combined), cpu_cost(cpu)
    return [
        Figure(
            figure="submission throughput, `POST /v1/jobs` at full durability, one api process as deployed "
            "(defaults, beside a worker and a dispatcher)",
            jobwire=f"{jw.requests_per_s:,.0f} req/s (tuned: {tuned.requests_per_s:,.0f} req/s, "
            f"{tuned.requests_per_s / naive_alone.requests_per_s:.2f}x naive alone)",
            baseline=f"naive deployed: {naive.requests_per_s:,.0f} req/s; "
            f"ceiling: {ceiling.requests_per_s:,.0f} req/s",
            ratio=f"{vs_naive:.2f}x naive; {vs_ceiling:.0%} of ceiling",
            target=f"≥ {NAIVE_TARGET:g}x naive and ≥ {CEILING_TARGET:.0%} of ceiling",
            met=not missed,
            why=", ".join(f"missed {m}" for m in missed),
        ),
        Figure(
            figure=f"submission latency, {connections} connections",
            jobwire=f"p99 {jw.p99_ms:.2f} ms",
            baseline=f"naive deployed: p50 {naive.p50_ms:.2f} ms (p99 {naive.p99_ms:.2f} ms)",
            ratio=f"{jw.p99_ms / naive.p50_ms:.2f}x",
            target="jobwire p99 ≤ naive p50",
            met=jw.p99_ms <= naive.p50_ms if latency_judged else None,
            why="" if latency_judged else f"the target is at {LATENCY_CONNECTIONS} connections",
        ),
        Figure(
            figure="cost of logging at the defaults (info, access log) in submission, api as deployed",
            jobwire=f"{cpu['deployed'][0]:.0f} µs CPU/request; "
            f"{combined['deployed'].requests_per_s:,.0f} req/s",
            baseline=f"logging off: {cpu['deployed, logs off'][0]:.0f} µs; "
            f"{combined['deployed, logs off'].requests_per_s:,.0f} req/s",
            ratio=f"CPU/request +{extra_cpu:.0%}; req/s {-cost:+.0%}",
            target=f"≤ {LOGGING_TARGET:.0%}",
            met=extra_cpu <= LOGGING_TARGET,
            why="judged on CPU per request: req/s swings far more between rounds on the shared machine",
        ),
    ]


def anomalies(combined: dict[str, WrkResult]) -> list[str]:
    """Errors a correct server does not answer with: non-2xx answers and socket errors."""
    return [
        f"{target}: non-2xx {errors_cell(r)}"
        for target, r in combined.items()
        if r.non_2xx or r.socket_errors
    ]


def slug(target: str) -> str:
    return target.replace(", ", "-").replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    parser = arguments("submit", __doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds of ceiling, naive, jobwire interleaved; the median is reported",
    )
    args = parse(parser, "submit", argv)

    wrk = require_wrk()
    RESULTS.mkdir(parents=True, exist_ok=True)
    note("preparing database jobwire_bench and an API key")
    key = prepare()

    log_paths = {target: RESULTS / f"submit-{slug(target)}.stderr.log" for target in TARGETS}
    runs: list[Run] = []
    logs = {target: path.open("wb") for target, path in log_paths.items()}
    try:
        # interleaved, so slow drift of the machine's load spreads over every target alike
        for round_no in range(1, args.rounds + 1):
            for target in TARGETS:
                note(
                    f"round {round_no}/{args.rounds}: {target} "
                    f"({WARMUP_S} s warm-up, {args.duration} s measured, {args.connections} connections)"
                )
                result, server_cpu, beside_cpu = measure(
                    target, wrk, key, args.connections, args.duration, logs[target], log_paths[target]
                )
                runs.append(Run(target, round_no, result, server_cpu, beside_cpu))
                note(
                    f"  {result.requests_per_s:,.0f} req/s; server CPU {server_cpu:.0f} µs/request, "
                    f"beside it {beside_cpu:.0f} µs/request"
                )
    finally:
        for handle in logs.values():
            handle.close()
    # leave no queued bench jobs behind for a worker of namespace `bench` to pick up; after a failure
    # the next run's reset does it instead
    asyncio.run(reset_state())

    combined = {t: combine([run.result for run in runs if run.target == t]) for t in TARGETS}
    date = today()
    rounds = "1 round" if args.rounds == 1 else f"median of {args.rounds} rounds, errors summed"
    header = (
        f"Submission throughput, {date}: nproc {nproc()}, {args.connections} connections, "
        f"{args.duration} s per run ({rounds}), wrk -t{WRK_THREADS}"
    )
    cpu = median_cpu(runs)
    table = render(combined, cpu, header)
    print(table)

    found = anomalies(combined)
    warn(found)
    # at info the deployed processes log by design: only their warnings and errors are worth a look
    report_stderr({t: path for t, path in log_paths.items() if t != "deployed"})
    report_logged_problems({"deployed": log_paths["deployed"]})
    payload: dict[str, Any] = {
        "date": date,
        "nproc": nproc(),
        "connections": args.connections,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "warmup_s": WARMUP_S,
        "table": table,
        "headline": [asdict(f) for f in headline(combined, cpu, args.connections)],
        "anomalies": found,
        "combined": {t: asdict(r) for t, r in combined.items()},
        "runs": [asdict(run) for run in runs],
    }
    save_results("submit", payload, args.write_readme, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
