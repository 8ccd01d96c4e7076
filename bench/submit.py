"""Submission throughput: jobwire against a bare aiohttp ceiling and a naive INSERT + enqueue_job.

    python -m bench.submit [--duration S] [--connections C] [--rounds N] [--write-readme]

Each target is one server process, loaded by wrk with POST /v1/jobs. The machine is shared and
noisy, so absolute numbers mean little: the table reports each target against the two baselines
measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import asyncpg
from redis.asyncio import Redis

from bench.baselines import NAIVE_QUEUE, NAIVE_TABLE_DDL
from common.keys import Keys
from common.redis_client import delete_namespace

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# both may be pointed elsewhere (`python -m bench --results DIR --readme FILE` does, for every benchmark)
RESULTS = Path(os.environ.get("JOBWIRE_BENCH_RESULTS") or BENCH / "results")
LUA_SCRIPT = BENCH / "post_job.lua"
README = Path(os.environ.get("JOBWIRE_BENCH_README") or ROOT / "README.md")

DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/jobwire_bench"
REDIS_URL = "redis://127.0.0.1:6379/0"
NAMESPACE = "bench"
TARGETS = ("ceiling", "naive", "jobwire")
WARMUP_S = 3
WRK_THREADS = 2
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
# the targets for submission
NAIVE_TARGET = 3.0  # jobwire's req/s, as a multiple of naive's
CEILING_TARGET = 0.40  # jobwire's req/s, as a share of the ceiling's
LATENCY_CONNECTIONS = 64  # jobwire's p99 <= naive's p50, at this many connections

ENV = {
    "JOBWIRE_DATABASE_URL": DATABASE_URL,
    "JOBWIRE_REDIS_URL": REDIS_URL,
    "JOBWIRE_NAMESPACE": NAMESPACE,
    "JOBWIRE_SECRET_KEY": "bench-secret-key-of-32-characters-or-more",
    "JOBWIRE_ACCESS_LOG": "false",
    "JOBWIRE_LOG_LEVEL": "warning",
    # one key drives the whole load: the per-key rate limit would be what gets measured
    "JOBWIRE_RATE_LIMIT_PER_S": "0",
    "JOBWIRE_MAX_STREAMS_PER_KEY": "1000000",
}


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    statuses: dict[int, int] = field(default_factory=dict)


@dataclass
class Figure:
    """One of the issue's figures as `python -m bench` shows it, jobwire beside a named baseline. Each
    benchmark writes its own under "headline" in its results JSON, judged as its own table judges."""

    figure: str
    jobwire: str
    baseline: str
    ratio: str
    target: str
    met: bool | None  # None: not judged at the sizes run (see `why`)
    why: str = ""


@dataclass
class Run:
    target: str
    round: int
    result: WrkResult


def note(message: str) -> None:
    """Progress goes to stderr, so stdout carries only the table."""
    print(message, file=sys.stderr, flush=True)


# ---- setup and reset -------------------------------------------------------------------------


def jobwire_command() -> str:
    # next to this interpreter first, so `.venv/bin/python -m bench.submit` works unactivated
    beside = Path(sys.executable).with_name("jobwire")
    found = str(beside) if beside.exists() else shutil.which("jobwire")
    if found is None:
        raise SystemExit("the `jobwire` command was not found: activate the venv (. .venv/bin/activate)")
    return found


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **ENV, **(extra or {})}


def migrate_and_key(env: dict[str, str], tenant: str) -> str:
    """`jobwire migrate`, then a fresh API key for `tenant` (the last line `keys create` prints)."""
    jobwire = jobwire_command()
    subprocess.run([jobwire, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    created = subprocess.run(
        [jobwire, "keys", "create", "--tenant", tenant],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return created.stdout.strip().splitlines()[-1]


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(target: str, port: int, stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    if target == "jobwire":
        command = [jobwire_command(), "api", "--port", str(port)]
    else:
        command = [
            sys.executable,
            str(BENCH / "baselines.py"),
            target,
            "--port",
            str(port),
            "--database-url",
            DATABASE_URL,
        ]
    return subprocess.Popen(command, env=server_env(), stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT)


def wait_until_answering(target: str, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{target} server exited with code {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer, 404 included, means it is serving
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{target} server did not answer HTTP on port {port} within {READY_TIMEOUT_S:.0f} s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---- wrk -------------------------------------------------------------------------------------


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed; install it with: apt-get install wrk")
    return wrk


def run_wrk(wrk: str, port: int, connections: int, duration: int, key: str) -> WrkResult:
    command = [
        wrk,
        f"-t{WRK_THREADS}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        f"http://127.0.0.1:{port}/v1/jobs",
    ]
    done = subprocess.run(
        command, env={**os.environ, "JOBWIRE_BENCH_KEY": key}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise SystemExit(f"could not find {pattern!r} in wrk's output:\n{output}")
        return match

    rps = float(find(r"^Requests/sec:\s+([\d.]+)").group(1))
    p50 = find(r"^\s+50%\s+([\d.]+)(us|ms|s|m|h)\s*$")
    p99 = find(r"^\s+99%\s+([\d.]+)(us|ms|s|m|h)\s*$")
    socket_errors = 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors:
        socket_errors = sum(int(n) for n in errors.groups())
    # the script's own count includes 1xx and 3xx; wrk's "Non-2xx or 3xx" line counts only >= 400
    own = re.search(r"^bench-non2xx: (\d+)", output, re.MULTILINE)
    wrks = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    non_2xx = max(int(own.group(1)) if own else 0, int(wrks.group(1)) if wrks else 0)
    statuses = {int(s): int(n) for s, n in re.findall(r"^bench-status: (\d+) (\d+)", output, re.MULTILINE)}
    return WrkResult(rps, _ms(*p50.groups()), _ms(*p99.groups()), non_2xx, socket_errors, statuses)


# ---- one run ---------------------------------------------------------------------------------


def measure(
    target: str, wrk: str, key: str, connections: int, duration: int, log: IO[bytes], log_path: Path
) -> WrkResult:
    asyncio.run(reset_state())
    port = free_port()
    proc = start_server(target, port, log)
    try:
        wait_until_answering(target, proc, port, log_path)
        # warm-up fills the connection pools and caches; its numbers are thrown away
        run_wrk(wrk, port, connections, WARMUP_S, key)
        asyncio.run(reset_state())
        return run_wrk(wrk, port, connections, duration, key)
    finally:
        stop_server(proc)


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


def render(combined: dict[str, WrkResult], header: str) -> str:
    naive = combined["naive"].requests_per_s
    ceiling = combined["ceiling"].requests_per_s
    lines = [
        header,
        "",
        "| target | req/s | p50 ms | p99 ms | non-2xx | vs naive | vs ceiling |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for target in TARGETS:
        r = combined[target]
        lines.append(
            f"| {target} | {r.requests_per_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {errors_cell(r)} "
            f"| {r.requests_per_s / naive:.2f}x | {r.requests_per_s / ceiling:.2f}x |"
        )
    return "\n".join(lines)


def headline(combined: dict[str, WrkResult], connections: int) -> list[Figure]:
    jw, naive, ceiling = combined["jobwire"], combined["naive"], combined["ceiling"]
    vs_naive = jw.requests_per_s / naive.requests_per_s
    vs_ceiling = jw.requests_per_s / ceiling.requests_per_s
    missed = [
        name
        for name, ok in (("vs naive", vs_naive >= NAIVE_TARGET), ("vs ceiling", vs_ceiling >= CEILING_TARGET))
        if not ok
    ]
    latency_judged = connections == LATENCY_CONNECTIONS
    return [
        Figure(
            figure="submission throughput, `POST /v1/jobs` at full durability, one api process",
            jobwire=f"{jw.requests_per_s:,.0f} req/s",
            baseline=f"naive: {naive.requests_per_s:,.0f} req/s; "
            f"ceiling: {ceiling.requests_per_s:,.0f} req/s",
            ratio=f"{vs_naive:.2f}x naive; {vs_ceiling:.0%} of ceiling",
            target=f"≥ {NAIVE_TARGET:g}x naive and ≥ {CEILING_TARGET:.0%} of ceiling",
            met=not missed,
            why=", ".join(f"missed {m}" for m in missed),
        ),
        Figure(
            figure=f"submission latency, {connections} connections",
            jobwire=f"p99 {jw.p99_ms:.2f} ms",
            baseline=f"naive: p50 {naive.p50_ms:.2f} ms (p99 {naive.p99_ms:.2f} ms)",
            ratio=f"{jw.p99_ms / naive.p50_ms:.2f}x",
            target="jobwire p99 ≤ naive p50",
            met=jw.p99_ms <= naive.p50_ms if latency_judged else None,
            why="" if latency_judged else f"the target is at {LATENCY_CONNECTIONS} connections",
        ),
    ]


def anomalies(combined: dict[str, WrkResult]) -> list[str]:
    """Errors a correct server does not answer with: non-2xx answers and socket errors."""
    return [
        f"{target}: non-2xx {errors_cell(r)}"
        for target, r in combined.items()
        if r.non_2xx or r.socket_errors
    ]


def write_readme(table: str, section: str = "submit", readme: Path | None = None) -> None:
    """Put `table` between the `<!-- bench:<section>:start/end -->` markers of `readme` (README)."""
    readme = readme or README
    start_marker, end_marker = f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->"
    text = readme.read_text() if readme.exists() else ""
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        note(f"warning: {readme} has no {start_marker} ... {end_marker} markers; README left as it is")
        return
    before = text[: start + len(start_marker)]
    readme.write_text(f"{before}\n{table}\n{text[end:]}")
    note(f"updated the table in {readme}")


def report_stderr(log_paths: dict[str, Path]) -> None:
    for target, path in log_paths.items():
        lines = path.read_text(errors="replace").splitlines()
        if lines:
            note(f"warning: {target} wrote {len(lines)} lines to stderr ({path}); the last ones:")
            for line in lines[-5:]:
                note(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.submit", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds of ceiling, naive, jobwire interleaved; the median is reported",
    )
    parser.add_argument(
        "--write-readme",
        action="store_true",
        help="put the table between the bench:submit markers in README.md",
    )
    args = parser.parse_args(argv)

    wrk = require_wrk()
    RESULTS.mkdir(parents=True, exist_ok=True)
    note("preparing database jobwire_bench and an API key")
    key = prepare()

    log_paths = {target: RESULTS / f"{target}.stderr.log" for target in TARGETS}
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
                result = measure(
                    target, wrk, key, args.connections, args.duration, logs[target], log_paths[target]
                )
                runs.append(Run(target, round_no, result))
    finally:
        for handle in logs.values():
            handle.close()
    # leave no queued bench jobs behind for a worker of namespace `bench` to pick up; after a failure
    # the next run's reset does it instead
    asyncio.run(reset_state())

    nproc = len(os.sched_getaffinity(0))  # what `nproc` prints: the CPUs this process may use
    combined = {t: combine([run.result for run in runs if run.target == t]) for t in TARGETS}
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    rounds = "1 round" if args.rounds == 1 else f"median of {args.rounds} rounds, errors summed"
    header = (
        f"Submission throughput, {date}: nproc {nproc}, {args.connections} connections, "
        f"{args.duration} s per run ({rounds}), wrk -t{WRK_THREADS}"
    )
    table = render(combined, header)
    print(table)

    found = anomalies(combined)
    for line in found:
        note(f"warning: {line}")
    report_stderr(log_paths)
    payload: dict[str, Any] = {
        "date": date,
        "nproc": nproc,
        "connections": args.connections,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "warmup_s": WARMUP_S,
        "table": table,
        "headline": [asdict(f) for f in headline(combined, args.connections)],
        "anomalies": found,
        "combined": {t: asdict(r) for t, r in combined.items()},
        "runs": [asdict(run) for run in runs],
    }
    (RESULTS / "submit.json").write_text(json.dumps(payload, indent=2) + "\n")
    if args.write_readme:
        write_readme(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
