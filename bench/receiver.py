"""The webhook receiver that bench.webhooks delivers to, and the bare sender it is measured against.

- serve: an aiohttp app that answers every POST with 200 at once and records, per `webhook-id`, the
  wall-clock time of its first arrival. `GET /_bench/count` answers the counts (cheap to poll),
  `GET /_bench/arrivals` the arrival times, `POST /_bench/reset` forgets everything.
- send: the ceiling. POSTs `--n` small bodies, each signed like a delivery (Standard Webhooks headers,
  a fresh webhook-id and timestamp), through `--concurrency` requests in flight on one aiohttp
  session, with no database; prints one JSON line: how many succeeded and how long it took.

Run as `python -m bench.receiver {serve,send} ...` from the repository root. Both use uvloop, like
`jobwire dispatcher`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from dataclasses import dataclass, field

import aiohttp
import orjson
import uvloop
from aiohttp import web

from jobwire.webhooks import signing

# ---- serve -----------------------------------------------------------------------------------


@dataclass
class Seen:
    requests: int = 0
    arrivals: dict[str, float] = field(default_factory=dict)


SEEN = web.AppKey("seen", Seen)


async def webhook(request: web.Request) -> web.Response:
    at = time.time()  # before reading the body: the moment the request reached this process
    await request.read()
    seen = request.app[SEEN]
    seen.requests += 1
    seen.arrivals.setdefault(request.headers.get("webhook-id", ""), at)
    return web.Response()


async def count(request: web.Request) -> web.Response:
    seen = request.app[SEEN]
    return web.json_response({"requests": seen.requests, "unique": len(seen.arrivals)})


async def arrivals(request: web.Request) -> web.Response:
    seen = request.app[SEEN]
    body = {"requests": seen.requests, "arrivals": seen.arrivals}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def reset(request: web.Request) -> web.Response:
    seen = request.app[SEEN]
    seen.requests = 0
    seen.arrivals.clear()
    return web.Response()


def receiver_app() -> web.Application:
    app = web.Application()
    app[SEEN] = Seen()
    app.router.add_get("/_bench/count", count)
    app.router.add_get("/_bench/arrivals", arrivals)
    app.router.add_post("/_bench/reset", reset)
    app.router.add_post("/{tail:.*}", webhook)
    return app


# ---- send ------------------------------------------------------------------------------------


def sample_body(job_id: uuid.UUID) -> bytes:
    """A body shaped like a `job.cancelled` delivery's (about the same size), rendered per request."""
    job_hex = str(job_id)
    at = "2026-01-01T00:00:00.000000Z"
    return orjson.dumps(
        {
            "type": "job.cancelled",
            "timestamp": at,
            "data": {
                "id": job_hex,
                "type": "bench.noop",
                "status": "cancelled",
                "progress": 0.0,
                "message": None,
                "params": {"i": 1},
                "priority": "normal",
                "result": None,
                "error": None,
                "attempts": 0,
                "max_attempts": 3,
                "webhook_url": "http://127.0.0.1:8000/hook",
                "created_at": at,
                "started_at": None,
                "finished_at": at,
                "status_url": f"/v1/jobs/{job_hex}",
                "events_url": f"/v1/jobs/{job_hex}/events",
            },
        }
    )


async def send(url: str, n: int, concurrency: int, secret: str) -> dict[str, float | int]:
    remaining = iter(range(n))  # shared by the senders: each takes the next message
    ok = errors = 0

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal ok, errors
        for _ in remaining:
            job_id = uuid.uuid4()
            body = sample_body(job_id)
            headers = signing.headers([secret], signing.message_id(job_id, 2), int(time.time()), body)
            try:
                async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        ok += 1
                    else:
                        errors += 1
            except (aiohttp.ClientError, OSError):
                errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(sender(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    return {"ok": ok, "errors": errors, "elapsed_s": elapsed, "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description="webhook receiver and bare sender, for bench.webhooks")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("--port", type=int, required=True)
    post = commands.add_parser("send")
    post.add_argument("--url", required=True)
    post.add_argument("--n", type=int, required=True)
    post.add_argument("--concurrency", type=int, required=True)
    post.add_argument("--secret", required=True, help="a whsec_ secret to sign with")
    args = parser.parse_args()

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.command == "serve":
        web.run_app(receiver_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)
    else:
        result = asyncio.run(send(args.url, args.n, args.concurrency, args.secret))
        sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
