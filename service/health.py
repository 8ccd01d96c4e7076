"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from jobwire import db
from jobwire.logs import get_logger
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from service import metrics, stats
from service.http import json_response
from service.problems import PROBLEM_JSON
from service.state import DB, KEYS, REDIS, STATS

log = get_logger("jobwire.api")
routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _check_db(request: web.Request) -> bool:
    try:
        async with asyncio.timeout(2):
            await request.app[DB].fetchval("SELECT 1")
    except db.UNAVAILABLE as exc:
        # the reason goes to the log: it can name hosts, ports and users, which /readyz (often
        # public, for load balancers) must not tell
        log.warning("readiness: postgresql unavailable", error=repr(exc))
        return False
    return True


async def _check_redis(request: web.Request) -> bool:
    try:
        async with asyncio.timeout(2):
            await request.app[REDIS].ping()
    except (*REDIS_UNAVAILABLE, TimeoutError) as exc:  # type: ignore[misc]
        log.warning("readiness: redis unavailable", error=repr(exc))
        return False
    return True


@routes.get("/metrics")
async def prometheus(request: web.Request) -> web.Response:
    with contextlib.suppress(*db.UNAVAILABLE):
        await request.app[STATS].get(None)  # refreshes the queue gauges
        await stats.refresh_storage(request.app[DB])
    with contextlib.suppress(*REDIS_UNAVAILABLE):
        await metrics.JOB_OUTCOMES.refresh(request.app[REDIS], request.app[KEYS])
    return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    pg_up, redis_up = await asyncio.gather(_check_db(request), _check_redis(request))
    backends = {"postgresql": "ok" if pg_up else "unavailable", "redis": "ok" if redis_up else "unavailable"}
    if pg_up and redis_up:
        return json_response({"status": "ready", **backends})
    down = " and ".join(name for name, state in backends.items() if state != "ok")
    # a problem document (as every 503 of the api), with each backend's state as extension members
    body = {
        "type": "urn:jobwire:problem:unavailable",
        "title": "Service Unavailable",
        "status": 503,
        "detail": f"not ready: {down} unavailable",
        "instance": request.path,
        **backends,
    }
    return web.Response(
        status=503, body=orjson.dumps(body), content_type=PROBLEM_JSON, headers={"Retry-After": "5"}
    )
