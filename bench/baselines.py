"""Two baseline servers that jobwire's submission throughput is measured against.

- ceiling: parses the body and answers 202 with a fresh id; stores nothing. No job service on
  aiohttp can be faster on this machine, so it bounds what jobwire could reach.
- naive: one INSERT and one `ArqRedis.enqueue_job` per request, what most people write first.

Run as `python bench/baselines.py {ceiling,naive} --port P`. This file imports nothing from the
project, so it runs as a plain script.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import uvloop
from aiohttp import web
from arq.connections import ArqRedis, RedisSettings, create_pool

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/jobwire_bench"
# its own queue, so the naive jobs never meet jobwire's (`bench:queue`) or a worker
NAIVE_QUEUE = "bench-naive:queue"
NAIVE_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS naive_jobs (
    id uuid PRIMARY KEY,
    type text NOT NULL,
    params jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    created_at timestamptz NOT NULL DEFAULT now()
)"""

PG = web.AppKey("pg", asyncpg.Pool)
ARQ = web.AppKey("arq", ArqRedis)
DATABASE_URL = web.AppKey("database_url", str)


def accepted(job_id: uuid.UUID) -> web.Response:
    return web.Response(body=orjson.dumps({"id": str(job_id)}), status=202, content_type="application/json")


async def ceiling_submit(request: web.Request) -> web.Response:
    # parse the body like the others do, so only storing the job differs
    orjson.loads(await request.read())
    return accepted(uuid.uuid4())


async def naive_submit(request: web.Request) -> web.Response:
    body: dict[str, Any] = orjson.loads(await request.read())
    job_id = uuid.uuid4()
    await request.app[PG].execute(
        "INSERT INTO naive_jobs (id, type, params) VALUES ($1, $2, $3)",
        job_id,
        body["type"],
        orjson.dumps(body["params"]).decode(),
    )
    await request.app[ARQ].enqueue_job("noop", body["params"], _job_id=str(job_id))
    return accepted(job_id)


async def naive_pools(app: web.Application) -> AsyncIterator[None]:
    app[PG] = await asyncpg.create_pool(app[DATABASE_URL], max_size=10)
    app[ARQ] = await create_pool(RedisSettings(), default_queue_name=NAIVE_QUEUE)
    yield
    await app[ARQ].aclose()
    await app[PG].close()


def ceiling_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/jobs", ceiling_submit)
    return app


def naive_app(database_url: str) -> web.Application:
    app = web.Application()
    app[DATABASE_URL] = database_url
    app.cleanup_ctx.append(naive_pools)
    app.router.add_post("/v1/jobs", naive_submit)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="baseline servers for bench.submit")
    parser.add_argument("target", choices=["ceiling", "naive"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="naive only")
    args = parser.parse_args()

    app = ceiling_app() if args.target == "ceiling" else naive_app(args.database_url)
    # the same event loop and logging as `jobwire api`, so the comparison is like for like
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
