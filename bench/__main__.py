"""Every benchmark in one command, and one table of the issue's figures: jobwire beside each baseline.

    python -m bench [--quick] [--only submit,stream,lifecycle,webhooks,time,peers,batches,labels,retention]
                    [--write-readme] [--results DIR] [--readme FILE]

Runs bench.submit, bench.stream, bench.lifecycle, bench.webhooks, bench.time, bench.peers and
bench.batches one after the other, each in its own process with its own default sizes (--quick:
small ones, a smoke run of a few minutes), then prints one table built from the "headline" each
writes to its results JSON, judged there as its own table judges. The memory figure comes from the
last `python -m bench.soak` (ten minutes, so only run with --only soak). Progress and each
benchmark's own table go to stderr; stdout carries only the combined table. The exit code is
non-zero when a benchmark crashed or its own checks found anomalies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncpg
from redis import Redis

from bench.harness import (
    DATABASE_URL,
    README,
    REDIS_URL,
    RESULTS,
    ROOT,
    Figure,
    note,
    nproc,
    today,
    verdict,
    write_readme,
)


@dataclass(frozen=True)
class Bench:
    name: str  # bench.<name>, and <name>.json in the results directory
    section: str  # the README section with its detailed table
    quick: tuple[str, ...]  # its arguments for --quick
    full: tuple[str, ...] = ()  # its arguments otherwise (beyond its own defaults)


BENCHES = {
    b.name: b
    for b in (
        # three rounds: one wrk run is at the mercy of whatever else the machine does for 10 s
        Bench("submit", "Submission", ("--duration", "3", "--rounds", "1"), ("--rounds", "3")),
        Bench("stream", "Live events", ("--quick",)),
        Bench(
            "lifecycle",
            "Job lifecycle",
            ("--jobs", "2000", "--concurrency", "50", "--rounds", "1", "--latency-jobs", "30"),
        ),
        # installs the peers (Celery, procrastinate, SAQ; BullMQ with Node) outside the project first;
        # runs before webhooks and time, so that a short session still gets the peers
        Bench(
            "peers",
            "Peers",
            ("--jobs", "1000", "--duration", "3", "--rounds", "1", "--latency-jobs", "30"),
        ),
        Bench(
            "webhooks", "Webhook delivery", ("--deliveries", "2000", "--rounds", "1", "--latency-jobs", "50")
        ),
        Bench("time", "Time", ("--quick",)),
        Bench("batches", "Batches", ("--rounds", "1", "--reads", "50")),
        # fills a database of its own with 1,000,000 jobs: run only when asked for
        Bench("labels", "Labels", ("--quick",)),
        # ten minutes by default: run only when asked for; its memory figure is read from its last JSON
        Bench("soak", "Reliability", ("--minutes", "2")),
        # a pass over 1,000,000 finished jobs and a ten-minute soak: run only when asked for
        Bench("retention", "Retention", ("--quick",)),
    )
}
DEFAULT = ("submit", "stream", "lifecycle", "webhooks", "time", "peers", "batches")
# the order; the soak's row last
TABLE_ORDER = ("submit", "lifecycle", "peers", "stream", "webhooks", "time", "batches", "labels", "retention")
MEMORY_FIGURE = "memory of api, worker, dispatcher after 10 minutes at 80 % capacity"
STOP_WAIT_S = 60.0  # after Ctrl-C, for a benchmark to stop its own servers


@dataclass
class Outcome:
    bench: Bench
    returncode: int
    elapsed_s: float
    payload: dict[str, Any] | None  # the results JSON this run wrote, if it wrote one
    problem: str | None  # why it counts as failed


# ---- running ---------------------------------------------------------------------------------


def run_bench(bench: Bench, quick: bool, write: bool, env: dict[str, str], results: Path) -> Outcome:
    command = [sys.executable, "-m", f"bench.{bench.name}", *(bench.quick if quick else bench.full)]
    if write:
        command.append("--write-readme")
    note(f"==> {' '.join(command[1:])}")
    path = results / f"{bench.name}.json"
    started = time.time()
    sys.stderr.flush()
    # its table goes to stderr with its progress: stdout is for the combined table
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sys.stderr)
    try:
        returncode = proc.wait()
    except KeyboardInterrupt:
        # the terminal's SIGINT reached the benchmark too: give it time to stop its servers
        try:
            proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    elapsed = time.time() - started

    payload: dict[str, Any] | None = None
    if path.exists() and path.stat().st_mtime >= started - 1:
        try:
            payload = json.loads(path.read_text())
        except ValueError as exc:
            note(f"warning: {path} is not JSON: {exc}")
    problem: str | None = None
    if payload is None:
        problem = f"crashed (exit code {returncode}) without writing {path.name}"
    elif payload.get("anomalies"):
        found: list[str] = payload["anomalies"]
        problem = f"its checks found {len(found)} anomalies: " + "; ".join(found[:3])
        if len(found) > 3:
            problem += f"; … (all in {path})"
    elif returncode != 0:
        problem = f"exit code {returncode}"
    note(f"<== bench.{bench.name}: {'FAILED, ' + problem if problem else 'ok'} ({elapsed:.0f} s)")
    return Outcome(bench, returncode, elapsed, payload, problem)


# ---- the combined table ----------------------------------------------------------------------


def figures_of(bench: Bench, outcome: Outcome | None) -> list[Figure]:
    """Its figures as it wrote them, or one row saying why there are none."""
    if outcome is None:
        return [Figure(bench.section, f"not run: python -m bench.{bench.name}", "", "", "", None)]
    if outcome.payload is None or "headline" not in outcome.payload:
        return [Figure(bench.section, "**failed** (below)", "", "", "", None)]
    return [Figure(**f) for f in outcome.payload["headline"]]


def memory_figure(results: Path) -> Figure:
    """From the last bench.soak results JSON: its own `flat` verdict per process."""
    path = results / "soak.json"
    if not path.exists():
        return Figure(MEMORY_FIGURE, "not run: python -m bench.soak", "", "", "flat", None)
    try:
        soak: dict[str, Any] = json.loads(path.read_text())
        memory: list[dict[str, Any]] = soak["memory"]
        cell = "; ".join(f"{m['name']} {m['start_mb']:.1f} → {m['end_mb']:.1f} MB" for m in memory)
        limits = " / ".join(f"{m['threshold_mb']:.1f}" for m in memory)
        flats: list[bool | None] = [m["flat"] for m in memory]
        when = f"bench.soak of {soak['date']}, {soak['minutes']:g} min"
    except (KeyError, TypeError, ValueError) as exc:
        return Figure(MEMORY_FIGURE, f"{path} unreadable: {exc!r}", "", "", "flat", None)
    met = False if False in flats else None if None in flats else True
    if soak.get("anomalies"):
        when += f"; its checks found {len(soak['anomalies'])} anomalies"
    return Figure(MEMORY_FIGURE, cell, "", "", f"flat: growth < {limits} MB", met, when)


def met_cell(f: Figure) -> str:
    if f.met is None:
        return f"not judged ({f.why})" if f.why else ""
    return verdict(f.met) + (f" ({f.why})" if f.why else "")


def machine() -> str:
    cpu = "unknown CPU"
    mem = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    return (
        f"nproc {nproc()}, {cpu}, {mem} RAM, Linux {platform.release()}, Python {platform.python_version()}, "
        f"PostgreSQL {postgres_version()}, Redis {redis_version()}"
    )


def postgres_version() -> str:
    async def ask() -> str:
        # the server's own database: the benchmarks' may not exist yet
        conn = await asyncpg.connect(DATABASE_URL.rpartition("/")[0] + "/postgres", timeout=5)
        try:
            version: str = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
        return version.split()[0]

    try:
        return asyncio.run(ask())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"unknown ({exc})"


def redis_version() -> str:
    redis = Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        info = cast(dict[str, Any], redis.info("server"))  # the sync client's, typed for both
        return str(info["redis_version"])
    except Exception as exc:  # a version is not worth failing the report for
        return f"unknown ({exc})"
    finally:
        redis.close()


def git_commit() -> str:
    """HEAD's commit, read from .git's files rather than by running git (it may be committing)."""
    git = ROOT / ".git"
    try:
        if git.is_file():  # a worktree: `gitdir: <path>`
            git = (ROOT / git.read_text().partition(":")[2].strip()).resolve()
        common = git / (git / "commondir").read_text().strip() if (git / "commondir").exists() else git
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:7]  # detached
        ref = head.removeprefix("ref: ")
        for base in (git, common):
            if (base / ref).exists():
                return (base / ref).read_text().strip()[:7]
        for line in (common / "packed-refs").read_text().splitlines():
            if line.endswith(f" {ref}"):
                return line.split()[0][:7]
    except OSError:
        pass
    return "unknown"


def render(figures: list[Figure], quick: bool, failed: list[Outcome], date: str) -> str:
    header = f"jobwire beside its baselines, {date}"
    if quick:
        header += " (--quick: smoke-run sizes, not the issue's; not for the README)"
    lines = [
        header,
        "",
        "| figure | jobwire | baseline | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {f.figure} | {f.jobwire} | {f.baseline} | {f.ratio} | {f.target} | {met_cell(f)} |"
        for f in figures
    ]
    sections = ", ".join(BENCHES[name].section for name in TABLE_ORDER)
    lines += [
        "",
        f"Machine: {machine()}; every server, worker, baseline and load generator on it, shared. "
        f"Commit {git_commit()}, run {date} (UTC) with `python -m bench{' --quick' if quick else ''}`.",
        "",
        f"How each figure is measured, and the figures around it: the {sections} sections below, and "
        "Reliability for the memory soak; `python -m bench.<name>` runs one alone, and bench/results/ "
        "keeps the raw JSON.",
    ]
    if failed:
        lines.append("")
        lines += [f"**Failed**: bench.{o.bench.name}: {o.problem}" for o in failed]
    return "\n".join(lines)


# ---- main ------------------------------------------------------------------------------------


def parse_only(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(BENCHES)} (got {value!r})")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a few minutes")
    parser.add_argument(
        "--only",
        type=parse_only,
        default=list(DEFAULT),
        help=f"comma-separated, of {', '.join(BENCHES)} (default: {','.join(DEFAULT)})",
    )
    parser.add_argument(
        "--write-readme",
        action="store_true",
        help="put the combined table between the bench:summary markers, and each benchmark's own table "
        "in its section",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help=f"results directory (default {RESULTS})"
    )
    parser.add_argument("--readme", type=Path, default=README, help=f"the README to write (default {README})")
    args = parser.parse_args(argv)
    results: Path = args.results.resolve()
    readme: Path = args.readme.resolve()
    if args.quick and args.write_readme and readme == README.resolve():
        parser.error(
            "--quick figures do not belong in the README: leave out --write-readme, or give --readme"
        )

    env = {
        **os.environ,
        "JOBWIRE_BENCH_RESULTS": str(results),
        "JOBWIRE_BENCH_README": str(readme),
        # lifecycle records the commit with `git status`: no index lock, in case a commit is under way
        "GIT_OPTIONAL_LOCKS": "0",
    }
    t0 = time.monotonic()
    outcomes: dict[str, Outcome] = {}
    for name in (n for n in BENCHES if n in args.only):  # in BENCHES's order, whatever --only's
        outcomes[name] = run_bench(BENCHES[name], args.quick, args.write_readme, env, results)
    note(f"all done in {time.monotonic() - t0:.0f} s")

    figures = [f for name in TABLE_ORDER for f in figures_of(BENCHES[name], outcomes.get(name))]
    figures.append(memory_figure(results))
    failed = [o for o in outcomes.values() if o.problem]
    date = today()
    table = render(figures, args.quick, failed, date)
    print(table)

    for o in failed:
        note(f"FAILED: bench.{o.bench.name}: {o.problem}")
    if args.write_readme:
        if failed:
            note(f"the summary in {readme} is left as it is: {len(failed)} benchmark(s) failed")
        else:
            write_readme(table, "summary", readme)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
