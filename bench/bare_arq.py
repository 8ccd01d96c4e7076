"""Bare ARQ: the baseline worker of bench.lifecycle, with nothing of jobwire in the job path.

    python -m bench.bare_arq --queue Q [--max-jobs C] [--poll-delay S] [--stats PATH]
    arq bench.bare_arq.WorkerSettings     (the same functions through ARQ's own CLI)

Two functions: `noop` does nothing (the drain rate), `stamp` pushes time.time() taken at its start
onto a Redis list (the start latency). `python -m bench.bare_arq` runs the worker the way `jobwire
worker` runs its own: on uvloop, inside a running loop (`Worker.async_run`), with the same garbage
collector tuning, so that the two differ only in what happens per job. On SIGTERM it stops and, with
--stats, writes how many jobs completed, failed and were retried as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import uvloop
from arq.connections import RedisSettings
from arq.worker import Worker

from bench.harness import REDIS_URL
from jobwire.cli.main import _tune_gc

DEFAULT_QUEUE = "bench-lifecycle:arq-queue"


async def noop(ctx: dict[str, Any], *_: Any) -> None:
    """Does nothing: a drain of these measures ARQ's own cost per job. (bench.submit's naive handler
    passes the job's params: they are ignored.)"""


async def stamp(ctx: dict[str, Any], key: str) -> None:
    started = time.time()
    await ctx["redis"].rpush(key, repr(started))


class WorkerSettings:
    """For `arq bench.bare_arq.WorkerSettings`; the benchmark itself uses `main()` below."""

    # Any: ARQ's WorkerCoroutine protocol takes *args, which no function of fixed arguments matches
    functions: list[Any] = [noop, stamp]
    queue_name = DEFAULT_QUEUE
    redis_settings = RedisSettings.from_dsn(REDIS_URL)
    max_jobs = 10
    poll_delay = 0.01
    keep_result = 0
    # ARQ writes a health-check key every interval; jobwire's worker uses 60 s
    health_check_interval = 60


async def run(queue: str, max_jobs: int, poll_delay: float) -> dict[str, int]:
    """Until SIGTERM or SIGINT; returns the worker's job counts."""
    worker = Worker(
        functions=WorkerSettings.functions,
        queue_name=queue,
        redis_settings=WorkerSettings.redis_settings,
        handle_signals=False,
        max_jobs=max_jobs,
        poll_delay=poll_delay,
        keep_result=WorkerSettings.keep_result,
        health_check_interval=WorkerSettings.health_check_interval,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    main = loop.create_task(worker.async_run())
    _tune_gc()
    stopping = loop.create_task(stop.wait())
    await asyncio.wait({main, stopping}, return_when=asyncio.FIRST_COMPLETED)
    main.cancel()
    stopping.cancel()
    await asyncio.gather(main, stopping, return_exceptions=True)
    # close() cancels the jobs still running (none, after a drain) and re-raises their cancellation
    with contextlib.suppress(asyncio.CancelledError):
        await worker.close()
    return {"complete": worker.jobs_complete, "failed": worker.jobs_failed, "retried": worker.jobs_retried}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_arq", description=__doc__.splitlines()[0])
    parser.add_argument("--queue", default=DEFAULT_QUEUE)
    parser.add_argument("--max-jobs", type=int, default=WorkerSettings.max_jobs)
    parser.add_argument("--poll-delay", type=float, default=WorkerSettings.poll_delay)
    parser.add_argument("--stats", type=Path, help="write the job counts here as JSON on exit")
    args = parser.parse_args(argv)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    counts = asyncio.run(run(args.queue, args.max_jobs, args.poll_delay))
    if args.stats is not None:
        args.stats.write_text(json.dumps(counts) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
