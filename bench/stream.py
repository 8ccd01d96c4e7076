"""Live events: jobwire's progress-to-SSE latency and how many streams one api process holds, against a
bare Redis pub/sub to SSE relay (bench/relay.py) measured in the same run.

    python -m bench.stream [--quick] [--subscribers N] [--streams K] [--write-readme]

1. Latency from `ctx.progress()` in a worker to the event's arrival at an SSE client (p50, p99), with
   1 subscriber and with N subscribers on one job. The relay's publisher sends `{"t": send time}` on
   a channel that its one pub/sub subscriber fans out; jobwire's job sends the time in the progress
   message, through the UPDATE, the event INSERT, the PUBLISH and the api's hub.
2. K streams held by one server process: its RSS before and after (KB per stream), its CPU while the
   streams sit idle, and the time from one event's send time to its arrival at every stream.

The clients run in separate processes (bench/sse_clients.py), never in a server's event loop. Every
stream is open before the first tick is sent: jobwire's job waits on a Redis list (`go_key`) that is
pushed only once all clients have their response headers; the relay's publisher starts only then.
The machine is shared and noisy, so the table reports jobwire next to the relay run minutes apart.
"""

from __future__ import annotations

import asyncio
import json
import queue
import resource
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from bench.harness import (
    BENCH,
    DATABASE_URL,
    REDIS_URL,
    RESULTS,
    Figure,
    Procs,
    arguments,
    bench_jobs_env,
    cpu_seconds,
    fmt_ms,
    free_port,
    jobwire_command,
    migrate_and_key,
    note,
    nproc,
    parse,
    percentile,
    report_stderr,
    rss_kb,
    save_results,
    today,
    verdict,
    wait_until_answering,
    warn,
)
from jobwire.keys import Keys
from jobwire.redis_client import delete_namespace

NAMESPACE = "bench-stream"
TENANT = "bench-stream"
RELAY_CHANNEL = f"{NAMESPACE}:relay"
TARGETS = ("jobwire", "relay")
WORKER_CONCURRENCY = 4
# one client process holds at most this many streams; more are spread over more processes
CLIENTS_PER_PROCESS = 2500
# connects in flight over all client processes: aiohttp's listen backlog is 128
CONNECTS_IN_FLIGHT = 96
# fds a server needs besides its streams (listening socket, pools, logs, the interpreter's own)
FD_MARGIN = 256
SETTLE_S = 1.0
IDLE_CPU_WINDOW_S = 3.0
READY_TIMEOUT_S = 180.0
STREAMS_GOAL = 10_000
SUBSCRIBERS_GOAL = 1000  # the fan-out target's subscribers on one job
# the other targets
P99_TARGET_MS = 10.0  # jobwire's p99 with 1 subscriber
FANOUT_TARGET = 1.5  # jobwire's latency with N subscribers, as a multiple of the relay's
KB_TARGET = 40.0  # per stream held
DELIVER_ALL_TARGET_MS = 500.0  # one event to every stream held


@dataclass(frozen=True)
class Plan:
    single_ticks: int
    single_every_s: float
    subscribers: int
    many_ticks: int
    many_every_s: float
    streams: int
    hold_ticks: int
    hold_every_s: float
    warmup_ticks: int = 3


DEFAULT_PLAN = Plan(
    single_ticks=30,
    single_every_s=0.3,
    subscribers=1000,
    many_ticks=20,
    many_every_s=0.5,
    streams=10_000,
    hold_ticks=5,
    hold_every_s=2.5,
)
QUICK_PLAN = Plan(
    single_ticks=10,
    single_every_s=0.3,
    subscribers=100,
    many_ticks=6,
    many_every_s=0.5,
    streams=1000,
    hold_ticks=3,
    hold_every_s=2.0,
)


@dataclass
class Clients:
    """What the client processes of one run saw, merged."""

    connected: int = 0
    failed: int = 0
    finished: int = 0
    timed_out: int = 0
    errors: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    ticks: dict[int, list[float]] = field(default_factory=dict)
    replayed: int = 0
    non_monotonic: int = 0
    seq_gaps: int = 0
    decode_errors: int = 0
    connect_s: float = 0.0  # from starting the client processes to every client's headers

    def merge(self, part: dict[str, Any]) -> None:
        self.connected += part["connected"]
        self.failed += part["failed"]
        self.finished += part["finished"]
        self.timed_out += part["timed_out"]
        self.errors += part["errors"][: max(0, 5 - len(self.errors))]
        for status, n in part["statuses"].items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        for tick, latencies in part["ticks"].items():
            self.ticks.setdefault(int(tick), []).extend(latencies)
        for name in ("replayed", "non_monotonic", "seq_gaps", "decode_errors"):
            setattr(self, name, getattr(self, name) + part[name])

    def samples(self) -> list[float]:
        return sorted(lat for latencies in self.ticks.values() for lat in latencies)


@dataclass
class Latency:
    target: str
    subscribers: int
    ticks: int
    every_s: float
    connected: int
    samples: int
    expected_samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    finished: int
    statuses: dict[str, int]
    non_monotonic: int
    seq_gaps: int
    errors: list[str]
    latencies_ms: list[float]


@dataclass
class Hold:
    target: str
    requested: int
    connected: int
    connect_s: float
    rss_before_kb: int
    rss_held_kb: int
    rss_after_events_kb: int
    kb_per_stream: float
    idle_cpu_pct: float
    ticks: int
    every_s: float
    # per event: (streams it reached, max latency over them in ms)
    per_event: list[tuple[int, float]]
    deliver_all_ms: float
    finished: int
    statuses: dict[str, int]
    non_monotonic: int
    errors: list[str]


# ---- small helpers ---------------------------------------------------------------------------


def raise_fd_limit() -> int:
    """Raise the soft fd limit to the hard one; every process started afterwards inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def ephemeral_ports() -> int:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 28_000  # the Linux default range
    return high - low + 1


def idle_cpu_pct(pid: int, window_s: float) -> float:
    before, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(window_s)
    return 100 * (cpu_seconds(pid) - before) / (time.monotonic() - t0)


# ---- setup and cleanup -----------------------------------------------------------------------


def stream_env() -> dict[str, str]:
    return bench_jobs_env({"JOBWIRE_NAMESPACE": NAMESPACE})


def prepare() -> str:
    """Create the bench database and its schema; return a fresh API key for the bench tenant."""
    return migrate_and_key(stream_env(), TENANT)


async def clean_redis() -> None:
    redis = AsyncRedis.from_url(REDIS_URL)
    try:
        await delete_namespace(redis, Keys(NAMESPACE))
    finally:
        await redis.aclose()


async def _delete_jobs() -> None:
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        # job_events go with their jobs (ON DELETE CASCADE); other tenants' rows are not ours
        await conn.execute("DELETE FROM jobs WHERE tenant = $1", TENANT)
    finally:
        await conn.close()


def clean_state() -> None:
    asyncio.run(clean_redis())
    asyncio.run(_delete_jobs())


def go(go_key: str) -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        redis.rpush(go_key, "go")
    finally:
        redis.close()


def start_jobwire_api(procs: Procs) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = procs.start("api", [jobwire_command(), "api", "--port", str(port)])
    wait_until_answering("jobwire api", proc, port, procs.logs["api"])
    return proc, port


def start_relay(procs: Procs) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [
        sys.executable,
        str(BENCH / "relay.py"),
        "serve",
        "--port",
        str(port),
        "--redis-url",
        REDIS_URL,
        "--channel",
        RELAY_CHANNEL,
    ]
    proc = procs.start("relay", command)
    wait_until_answering("relay", proc, port, procs.logs["relay"])
    return proc, port


def start_publisher(procs: Procs, ticks: int, every_s: float) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        str(BENCH / "relay.py"),
        "publish",
        "--count",
        str(ticks),
        "--every-s",
        str(every_s),
        "--redis-url",
        REDIS_URL,
        "--channel",
        RELAY_CHANNEL,
    ]
    return procs.start("publisher", command)


def submit_ticks(port: int, key: str, ticks: int, every_s: float) -> tuple[str, str]:
    """Submit a bench.ticks job that waits for its go key; returns (job id, go key)."""
    go_key = f"{NAMESPACE}:go:{uuid.uuid4()}"
    body = {
        "type": "bench.ticks",
        "params": {"count": ticks, "every_s": every_s, "go_key": go_key, "redis_url": REDIS_URL},
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/jobs",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        job: dict[str, Any] = json.load(response)
    return str(job["id"]), go_key


class ClientProcs:
    """Client processes (bench/sse_clients.py) following one URL. A thread per process reads its
    stdout lines into a queue, so the ready line and the result can be waited for with deadlines."""

    def __init__(self, procs: Procs, url: str, n: int, kind: str, timeout_s: float, auth: str | None) -> None:
        count = -(-n // CLIENTS_PER_PROCESS)
        shares = [n // count + (1 if i < n % count else 0) for i in range(count)]
        env = stream_env()
        if auth is not None:
            env["BENCH_SSE_AUTHORIZATION"] = auth
        self.procs = procs
        self.started = time.monotonic()
        self.children: list[subprocess.Popen[bytes]] = []
        self.lines: list[queue.Queue[bytes | None]] = []
        for share in shares:
            command = [
                sys.executable,
                str(BENCH / "sse_clients.py"),
                "--url",
                url,
                "--n",
                str(share),
                "--kind",
                kind,
                "--timeout",
                str(timeout_s),
                "--connect-concurrency",
                str(max(8, CONNECTS_IN_FLIGHT // count)),
            ]
            child = procs.start("clients", command, env, stdout=subprocess.PIPE)
            lines: queue.Queue[bytes | None] = queue.Queue()
            threading.Thread(target=self._read, args=(child, lines), daemon=True).start()
            self.children.append(child)
            self.lines.append(lines)

    @staticmethod
    def _read(child: subprocess.Popen[bytes], lines: queue.Queue[bytes | None]) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.put(line)
        lines.put(None)

    def _next(self, index: int, tag: str, deadline: float) -> dict[str, Any]:
        while True:
            try:
                line = self.lines[index].get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise SystemExit(
                    f"SSE clients: no `{tag}` line in time; see {self.procs.logs['clients']}"
                ) from None
            if line is None:
                raise SystemExit(f"SSE clients exited without `{tag}`; see {self.procs.logs['clients']}")
            name, _, payload = line.decode().partition(" ")
            if name == tag:
                parsed: dict[str, Any] = json.loads(payload)
                return parsed

    def wait_ready(self) -> tuple[int, int, float]:
        """(connected, failed, seconds to connect them all)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        ready = [self._next(i, "ready", deadline) for i in range(len(self.children))]
        return (
            sum(r["connected"] for r in ready),
            sum(r["failed"] for r in ready),
            time.monotonic() - self.started,
        )

    def collect(self, timeout_s: float) -> Clients:
        deadline = time.monotonic() + timeout_s
        merged = Clients()
        for i in range(len(self.children)):
            merged.merge(self._next(i, "result", deadline))
        for child in self.children:
            child.wait(timeout=max(1.0, deadline - time.monotonic()))
            self.procs.stop(child)
        return merged


# ---- one run ---------------------------------------------------------------------------------


class Targets:
    """A running jobwire (api + worker) and relay, with what it takes to run ticks through each."""

    def __init__(self, procs: Procs, key: str) -> None:
        self.procs = procs
        self.key = key
        self.api: subprocess.Popen[bytes] | None = None
        self.api_port = 0
        self.relay: subprocess.Popen[bytes] | None = None
        self.relay_port = 0
        self.publisher: subprocess.Popen[bytes] | None = None

    def restart(self, target: str) -> subprocess.Popen[bytes]:
        """A fresh server process (a clean heap for the RSS figures)."""
        if target == "jobwire":
            if self.api is not None:
                self.procs.stop(self.api)
            self.api, self.api_port = start_jobwire_api(self.procs)
            return self.api
        if self.relay is not None:
            self.procs.stop(self.relay)
        self.relay, self.relay_port = start_relay(self.procs)
        return self.relay

    def server(self, target: str) -> subprocess.Popen[bytes]:
        proc = self.api if target == "jobwire" else self.relay
        assert proc is not None, f"{target} is not running"
        return proc

    def source(self, target: str, ticks: int, every_s: float) -> tuple[str, str | None, str | None]:
        """A tick source that is not ticking yet: (stream URL, Authorization, jobwire's go key)."""
        if target == "jobwire":
            job_id, go_key = submit_ticks(self.api_port, self.key, ticks, every_s)
            url = f"http://127.0.0.1:{self.api_port}/v1/jobs/{job_id}/events"
            return url, f"Bearer {self.key}", go_key
        return f"http://127.0.0.1:{self.relay_port}/events", None, None

    def open_streams(
        self, target: str, url: str, auth: str | None, n: int, ticks: int, every_s: float
    ) -> ClientProcs:
        # generous: the connects, the ticks, the terminal event, and a slow machine
        timeout_s = READY_TIMEOUT_S + ticks * every_s + 60
        return ClientProcs(self.procs, url, n, target, timeout_s, auth)

    def tick(self, target: str, go_key: str | None, ticks: int, every_s: float) -> None:
        if target == "jobwire":
            assert go_key is not None
            go(go_key)
        else:
            self.publisher = start_publisher(self.procs, ticks, every_s)

    def collect(self, clients: ClientProcs, ticks: int, every_s: float) -> Clients:
        result = clients.collect(timeout_s=ticks * every_s + 60)
        if self.publisher is not None:
            self.publisher.wait(timeout=10)
            self.procs.stop(self.publisher)
            self.publisher = None
        return result

    def latency(self, target: str, n: int, ticks: int, every_s: float) -> Latency:
        url, auth, go_key = self.source(target, ticks, every_s)
        clients = self.open_streams(target, url, auth, n, ticks, every_s)
        connected, failed, _ = clients.wait_ready()
        if failed:
            note(f"  {target}: {failed} of {n} streams failed to open")
        self.tick(target, go_key, ticks, every_s)
        seen = self.collect(clients, ticks, every_s)
        samples = seen.samples()
        return Latency(
            target=target,
            subscribers=n,
            ticks=ticks,
            every_s=every_s,
            connected=connected,
            samples=len(samples),
            expected_samples=connected * ticks,
            p50_ms=percentile(samples, 50),
            p99_ms=percentile(samples, 99),
            max_ms=samples[-1] if samples else float("nan"),
            finished=seen.finished,
            statuses=seen.statuses,
            non_monotonic=seen.non_monotonic,
            seq_gaps=seen.seq_gaps,
            errors=seen.errors,
            latencies_ms=samples,
        )

    def hold(self, target: str, k: int, ticks: int, every_s: float) -> Hold:
        server = self.restart(target)
        # jobwire's job is submitted before the first RSS reading: only the streams differ between
        # the two readings
        url, auth, go_key = self.source(target, ticks, every_s)
        rss_before = rss_kb(server.pid)
        clients = self.open_streams(target, url, auth, k, ticks, every_s)
        connected, failed, connect_s = clients.wait_ready()
        if failed:
            note(f"  {target}: {failed} of {k} streams failed to open")
        time.sleep(SETTLE_S)
        rss_held = rss_kb(server.pid)
        cpu = idle_cpu_pct(server.pid, IDLE_CPU_WINDOW_S)
        self.tick(target, go_key, ticks, every_s)
        seen = self.collect(clients, ticks, every_s)
        rss_after = rss_kb(server.pid)
        per_event = [(len(lat), max(lat)) for _, lat in sorted(seen.ticks.items()) if lat]
        return Hold(
            target=target,
            requested=k,
            connected=connected,
            connect_s=connect_s,
            rss_before_kb=rss_before,
            rss_held_kb=rss_held,
            rss_after_events_kb=rss_after,
            kb_per_stream=(rss_held - rss_before) / connected if connected else float("nan"),
            idle_cpu_pct=cpu,
            ticks=ticks,
            every_s=every_s,
            per_event=per_event,
            deliver_all_ms=statistics.median(m for _, m in per_event) if per_event else float("nan"),
            finished=seen.finished,
            statuses=seen.statuses,
            non_monotonic=seen.non_monotonic,
            errors=seen.errors,
        )


# ---- report ----------------------------------------------------------------------------------


@dataclass
class Goals:
    """The issue's targets, judged: what the table's `met` column shows."""

    p99_single: bool
    p50_many: bool
    p99_many: bool
    streams: bool | None  # None: fewer than STREAMS_GOAL streams were tried
    kb_per_stream: bool
    deliver_all: bool


def goals(single: dict[str, Latency], many: dict[str, Latency], hold: dict[str, Hold], k: int) -> Goals:
    mj, mr, hj = many["jobwire"], many["relay"], hold["jobwire"]
    return Goals(
        p99_single=single["jobwire"].p99_ms <= P99_TARGET_MS,
        p50_many=mj.p50_ms <= FANOUT_TARGET * mr.p50_ms,
        p99_many=mj.p99_ms <= FANOUT_TARGET * mr.p99_ms,
        # a smaller K (--quick, --streams, or this machine's limits) cannot meet it: not judged
        streams=hj.connected >= STREAMS_GOAL if k >= STREAMS_GOAL else None,
        kb_per_stream=hj.kb_per_stream <= KB_TARGET,
        deliver_all=hj.deliver_all_ms <= DELIVER_ALL_TARGET_MS,
    )


def headline(
    single: dict[str, Latency], many: dict[str, Latency], hold: dict[str, Hold], k: int
) -> list[Figure]:
    """The issue's figures for `python -m bench`, judged by `goals` as the table is."""
    g = goals(single, many, hold, k)
    jw, rl = single["jobwire"], single["relay"]
    mj, mr = many["jobwire"], many["relay"]
    hj, hr = hold["jobwire"], hold["relay"]
    n = mj.subscribers
    missed = [
        name
        for name, ok in (("streams", g.streams), ("KB", g.kb_per_stream), ("one event to all", g.deliver_all))
        if ok is False
    ]
    streams_why = ", ".join(f"missed {m}" for m in missed)
    if not missed and g.streams is None:
        streams_why = f"{k:,} streams tried, the target is {STREAMS_GOAL:,}"
    ratios = [f"time {hj.deliver_all_ms / hr.deliver_all_ms:.2f}x"]
    if hr.kb_per_stream > 0:
        ratios.insert(0, f"KB {hj.kb_per_stream / hr.kb_per_stream:.2f}x")
    return [
        Figure(
            figure="progress event, worker → SSE client, 1 subscriber",
            jobwire=f"p99 {fmt_ms(jw.p99_ms)} (p50 {fmt_ms(jw.p50_ms)})",
            baseline=f"bare relay: p99 {fmt_ms(rl.p99_ms)} (p50 {fmt_ms(rl.p50_ms)})",
            ratio=f"{jw.p99_ms / rl.p99_ms:.2f}x",
            target=f"p99 ≤ {P99_TARGET_MS:g} ms",
            met=g.p99_single,
        ),
        Figure(
            figure=f"progress event, worker → SSE client, {n:,} subscribers",
            jobwire=f"p99 {fmt_ms(mj.p99_ms)} (p50 {fmt_ms(mj.p50_ms)})",
            baseline=f"bare relay: p99 {fmt_ms(mr.p99_ms)} (p50 {fmt_ms(mr.p50_ms)})",
            ratio=f"p99 {mj.p99_ms / mr.p99_ms:.2f}x, p50 {mj.p50_ms / mr.p50_ms:.2f}x",
            target=f"≤ {FANOUT_TARGET:g}x the relay (p50 and p99) with {SUBSCRIBERS_GOAL:,}",
            met=g.p50_many and g.p99_many if n == SUBSCRIBERS_GOAL else None,
            why="" if n == SUBSCRIBERS_GOAL else f"{n:,} subscribers, the target is at {SUBSCRIBERS_GOAL:,}",
        ),
        Figure(
            figure="concurrent SSE streams in one api process",
            jobwire=f"{hj.connected:,} held, {hj.kb_per_stream:.1f} KB each, "
            f"one event to all in {fmt_ms(hj.deliver_all_ms)}",
            baseline=f"bare relay: {hr.connected:,} held, {hr.kb_per_stream:.1f} KB each, "
            f"all in {fmt_ms(hr.deliver_all_ms)}",
            ratio=", ".join(ratios),
            target=f"{STREAMS_GOAL:,}, ≤ {KB_TARGET:g} KB each, all in ≤ {DELIVER_ALL_TARGET_MS / 1000:g} s",
            met=False if missed else g.streams,
            why=streams_why,
        ),
    ]


def render(
    header: str, single: dict[str, Latency], many: dict[str, Latency], hold: dict[str, Hold], k: int
) -> str:
    jw, rl = single["jobwire"], single["relay"]
    mj, mr = many["jobwire"], many["relay"]
    hj, hr = hold["jobwire"], hold["relay"]
    n = mj.subscribers
    g = goals(single, many, hold, k)
    lines = [
        header,
        "",
        "| figure | jobwire | bare relay | ratio | target | met |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]

    def row(
        figure: str, a: str, b: str, ratio: float | None, target: str = "", met: bool | str | None = None
    ) -> None:
        ratio_cell = f"{ratio:.2f}x" if ratio is not None else ""
        met_cell = met if isinstance(met, str) else verdict(met) if met is not None else ""
        lines.append(f"| {figure} | {a} | {b} | {ratio_cell} | {target} | {met_cell} |")

    row("latency p50, 1 subscriber", fmt_ms(jw.p50_ms), fmt_ms(rl.p50_ms), jw.p50_ms / rl.p50_ms)
    row(
        "latency p99, 1 subscriber",
        fmt_ms(jw.p99_ms),
        fmt_ms(rl.p99_ms),
        jw.p99_ms / rl.p99_ms,
        f"jobwire ≤ {P99_TARGET_MS:g} ms",
        g.p99_single,
    )
    for pct, a, b, met in (
        ("p50", mj.p50_ms, mr.p50_ms, g.p50_many),
        ("p99", mj.p99_ms, mr.p99_ms, g.p99_many),
    ):
        row(
            f"latency {pct}, {n:,} subscribers",
            fmt_ms(a),
            fmt_ms(b),
            a / b,
            f"≤ {FANOUT_TARGET:g}x relay",
            met,
        )
    row(
        f"streams held by one process (of {k:,} opened)",
        f"{hj.connected:,}",
        f"{hr.connected:,}",
        None,
        f"{STREAMS_GOAL:,}",
        # a smaller K (--quick, --streams, or this machine's limits) cannot meet it: say so, not "no"
        g.streams if g.streams is not None else f"not tried (K = {k:,})",
    )
    row(
        "KB per stream (server RSS)",
        f"{hj.kb_per_stream:.1f}",
        f"{hr.kb_per_stream:.1f}",
        hj.kb_per_stream / hr.kb_per_stream if hr.kb_per_stream > 0 else None,
        f"≤ {KB_TARGET:g} KB",
        g.kb_per_stream,
    )
    row(
        f"one event to all streams (max over streams, median of {hj.ticks})",
        fmt_ms(hj.deliver_all_ms),
        fmt_ms(hr.deliver_all_ms),
        hj.deliver_all_ms / hr.deliver_all_ms,
        f"≤ {DELIVER_ALL_TARGET_MS:g} ms",
        g.deliver_all,
    )
    row(
        "server CPU with the streams idle",
        f"{hj.idle_cpu_pct:.0f}%",
        f"{hr.idle_cpu_pct:.0f}%",
        None,
    )
    row(
        "time to open all streams",
        f"{hj.connect_s:.1f} s",
        f"{hr.connect_s:.1f} s",
        hj.connect_s / hr.connect_s,
    )
    lines.append("")
    lines.append(
        f"Ticks: {jw.ticks} every {jw.every_s:g} s with 1 subscriber, {mj.ticks} every {mj.every_s:g} s with "
        f"{n:,}; {hj.ticks} every {hj.every_s:g} s with {k:,} streams. Latency: send time (in the message) "
        "to arrival at the client process, same clock. Clients run in their own processes "
        f"(≤ {CLIENTS_PER_PROCESS:,} streams each); servers run one process each, jobwire's worker another."
    )
    return "\n".join(lines)


def anomalies(latency: list[Latency], hold: list[Hold]) -> list[str]:
    """What the clients saw that a correct stream never shows: lost events, out-of-order seq, a
    stream that ended early or not at all, a job that did not complete."""
    found: list[str] = []
    for run in latency:
        where = f"{run.target}, {run.subscribers} subscriber(s)"
        if run.samples < run.expected_samples:
            found.append(
                f"{where}: {run.expected_samples - run.samples} of {run.expected_samples} live events missing"
            )
        if run.finished < run.connected:
            found.append(f"{where}: {run.connected - run.finished} streams did not reach their end")
        if run.non_monotonic:
            found.append(f"{where}: {run.non_monotonic} events with a seq not above the previous one")
        if run.target == "jobwire" and set(run.statuses) - {"completed"}:
            found.append(f"{where}: terminal statuses {run.statuses}")
        found += [f"{where}: {error}" for error in run.errors]
    for h in hold:
        where = f"{h.target}, {h.requested} streams"
        if h.connected < h.requested:
            found.append(f"{where}: only {h.connected} opened")
        short = [reached for reached, _ in h.per_event if reached < h.connected]
        if short or len(h.per_event) < h.ticks:
            found.append(f"{where}: events reached {[r for r, _ in h.per_event]} of {h.connected} streams")
        if h.finished < h.connected:
            found.append(f"{where}: {h.connected - h.finished} streams did not reach their end")
        if h.non_monotonic:
            found.append(f"{where}: {h.non_monotonic} events with a seq not above the previous one")
        found += [f"{where}: {error}" for error in h.errors]
    return found


def feasible_streams(requested: int, fd_limit: int) -> tuple[int, str | None]:
    """The most streams this machine lets one server hold: its fd limit and the ephemeral ports that
    the clients' connections (all from 127.0.0.1 to one port) draw from."""
    ports = ephemeral_ports() - 1000  # leave some for whatever else runs here
    cap = min(fd_limit - FD_MARGIN, ports)
    if requested <= cap:
        return requested, None
    return cap, (
        f"{requested:,} streams are not possible here (fd hard limit {fd_limit:,}, "
        f"{ephemeral_ports():,} ephemeral ports): measured {cap:,}"
    )


# ---- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = arguments("stream", __doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--subscribers", type=int, help="subscribers on one job for the latency figures")
    parser.add_argument("--streams", type=int, help="streams held by one server process")
    args = parse(parser, "stream", argv)

    plan = QUICK_PLAN if args.quick else DEFAULT_PLAN
    subscribers = args.subscribers or plan.subscribers
    fd_limit = raise_fd_limit()
    k, k_note = feasible_streams(args.streams or plan.streams, fd_limit)
    if k_note:
        note(f"warning: {k_note}")
    if subscribers > fd_limit - FD_MARGIN:
        raise SystemExit(f"--subscribers {subscribers} exceeds the fd limit ({fd_limit})")

    RESULTS.mkdir(parents=True, exist_ok=True)
    note("preparing database jobwire_bench and an API key")
    key = prepare()
    clean_state()

    procs = Procs("stream", stream_env)
    targets = Targets(procs, key)
    single: dict[str, Latency] = {}
    many: dict[str, Latency] = {}
    held: dict[str, Hold] = {}
    t0 = time.monotonic()
    try:
        procs.start("worker", [jobwire_command(), "worker", "--concurrency", str(WORKER_CONCURRENCY)])
        for target in TARGETS:
            targets.restart(target)
            # the first event through a fresh process pays for imports, pools and caches: not counted
            note(f"warm-up: {target}")
            targets.latency(target, 1, plan.warmup_ticks, plan.single_every_s)
        for target in TARGETS:
            note(f"latency, 1 subscriber: {target} ({plan.single_ticks} ticks every {plan.single_every_s} s)")
            single[target] = targets.latency(target, 1, plan.single_ticks, plan.single_every_s)
        for target in TARGETS:
            ticks = f"{plan.many_ticks} ticks every {plan.many_every_s} s"
            note(f"latency, {subscribers} subscribers: {target} ({ticks})")
            many[target] = targets.latency(target, subscribers, plan.many_ticks, plan.many_every_s)
        for target in TARGETS:
            note(f"{k} streams held: {target} (fresh server process)")
            held[target] = targets.hold(target, k, plan.hold_ticks, plan.hold_every_s)
    finally:
        procs.stop_all()
        clean_state()
    note(f"done in {time.monotonic() - t0:.0f} s")

    date = today()
    header = (
        f"Live events, {date}: nproc {nproc()}, "
        "jobwire api + worker (progress interval default) vs bare relay"
    )
    table = render(header, single, many, held, k)
    if k_note:
        table += f"\n\nNote: {k_note}."
    print(table)

    found = anomalies([*single.values(), *many.values()], list(held.values()))
    warn(found)
    report_stderr(procs.logs)
    payload: dict[str, Any] = {
        "date": date,
        "nproc": nproc(),
        "plan": asdict(plan),
        "subscribers": subscribers,
        "streams": k,
        "streams_note": k_note,
        "table": table,
        "headline": [asdict(f) for f in headline(single, many, held, k)],
        "anomalies": found,
        "latency_1": {t: asdict(r) for t, r in single.items()},
        "latency_n": {t: asdict(r) for t, r in many.items()},
        "hold": {t: asdict(r) for t, r in held.items()},
    }
    save_results("stream", payload, args.write_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
