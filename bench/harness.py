"""What every benchmark shares: where things are, the servers' environment, the processes a run
starts, ports, percentiles, the results JSON and the README tables.

A benchmark imports from here, never from another benchmark, so each one can be read (and changed)
on its own. The helper processes a benchmark starts (bench/relay.py, bench/receiver.py, …) run as
scripts of their own and import nothing from bench.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# both may be pointed elsewhere (`python -m bench --results DIR --readme FILE` does, for every benchmark)
RESULTS = Path(os.environ.get("JOBWIRE_BENCH_RESULTS") or BENCH / "results")
README = Path(os.environ.get("JOBWIRE_BENCH_README") or ROOT / "README.md")

DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/jobwire_bench"


def own_database(name: str) -> str:
    """The URL of a database of the benchmark `name`'s own, beside DATABASE_URL: it empties it as it
    likes, while other benchmarks may run on theirs."""
    return DATABASE_URL.rpartition("/")[0] + f"/jobwire_bench_{name}"


REDIS_URL = "redis://127.0.0.1:6379/0"
READY_TIMEOUT_S = 30.0
WRK_THREADS = 2
STOP_TIMEOUT_S = 15.0

# every server a benchmark starts gets these; a benchmark with a database or namespace of its own
# overrides them through server_env's `extra`
ENV = {
    "JOBWIRE_DATABASE_URL": DATABASE_URL,
    "JOBWIRE_REDIS_URL": REDIS_URL,
    "JOBWIRE_NAMESPACE": "bench",
    "JOBWIRE_SECRET_KEY": "bench-secret-key-of-32-characters-or-more",
    "JOBWIRE_ACCESS_LOG": "false",
    "JOBWIRE_LOG_LEVEL": "warning",
    # one key drives the whole load: the per-key rate limit would be what gets measured
    "JOBWIRE_RATE_LIMIT_PER_S": "0",
    "JOBWIRE_MAX_STREAMS_PER_KEY": "1000000",
}


# what JOBWIRE_LOG_LEVEL and JOBWIRE_ACCESS_LOG default to (jobwire/config.py), for a benchmark's
# "as deployed" figures; a server's stderr is a file, so the format is json, as under a process manager
DEFAULT_LOGGING = {"JOBWIRE_LOG_LEVEL": "info", "JOBWIRE_ACCESS_LOG": "true", "JOBWIRE_LOG_FORMAT": "json"}
LOGGING_TARGET = 0.10  # logging at the defaults costs at most this share of the logs-off figure


def logged_problems(path: Path) -> list[str]:
    """The lines of a log written at info that are worth a look: warnings, errors, and anything that
    is not one of jobwire's JSON lines (a traceback)."""
    return [
        line
        for line in path.read_text(errors="replace").splitlines()
        if '"level":"warning"' in line or '"level":"error"' in line or not line.startswith("{")
    ]


def report_logged_problems(log_paths: dict[str, Path]) -> None:
    for target, path in log_paths.items():
        found = logged_problems(path)
        if found:
            note(f"warning: {target} logged {len(found)} lines above info ({path}); the last ones:")
            for line in found[-5:]:
                note(f"  {line}")


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


def note(message: str) -> None:
    """Progress goes to stderr, so stdout carries only the table."""
    print(message, file=sys.stderr, flush=True)


# ---- the servers' environment ----------------------------------------------------------------


def jobwire_command() -> str:
    # next to this interpreter first, so `.venv/bin/python -m bench.submit` works unactivated
    beside = Path(sys.executable).with_name("jobwire")
    found = str(beside) if beside.exists() else shutil.which("jobwire")
    if found is None:
        raise SystemExit("the `jobwire` command was not found: activate the venv (. .venv/bin/activate)")
    return found


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **ENV, **(extra or {})}


def bench_jobs_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """server_env for an api or worker that runs the job types of bench/jobtypes.py."""
    # the `jobwire` console script puts its own directory on sys.path, not the working directory:
    # without PYTHONPATH the api and the worker cannot import bench.jobtypes
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return server_env({"JOBWIRE_JOB_MODULES": '["bench.jobtypes"]', "PYTHONPATH": path, **(extra or {})})


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


# ---- processes and ports ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


class Procs:
    """Every process a benchmark starts, so that `finally` can stop them all. Each one's stderr goes
    to <results>/<prefix>-<name>.stderr.log, emptied when this run first starts that name."""

    def __init__(self, prefix: str, env: Callable[[], dict[str, str]], stdin: int | None = None) -> None:
        self.prefix = prefix
        self.env = env
        self.stdin = stdin  # None: the children share this process's stdin
        self.running: list[subprocess.Popen[bytes]] = []
        self.logs: dict[str, Path] = {}
        self._names: dict[int, str] = {}

    def start(
        self,
        name: str,
        command: list[str],
        env: dict[str, str] | None = None,
        stdout: int = subprocess.DEVNULL,
        stdin: int | None = None,
    ) -> subprocess.Popen[bytes]:
        path = RESULTS / f"{self.prefix}-{name}.stderr.log"
        if name not in self.logs:
            self.logs[name] = path
            path.write_bytes(b"")  # this run's lines only
        with path.open("ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                command,
                env=env or self.env(),
                stdin=self.stdin if stdin is None else stdin,
                stdout=stdout,
                stderr=log,
                cwd=ROOT,
            )
        self.running.append(proc)
        self._names[proc.pid] = name
        return proc

    def by_name(self) -> dict[str, subprocess.Popen[bytes]]:
        """The running processes by name, in the order they started (the last one of a name)."""
        return {self._names[proc.pid]: proc for proc in self.running}

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        stop_server(proc)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


# ---- wrk: HTTP load ------------------------------------------------------------------------------


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed; install it with: apt-get install wrk")
    return wrk


# wrk's script for POST /v1/jobs (and the peers' endpoints), and the bodies it sends: a short demo
# job, left queued by the api-alone targets, and a no-op job, which the workers beside run
POST_SCRIPT = BENCH / "post.lua"
DEMO_BODY = '{"type":"demo.sleep","params":{"seconds":0.01}}'
NOOP_BODY = '{"type":"bench.noop","params":{}}'


def post_env(key: str, body: str) -> dict[str, str]:
    """POST_SCRIPT's environment: the API key and the body of every request."""
    return {"JOBWIRE_BENCH_KEY": key, "JOBWIRE_BENCH_BODY": body}


def run_wrk(
    wrk: str, url: str, connections: int, duration: int, script: Path, env: dict[str, str] | None = None
) -> WrkResult:
    """wrk with WRK_THREADS threads and `script` (a Lua script, e.g. POST_SCRIPT) against `url`."""
    command = [
        wrk,
        f"-t{WRK_THREADS}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(
        command, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
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


@dataclass
class WrkResult:
    """What one wrk run measured."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    statuses: dict[int, int] = field(default_factory=dict)


# ---- what a process and the machine use ------------------------------------------------------


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def load_1m() -> float:
    return os.getloadavg()[0]


def nproc() -> int:
    """What `nproc` prints: the CPUs this process may use."""
    return len(os.sched_getaffinity(0))


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


# ---- numbers ---------------------------------------------------------------------------------


def percentile(sorted_values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return float("nan")
    rank = (len(sorted_values) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def fmt_ms(value: float) -> str:
    return f"{value:,.1f} ms" if value >= 100 else f"{value:.2f} ms"


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


# ---- arguments, results and the README ------------------------------------------------------------------


def arguments(name: str, doc: str) -> argparse.ArgumentParser:
    """The parser of `python -m bench.<name>`; its own options, then `parse(parser, name, argv)`."""
    return argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc.splitlines()[0])


def parse(parser: argparse.ArgumentParser, name: str, argv: list[str] | None) -> argparse.Namespace:
    """Every benchmark's last option, --write-readme (what `python -m bench --write-readme` passes)."""
    parser.add_argument(
        "--write-readme",
        action="store_true",
        help=f"put the table between the bench:{name} markers in README.md",
    )
    return parser.parse_args(argv)


def warn(found: Iterable[str]) -> None:
    for line in found:
        note(f"warning: {line}")


def report_stderr(log_paths: dict[str, Path]) -> None:
    for target, path in log_paths.items():
        lines = path.read_text(errors="replace").splitlines()
        if lines:
            note(f"warning: {target} wrote {len(lines)} lines to stderr ({path}); the last ones:")
            for line in lines[-5:]:
                note(f"  {line}")


def save_results(
    name: str,
    payload: dict[str, Any],
    write_readme_table: bool,
    indent: int = 1,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Write <results>/<name>.json (what `python -m bench` reads); with `write_readme_table`, put its
    table between the README's bench:<name> markers."""
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=indent, default=default) + "\n")
    if write_readme_table:
        write_readme(payload["table"], name)


def write_readme(table: str, section: str, readme: Path | None = None) -> None:
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
