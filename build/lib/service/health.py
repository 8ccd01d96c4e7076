"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from jobwire import db
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from service import metrics
from service.http import json_response
from service.problems import Problem
from service.state import DB, KEYS, REDIS, STATS

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _check_db(request: web.Request) -> str | None:
    try:
        async with asyncio.timeout(2):
            await request.app[DB].fetchval("SELECT 1")
    except db.UNAVAILABLE as exc:
        return f"postgresql: {exc!r}"
    return None


async def _check_redis(request: web.Request) -> str | None:
    try:
        async with asyncio.timeout(2):
            await request.app[REDIS].ping()
    except (*REDIS_UNAVAILABLE, TimeoutError) as exc:  # type: ignore[misc]
        return f"redis: {exc!r}"
    return None


@routes.get("/metrics")
async def prometheus(request: web.Request) -> web.Response:
    with contextlib.suppress(*db.UNAVAILABLE):
        await request.app[STATS].get(None)  # refreshes the queue gauges
    with contextlib.suppress(*REDIS_UNAVAILABLE):
        await metrics.JOB_OUTCOMES.refresh(request.app[REDIS], request.app[KEYS])
    return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    failures = [f for f in await asyncio.gather(_check_db(request), _check_redis(request)) if f]
    if failures:
        raise Problem(503, "; ".join(failures), slug="unavailable", headers={"Retry-After": "5"})
    return json_response({"status": "ready", "postgresql": "ok", "redis": "ok"})
