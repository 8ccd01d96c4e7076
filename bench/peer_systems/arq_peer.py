"""Bare ARQ (Redis) behind an aiohttp endpoint; its worker is bench/bare_arq.py (`python -m
bench.bare_arq`, functions `noop` and `stamp`). Runs in the project's venv, which has ARQ.

    python arq_peer.py serve --port P | fill N | latency M --key K

A job lives in Redis only.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from arq.connections import ArqRedis, RedisSettings, create_pool
from common import arguments, stamp_loop

QUEUE = "bench-peers:arq-queue"


def job_id() -> str:
    # ARQ's job keys are arq:job:<id>: the prefix lets the benchmark delete only its own
    return f"bench-peers-{uuid.uuid4().hex}"


async def pool() -> ArqRedis:
    return await create_pool(RedisSettings(), default_queue_name=QUEUE)


async def serve(port: int) -> None:
    from aiohttp import web

    redis = await pool()

    async def submit(request: web.Request) -> web.Response:
        await request.read()
        job = await redis.enqueue_job("noop", _job_id=job_id())
        assert job is not None
        return web.json_response({"id": job.job_id}, status=202)

    app = web.Application()
    app.router.add_post("/v1/jobs", submit)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def fill(jobs: int) -> None:
    redis = await pool()
    for start in range(0, jobs, 500):
        await asyncio.gather(
            *(redis.enqueue_job("noop", _job_id=job_id()) for _ in range(min(500, jobs - start)))
        )
    await redis.aclose()


async def latency(jobs: int, key: str) -> None:
    redis = await pool()

    async def enqueue(k: str) -> None:
        await redis.enqueue_job("stamp", k, _job_id=job_id())

    await stamp_loop(jobs, key, enqueue)
    await redis.aclose()


def main() -> None:
    import uvloop

    args = arguments(__doc__.splitlines()[0])
    if args.mode == "serve":
        uvloop.run(serve(args.port))
    elif args.mode == "fill":
        uvloop.run(fill(args.jobs))
    elif args.mode == "latency":
        uvloop.run(latency(args.jobs, args.key))
    else:
        raise SystemExit("the ARQ worker is `python -m bench.bare_arq`")


if __name__ == "__main__":
    main()
