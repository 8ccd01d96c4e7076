"""SAQ (Redis) behind an aiohttp endpoint.

    python saq_peer.py serve --port P | work --concurrency C | fill N | latency M --key K

A job lives in Redis (SAQ keeps finished jobs there for a while); the worker is SAQ's own.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REDIS_URL, arguments, stamp_loop
from redis.asyncio import Redis
from saq import Queue, Worker

NAME = "bench-peers-saq"
_redis: Redis | None = None


async def noop(ctx: dict[str, Any]) -> None:
    pass


async def stamp(ctx: dict[str, Any], *, stamps: str) -> None:
    started = time.time()
    global _redis
    if _redis is None:
        _redis = Redis.from_url(REDIS_URL)
    await _redis.rpush(stamps, repr(started))


def queue() -> Queue:
    return Queue.from_url(REDIS_URL, name=NAME)


async def serve(port: int) -> None:
    from aiohttp import web

    q = queue()
    await q.connect()

    async def submit(request: web.Request) -> web.Response:
        await request.read()
        job = await q.enqueue("noop")
        assert job is not None
        return web.json_response({"id": job.key}, status=202)

    app = web.Application()
    app.router.add_post("/v1/jobs", submit)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def work(concurrency: int) -> None:
    q = queue()
    worker = Worker(q, functions=[noop, stamp], concurrency=concurrency)
    await worker.start()


async def fill(jobs: int) -> None:
    q = queue()
    for start in range(0, jobs, 500):
        await asyncio.gather(*(q.enqueue("noop") for _ in range(min(500, jobs - start))))
    await q.disconnect()


async def latency(jobs: int, key: str) -> None:
    q = queue()

    async def enqueue(k: str) -> None:
        # not `key`: SAQ's enqueue takes that as the job's own key
        await q.enqueue("stamp", stamps=k)

    await stamp_loop(jobs, key, enqueue)
    await q.disconnect()


def main() -> None:
    import uvloop

    args = arguments(__doc__.splitlines()[0])
    if args.mode == "serve":
        uvloop.run(serve(args.port))
    elif args.mode == "work":
        uvloop.run(work(args.concurrency))
    elif args.mode == "fill":
        uvloop.run(fill(args.jobs))
    else:
        uvloop.run(latency(args.jobs, args.key))


if __name__ == "__main__":
    main()
