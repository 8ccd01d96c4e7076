"""procrastinate (PostgreSQL) behind an aiohttp endpoint.

    python procrastinate_peer.py serve --port P | work --concurrency C | fill N | latency M --key K

A job is a row committed in PostgreSQL before defer returns: durable, like jobwire's. The worker is
procrastinate's own, woken by LISTEN/NOTIFY. JOBWIRE_BENCH_PEERS_PG names the database.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REDIS_URL, arguments, stamp_loop
from procrastinate import App, PsycopgConnector
from redis.asyncio import Redis

DATABASE_URL = os.environ.get(
    "JOBWIRE_BENCH_PEERS_PG", "postgresql://postgres@127.0.0.1:5432/jobwire_bench_peers"
)
app = App(connector=PsycopgConnector(conninfo=DATABASE_URL))
_redis: Redis | None = None


@app.task(name="noop")
async def noop() -> None:
    pass


@app.task(name="stamp")
async def stamp(key: str) -> None:
    started = time.time()
    global _redis
    if _redis is None:
        _redis = Redis.from_url(REDIS_URL)
    await _redis.rpush(key, repr(started))


async def serve(port: int) -> None:
    from aiohttp import web

    async def submit(request: web.Request) -> web.Response:
        await request.read()
        job_id = await noop.defer_async()
        return web.json_response({"id": job_id}, status=202)

    async with app.open_async():
        web_app = web.Application()
        web_app.router.add_post("/v1/jobs", submit)
        runner = web.AppRunner(web_app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()


async def work(concurrency: int) -> None:
    async with app.open_async():
        await app.run_worker_async(concurrency=concurrency)


async def fill(jobs: int) -> None:
    async with app.open_async():
        for start in range(0, jobs, 1000):
            await noop.batch_defer_async(*({} for _ in range(min(1000, jobs - start))))


async def latency(jobs: int, key: str) -> None:
    async with app.open_async():

        async def enqueue(k: str) -> None:
            await stamp.defer_async(key=k)

        await stamp_loop(jobs, key, enqueue)


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
