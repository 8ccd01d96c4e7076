"""N SSE clients in one process, for bench.stream: they follow one stream URL and measure how long each
event took from its send time (carried in the event) to its arrival here.

    python bench/sse_clients.py --url URL --n N --kind {jobwire,relay} [--timeout S]

The Authorization header value, if any, comes from the environment (BENCH_SSE_AUTHORIZATION), so the
key does not show in `ps`. Every sender runs on this machine, so the clock is shared.

stdout carries two JSON lines: `ready {...}` once every client has its response headers (or has
failed), then the results when every stream has ended (or at the timeout). Only events sent after
the client's headers arrived are counted: the rest are jobwire's replay of the backlog.

Kinds:
- jobwire: `data:` is a job event; progress events carry the send time in `message`; the stream ends
  with the terminal event. The tick is identified by the event's seq.
- relay: `data:` is `{"t": send time, "i": tick}`, and `{"end": true}` ends the stream.

This file imports nothing from the project, so it runs as a plain script.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import uvloop

TERMINAL = {"completed", "failed", "cancelled"}
ERROR_SAMPLES = 5


@dataclass
class Totals:
    n: int
    connected: int = 0
    failed: int = 0
    finished: int = 0  # streams that reached their end (terminal event / end message)
    errors: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # jobwire: terminal status -> clients
    # tick -> latency (ms) at each client that received it live
    ticks: dict[int, list[float]] = field(default_factory=dict)
    replayed: int = 0  # events sent before the client connected (jobwire's backlog replay)
    non_monotonic: int = 0  # events whose seq was not above the previous one's on the same stream
    seq_gaps: int = 0  # jumps of more than one seq on a stream (coalesced progress, or lost events)
    decode_errors: int = 0
    attempts: int = 0
    all_attempted: asyncio.Event = field(default_factory=asyncio.Event)

    def error(self, text: str) -> None:
        if len(self.errors) < ERROR_SAMPLES:
            self.errors.append(text)

    def attempted(self) -> None:
        self.attempts += 1
        if self.attempts == self.n:
            self.all_attempted.set()

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "connected": self.connected,
            "failed": self.failed,
            "errors": self.errors,
        }


class Follower:
    """One client's stream: splits the body into SSE blocks and records the live events."""

    def __init__(self, kind: str, totals: Totals, connected_at: float) -> None:
        self.kind = kind
        self.totals = totals
        self.connected_at = connected_at
        self.buffer = b""
        self.last_seq = 0
        self.done = False

    def feed(self, chunk: bytes, now: float) -> None:
        self.buffer += chunk
        *blocks, self.buffer = self.buffer.split(b"\n\n")
        for block in blocks:
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    self.on_data(line[5:].strip(), now)

    def on_data(self, raw: bytes, now: float) -> None:
        try:
            data: dict[str, Any] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.totals.decode_errors += 1
            return
        if self.kind == "relay":
            if data.get("end"):
                self.done = True
            else:
                self.record(int(data["i"]), float(data["t"]), now)
            return
        seq = int(data["seq"])
        if seq <= self.last_seq:
            self.totals.non_monotonic += 1
        elif self.last_seq and seq > self.last_seq + 1:
            self.totals.seq_gaps += 1
        self.last_seq = max(self.last_seq, seq)
        if data["type"] == "progress" and data.get("message"):
            self.record(seq, float(data["message"]), now)
        if data["status"] in TERMINAL:
            statuses = self.totals.statuses
            statuses[data["status"]] = statuses.get(data["status"], 0) + 1
            self.done = True

    def record(self, tick: int, sent_at: float, now: float) -> None:
        if sent_at < self.connected_at:
            self.totals.replayed += 1
            return
        self.totals.ticks.setdefault(tick, []).append(round((now - sent_at) * 1000, 3))


async def follow(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    kind: str,
    totals: Totals,
    connecting: asyncio.Semaphore,
) -> None:
    try:
        # a bounded number of connects in flight: a burst of thousands overflows the server's
        # listen backlog (128 for aiohttp) and the dropped SYNs come back only after 1 s, 3 s, ...
        async with connecting:
            response = await session.get(url, headers=headers)
            if response.status != 200:
                body = (await response.read())[:200].decode(errors="replace")
                response.release()
                raise RuntimeError(f"HTTP {response.status}: {body}")
    except Exception as exc:
        totals.failed += 1
        totals.error(f"connect: {type(exc).__name__}: {exc}")
        totals.attempted()
        return
    follower = Follower(kind, totals, time.time())
    totals.connected += 1
    totals.attempted()
    try:
        async for chunk in response.content.iter_any():
            follower.feed(chunk, time.time())
            if follower.done:
                break
        if follower.done:
            totals.finished += 1
        else:
            totals.error("stream closed before its end")
    except Exception as exc:
        totals.error(f"read: {type(exc).__name__}: {exc}")
    finally:
        response.close()


def emit(tag: str, payload: dict[str, Any]) -> None:
    sys.stdout.write(f"{tag} {orjson.dumps(payload).decode()}\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    totals = Totals(n=args.n)
    authorization = os.environ.get("BENCH_SSE_AUTHORIZATION")
    headers = {"Accept": "text/event-stream"}
    if authorization:
        headers["Authorization"] = authorization
    connecting = asyncio.Semaphore(args.connect_concurrency)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    # no read timeout: a stream may rightly stay silent until the benchmark sends the first tick
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [
            asyncio.create_task(follow(session, args.url, headers, args.kind, totals, connecting))
            for _ in range(args.n)
        ]
        deadline = time.monotonic() + args.timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(totals.all_attempted.wait(), args.timeout)
        emit("ready", totals.summary())
        remaining = max(0.1, deadline - time.monotonic())
        _, pending = await asyncio.wait(tasks, timeout=remaining)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    emit(
        "result",
        {
            **totals.summary(),
            "finished": totals.finished,
            "timed_out": len(pending),
            "statuses": totals.statuses,
            "ticks": {str(tick): lat for tick, lat in sorted(totals.ticks.items())},
            "replayed": totals.replayed,
            "non_monotonic": totals.non_monotonic,
            "seq_gaps": totals.seq_gaps,
            "decode_errors": totals.decode_errors,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="N SSE clients measuring event latency, for bench.stream")
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--kind", choices=["jobwire", "relay"], required=True)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds until every stream ends")
    parser.add_argument("--connect-concurrency", type=int, default=32)
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
