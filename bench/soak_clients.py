"""The live clients of bench.soak, in a process of their own: SSE followers and WebSocket dashboards.

    python -m bench.soak_clients --url URL [--followers 50] [--dashboards 5] [--follow-every-s 1]

The API key comes from the environment (BENCH_SOAK_KEY), so it does not show in `ps`.

- Dashboards hold `GET /v1/ws` with `{"op": "subscribe", "all": true}` for the whole run and tally
  every event per job: a job first seen after seq 1, a seq that is not above the last one, a jump
  (progress the hub coalesced for a slow client: allowed), and jobs whose terminal event never came.
  A dropped connection is reopened and counted.
- Followers each take the newest job a dashboard saw created, follow its SSE stream to the terminal
  event (reconnecting with Last-Event-ID if the stream drops), check that the seqs were exactly
  1, 2, …, N, and start the next follow at most once every --follow-every-s. Pacing them by time,
  not by how fast jobs finish, keeps their load the same whatever the queue's length.

stdout carries two JSON lines: `ready {...}` once every dashboard is subscribed, and `result {...}`
after stdin reaches EOF (the soak closes it once every job is finished): the followers finish the
follow they are in, the dashboards get a moment for the last events, and everything closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import uvloop
import websockets
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

TERMINAL = {"completed", "failed", "cancelled"}
ERROR_SAMPLES = 5
FOLLOW_TIMEOUT_S = 120.0  # one job's stream, reconnects included: far above a no-op job's life
RECONNECT_S = 0.5
DASHBOARD_LINGER_S = 2.0  # after stdin's EOF, for events still on their way to the dashboards
DASHBOARD_READY_S = 30.0


def sample(errors: list[str], text: str) -> None:
    if len(errors) < ERROR_SAMPLES:
        errors.append(text)


class Fresh:
    """Ids of jobs just created, newest last: what the followers take their next job from."""

    def __init__(self) -> None:
        self.ids: deque[str] = deque(maxlen=256)
        self.arrived = asyncio.Event()
        self.closed = asyncio.Event()

    def offer(self, job_id: str) -> None:
        self.ids.append(job_id)
        self.arrived.set()

    def close(self) -> None:
        self.closed.set()
        self.arrived.set()

    async def take(self) -> str | None:
        while not self.ids:
            if self.closed.is_set():
                return None
            self.arrived.clear()
            await self.arrived.wait()
        return None if self.closed.is_set() else self.ids.pop()


# ---- dashboards ------------------------------------------------------------------------------


@dataclass
class Dashboard:
    connects: int = 0
    events: int = 0
    types: Counter[str] = field(default_factory=Counter)
    terminal: int = 0
    late_joins: int = 0  # jobs first seen after seq 1: created before a (re)connect
    coalesced: int = 0  # seq jumps within a job: progress coalesced for a slow client
    not_ascending: int = 0  # a seq at or below the job's last one: a duplicate or out of order
    stats: int = 0
    resyncs: int = 0
    errors: list[str] = field(default_factory=list)
    # per job not yet terminal: the last seq seen (dropped at the terminal event, so this stays small)
    open_jobs: dict[str, int] = field(default_factory=dict)

    def on_event(self, event: dict[str, Any], fresh: Fresh | None) -> None:
        self.events += 1
        self.types[event["type"]] += 1
        job, seq = event["job_id"], event["seq"]
        last = self.open_jobs.get(job)
        if last is None:
            if seq != 1:
                self.late_joins += 1
            elif fresh is not None:
                fresh.offer(job)
        elif seq <= last:
            self.not_ascending += 1
        elif seq > last + 1:
            self.coalesced += 1
        if event["status"] in TERMINAL:
            self.terminal += 1
            self.open_jobs.pop(job, None)
        else:
            self.open_jobs[job] = max(seq, last or 0)

    def summary(self) -> dict[str, Any]:
        # not dataclasses.asdict: it rebuilds a Counter from its (key, count) pairs, counting those
        summary = {**vars(self), "types": dict(self.types), "unfinished_jobs": len(self.open_jobs)}
        del summary["open_jobs"]
        return summary


async def dashboard(
    url: str, key: str, tally: Dashboard, fresh: Fresh | None, subscribed: asyncio.Event
) -> None:
    """One dashboard, reconnecting until cancelled."""
    ws_url = url.replace("http://", "ws://", 1) + "/v1/ws"
    headers = {"Authorization": f"Bearer {key}"}
    while True:
        try:
            async with connect(ws_url, additional_headers=headers, proxy=None) as ws:
                tally.connects += 1
                await ws.send('{"op": "subscribe", "all": true}')
                async for raw in ws:
                    message = orjson.loads(raw)
                    op = message.get("op")
                    if op == "event":
                        tally.on_event(message["event"], fresh)
                    elif op == "stats":
                        tally.stats += 1
                    elif op == "subscribed":
                        subscribed.set()
                    elif op == "resync":
                        tally.resyncs += 1
                    else:
                        sample(tally.errors, f"unexpected frame: {raw[:200]!r}")
        except (OSError, websockets.WebSocketException) as exc:
            sample(tally.errors, f"{type(exc).__name__}: {exc}")
        # a closed connection that did not raise (a clean close from the server) is a drop too
        sample(tally.errors, "connection closed; reconnecting")
        await asyncio.sleep(RECONNECT_S)


# ---- followers -------------------------------------------------------------------------------


@dataclass
class Followers:
    follows: int = 0
    complete: int = 0  # seqs exactly 1..N, the last one terminal
    gapped: int = 0  # reached the terminal event, but the seqs were not 1..N
    incomplete: int = 0  # no terminal event within FOLLOW_TIMEOUT_S
    reconnects: int = 0
    events: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # of the stream requests
    outcomes: Counter[str] = field(default_factory=Counter)  # the jobs' terminal statuses
    errors: list[str] = field(default_factory=list)


async def follow(http: httpx.AsyncClient, job_id: str, tally: Followers) -> None:
    """Follow one job's stream to its terminal event, resuming with Last-Event-ID after a drop."""
    seqs: list[int] = []
    terminal: str | None = None
    deadline = time.monotonic() + FOLLOW_TIMEOUT_S
    tally.follows += 1
    while terminal is None and time.monotonic() < deadline:
        headers = {"Last-Event-ID": str(seqs[-1])} if seqs else {}
        try:
            async with aconnect_sse(http, "GET", f"/v1/jobs/{job_id}/events", headers=headers) as source:
                status = source.response.status_code
                tally.statuses[status] += 1
                if status != 200:
                    # 204 answers a Last-Event-ID that is already the terminal event: never sent here
                    sample(
                        tally.errors, f"{job_id}: HTTP {status}: {(await source.response.aread())[:200]!r}"
                    )
                    break
                async for sse in source.aiter_sse():
                    if not sse.data:
                        continue
                    event = orjson.loads(sse.data)
                    seqs.append(event["seq"])
                    tally.events += 1
                    if event["status"] in TERMINAL:
                        terminal = event["status"]
                        break
        except httpx.HTTPError as exc:
            sample(tally.errors, f"{job_id}: {type(exc).__name__}: {exc}")
        if terminal is None:
            tally.reconnects += 1
            await asyncio.sleep(RECONNECT_S)
    if terminal is None:
        tally.incomplete += 1
        return
    tally.outcomes[terminal] += 1
    if seqs == list(range(1, len(seqs) + 1)):
        tally.complete += 1
    else:
        tally.gapped += 1
        sample(tally.errors, f"{job_id}: seqs {seqs}")


async def follower(http: httpx.AsyncClient, fresh: Fresh, every_s: float, tally: Followers) -> None:
    while (job_id := await fresh.take()) is not None:
        started = time.monotonic()
        await follow(http, job_id, tally)
        pause = started + every_s - time.monotonic()
        if pause > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fresh.closed.wait(), pause)


# ---- main ------------------------------------------------------------------------------------


def emit(tag: str, payload: dict[str, Any]) -> None:
    sys.stdout.write(f"{tag} {orjson.dumps(payload).decode()}\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    key = os.environ["BENCH_SOAK_KEY"]
    fresh = Fresh()
    boards = [Dashboard() for _ in range(args.dashboards)]
    ready = [asyncio.Event() for _ in boards]
    # only the first dashboard feeds the followers: one source of fresh ids is enough
    board_tasks = [
        asyncio.create_task(dashboard(args.url, key, board, fresh if i == 0 else None, ready[i]))
        for i, board in enumerate(boards)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), DASHBOARD_READY_S)
    except TimeoutError:
        errors = [e for b in boards for e in b.errors]
        emit("failed", {"detail": "the dashboards did not subscribe in time", "errors": errors[:5]})
        raise SystemExit(1) from None
    emit("ready", {"dashboards": len(boards)})

    followers = Followers()
    limits = httpx.Limits(max_connections=args.followers + 8, max_keepalive_connections=args.followers)
    timeout = httpx.Timeout(30.0, read=FOLLOW_TIMEOUT_S)
    async with httpx.AsyncClient(
        base_url=args.url, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=timeout
    ) as http:
        follower_tasks = [
            asyncio.create_task(follower(http, fresh, args.follow_every_s, followers))
            for _ in range(args.followers)
        ]
        # EOF on stdin: the soak has finished every job and wants the tallies
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)
        fresh.close()
        await asyncio.gather(*follower_tasks)
    await asyncio.sleep(DASHBOARD_LINGER_S)
    for task in board_tasks:
        task.cancel()
    await asyncio.gather(*board_tasks, return_exceptions=True)
    emit(
        "result",
        {
            "followers": {
                **vars(followers),
                "statuses": {str(s): n for s, n in followers.statuses.items()},
                "outcomes": dict(followers.outcomes),
            },
            "dashboards": [b.summary() for b in boards],
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="SSE followers and WebSocket dashboards, for bench.soak")
    parser.add_argument("--url", required=True, help="the api, e.g. http://127.0.0.1:8000")
    parser.add_argument("--followers", type=int, default=50)
    parser.add_argument("--dashboards", type=int, default=5)
    parser.add_argument(
        "--follow-every-s", type=float, default=1.0, help="a follower starts at most this often"
    )
    args = parser.parse_args()

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
