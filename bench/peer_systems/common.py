"""What the peer scripts share: their command line and the stamp loop of the pickup latency.

Each peer script runs in the peers' own environment (a venv under ~/.cache/jobwire-bench/peers, or
the project's venv for ARQ) and imports nothing from bench or jobwire; `python -m bench.peers` starts
them. Modes: `serve --port P` (an HTTP endpoint that enqueues a no-op job per POST /v1/jobs),
`work --concurrency C` (one worker process), `fill N` (a backlog of N no-op jobs), `latency M --key
K` (M stamp jobs one at a time, each enqueued once the previous one started; prints the latencies in
ms as JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable

REDIS_URL = "redis://127.0.0.1:6379/0"
STAMP_TIMEOUT_S = 10


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    modes = parser.add_subparsers(dest="mode", required=True)
    serve = modes.add_parser("serve")
    serve.add_argument("--port", type=int, required=True)
    work = modes.add_parser("work")
    work.add_argument("--concurrency", type=int, default=50)
    work.add_argument("--pool", default="")
    fill = modes.add_parser("fill")
    fill.add_argument("jobs", type=int)
    latency = modes.add_parser("latency")
    latency.add_argument("jobs", type=int)
    latency.add_argument("--key", required=True)
    return parser.parse_args()


async def stamp_loop(jobs: int, key: str, enqueue: Callable[[str], Awaitable[object]]) -> None:
    """Enqueue `jobs` stamp jobs one at a time; each pushes time.time() at its start onto `key`."""
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL, socket_timeout=None)  # BLPOP waits longer than any default
    latencies: list[float] = []
    missing = 0
    try:
        await redis.delete(key)
        for _ in range(jobs):
            await enqueue(key)
            acked = time.time()
            got = await redis.blpop([key], timeout=STAMP_TIMEOUT_S)
            if got is None:
                missing += 1
                continue
            latencies.append((float(got[1]) - acked) * 1000)
            # the worker goes idle between jobs, as a job arriving alone finds it; the random part
            # spreads the arrivals over a polling worker's cycle
            await asyncio.sleep(random.uniform(0.01, 0.03))
    finally:
        await redis.aclose()
    print(json.dumps({"latencies_ms": latencies, "missing": missing}))
