"""Celery 5 with Redis as broker, behind a FastAPI endpoint, as its documentation writes them.

    python celery_peer.py serve --port P             uvicorn, one process, FastAPI's sync endpoint
    python celery_peer.py work --pool prefork|threads --concurrency C
    python celery_peer.py fill N | latency M --key K

Tasks are acknowledged on receipt and results are not stored (Celery's defaults): a task lives only
in Redis until a worker takes it.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint's annotations at definition,
# and `Request` is imported inside serve()
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis
from celery import Celery
from common import REDIS_URL, arguments, stamp_loop

QUEUE = "bench-peers-celery"
app = Celery("bench_peers", broker=REDIS_URL)
app.conf.task_default_queue = QUEUE
app.conf.task_ignore_result = True
app.conf.worker_hijack_root_logger = False

_redis: "redis.Redis | None" = None


@app.task(name="noop")
def noop() -> None:
    pass


@app.task(name="stamp")
def stamp(key: str) -> None:
    started = time.time()
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(REDIS_URL)
    _redis.rpush(key, repr(started))


def serve(port: int) -> None:
    import uvicorn
    from fastapi import FastAPI, Request, Response

    api = FastAPI()

    # a sync endpoint: delay() blocks on the broker, so FastAPI runs it in its thread pool
    @api.post("/v1/jobs", status_code=202)
    def submit(request: Request) -> Response:
        result = noop.delay()
        return Response(content=f'{{"id":"{result.id}"}}', status_code=202, media_type="application/json")

    uvicorn.run(api, host="127.0.0.1", port=port)


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    if args.mode == "serve":
        serve(args.port)
    elif args.mode == "work":
        pool = args.pool or "prefork"
        app.worker_main(
            ["worker", f"--pool={pool}", f"--concurrency={args.concurrency}", "--loglevel=WARNING"]
        )
    elif args.mode == "fill":
        for _ in range(args.jobs):
            noop.delay()
    else:

        async def enqueue(key: str) -> None:
            stamp.delay(key)

        asyncio.run(stamp_loop(args.jobs, args.key, enqueue))


if __name__ == "__main__":
    main()
