"""The bare relay that jobwire's live events are measured against: Redis pub/sub to SSE, nothing else.

- serve: an aiohttp app with ONE redis.asyncio pub/sub subscriber; every message goes, unchanged,
  to every connected client (`GET /events`) as `data: <json>\\n\\n`, through one asyncio.Queue
  per client. A message `{"end": true}` is passed on and then ends every stream.
- publish: PUBLISHes `{"t": time.time(), "i": n}` every `every_s`, `count` times, then `{"end": true}`.

Run as `python bench/relay.py {serve,publish} ...`. This file imports nothing from the project, so
it runs as a plain script; it uses uvloop and no access log, like `jobwire api`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import time
from collections.abc import AsyncIterator

import orjson
import uvloop
from aiohttp import web
from redis.asyncio import Redis

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_CHANNEL = "bench-stream:relay"

CLIENTS = web.AppKey("clients", set[asyncio.Queue[bytes]])
REDIS_URL = web.AppKey("redis_url", str)
CHANNEL = web.AppKey("channel", str)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---- serve -----------------------------------------------------------------------------------


async def events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    clients = request.app[CLIENTS]
    clients.add(queue)
    try:
        while True:
            data = await queue.get()
            await response.write(b"data: %s\n\n" % data)
            if data.startswith(b'{"end"'):
                break
    except ConnectionResetError:
        pass  # the client left
    finally:
        clients.discard(queue)
    return response


async def fan_out(app: web.Application) -> AsyncIterator[None]:
    redis = Redis.from_url(app[REDIS_URL])
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    # subscribed before the app serves: whatever is published after the first client is answered
    # reaches it
    await pubsub.subscribe(app[CHANNEL])
    clients = app[CLIENTS]

    async def pump() -> None:
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is not None and message["type"] == "message":
                data: bytes = message["data"]
                for queue in clients:
                    queue.put_nowait(data)

    task = asyncio.create_task(pump())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await pubsub.aclose()
    await redis.aclose()


def relay_app(redis_url: str, channel: str) -> web.Application:
    app = web.Application()
    app[CLIENTS] = set()
    app[REDIS_URL] = redis_url
    app[CHANNEL] = channel
    app.cleanup_ctx.append(fan_out)
    app.router.add_get("/events", events)
    return app


# ---- publish ---------------------------------------------------------------------------------


async def publish(redis_url: str, channel: str, count: int, every_s: float) -> None:
    redis = Redis.from_url(redis_url)
    try:
        for i in range(count):
            await asyncio.sleep(every_s)
            await redis.publish(channel, orjson.dumps({"t": time.time(), "i": i + 1}))
        await asyncio.sleep(every_s)
        await redis.publish(channel, orjson.dumps({"end": True}))
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description="bare Redis pub/sub to SSE relay, for bench.stream")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("--port", type=int, required=True)
    pub = commands.add_parser("publish")
    pub.add_argument("--count", type=int, required=True)
    pub.add_argument("--every-s", type=float, required=True)
    for sub in (serve, pub):
        sub.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
        sub.add_argument("--channel", default=DEFAULT_CHANNEL)
    args = parser.parse_args()

    raise_fd_limit()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.command == "serve":
        app = relay_app(args.redis_url, args.channel)
        web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
    else:
        asyncio.run(publish(args.redis_url, args.channel, args.count, args.every_s))


if __name__ == "__main__":
    main()
