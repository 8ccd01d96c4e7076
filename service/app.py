"""create_app(): the aiohttp application with its pools and background tasks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiohttp import web

from jobwire import batches, dependencies, expiry
from jobwire.config import Settings
from jobwire.db import create_pool
from jobwire.keys import Keys
from jobwire.logs import get_logger
from jobwire.redis_client import create_redis
from jobwire.registry import Registry, load_job_types
from jobwire.scheduler import Scheduler
from jobwire.tokens import StreamTokens
from service import batches as batch_routes
from service import bulk, dashboard, health, jobs, metrics, openapi, schedules, sse, webhooks, ws
from service.access_log import ACCESS_LOG, AccessLog
from service.auth import AUTH_FAILURES, KEY_CACHE, KeyCache, auth_middleware
from service.cors import CORS, Cors, preflight_middleware
from service.cors import add_headers as add_cors_headers
from service.http import reject_nul_middleware
from service.hub import EventHub
from service.limits import FailureLimiter, RateLimiter, StreamLimiter
from service.problems import Handler, problem_middleware
from service.revocation import REVOCATIONS, Revocations
from service.state import (
    DB,
    HUB,
    KEYS,
    PRINCIPAL,
    RATE_LIMITER,
    REDIS,
    REGISTRY,
    SCHEDULER,
    SETTINGS,
    STATS,
    STREAM_LIMITER,
    SUBMITTER,
    TOKENS,
)
from service.stats import QueueStats
from service.submitter import Submitter

# how long a stopping api waits for its background loops
STOP_TIMEOUT_S = 5.0
log = get_logger("jobwire.api")


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request metrics, and the access log's line (service/access_log.py)."""
    t0 = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - t0
        counter, histogram = metrics.request_series(request.method, _route(request), status)
        counter.inc()
        histogram.observe(elapsed)
        access_log = request.app[ACCESS_LOG]
        if access_log.enabled:
            principal = request.get(PRINCIPAL)
            access_log.record(
                request.method,
                request.path,
                status,
                round(elapsed * 1000, 2),
                principal.tenant if principal else None,
            )


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # the api's queries are single statements and managed transactions, leaving no session state:
    # no reset round trip on each release (README, Benchmarks: submission, 7 % of a request's CPU)
    app[DB] = await create_pool(settings, max_size=settings.db_pool_max, reset=False)
    app[REDIS] = create_redis(settings)
    app[STATS] = QueueStats(app[DB])
    app[SUBMITTER] = Submitter(app[DB], app[REDIS], app[KEYS])
    app[HUB] = EventHub(settings, app[KEYS])
    app[SCHEDULER] = Scheduler(
        app[DB], app[REDIS], app[KEYS], registry=app[REGISTRY], poll_s=settings.scheduler_poll_s
    )
    loop = asyncio.get_running_loop()
    tasks = [
        loop.create_task(app[HUB].run()),
        loop.create_task(app[HUB].sweep()),
        loop.create_task(app[HUB].audit(app[DB])),
        loop.create_task(app[SUBMITTER].run()),
        loop.create_task(expiry.run(app[DB], app[REDIS], app[KEYS], interval_s=settings.expiry_sweep_s)),
        loop.create_task(
            dependencies.run(app[DB], app[REDIS], app[KEYS], interval_s=settings.dependency_sweep_s)
        ),
        loop.create_task(batches.run(app[DB], app[REDIS], app[KEYS], interval_s=settings.batch_settle_s)),
        loop.create_task(app[REVOCATIONS].run(app[DB], app[HUB])),
        loop.create_task(app[SCHEDULER].run()),
    ]
    log.info("api ready", namespace=settings.namespace)
    yield
    await stop_tasks(tasks)
    app[ACCESS_LOG].flush()
    await app[REDIS].aclose()
    await app[DB].close()


async def stop_tasks(tasks: list[asyncio.Task[None]], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Cancel the background loops and wait for them, cancelling again those that absorbed a cancel
    (on Python 3.11, redis-py's asyncio.wait_for returns instead of raising when a cancel lands as
    a write completes), so that a stop never hangs; past `timeout_s`, the stragglers are left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = {task for task in tasks if not task.done()}
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(0.2, max(0.0, deadline - loop.time())))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("a background task failed", task=task.get_name(), error=repr(task.exception()))
    if pending:
        log.warning("background tasks did not stop in time", tasks=[t.get_name() for t in pending])


async def _end_streams(app: web.Application) -> None:
    # runs when the server stops accepting, before it waits for handlers: streams end at once
    # (clients reconnect to another api with Last-Event-ID) instead of holding the shutdown
    app[HUB].close_all()


def create_app(settings: Settings, registry: Registry | None = None) -> web.Application:
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            observe_middleware,
            problem_middleware,
            preflight_middleware,
            reject_nul_middleware,
            auth_middleware,
        ],
    )
    app[SETTINGS] = settings
    app[KEYS] = Keys(settings.namespace)
    app[REGISTRY] = registry or load_job_types(settings.job_modules)
    app[TOKENS] = StreamTokens(settings.require_secret_key(), settings.stream_token_ttl_s)
    app[KEY_CACHE] = KeyCache()
    app[CORS] = Cors(settings.cors_origins, settings.public_url)
    app[AUTH_FAILURES] = FailureLimiter(settings.auth_failure_limit, settings.auth_failure_window_s)
    app[REVOCATIONS] = Revocations()
    app[ACCESS_LOG] = AccessLog(settings.access_log)
    app[RATE_LIMITER] = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app[STREAM_LIMITER] = StreamLimiter(settings.max_streams_per_key)
    app.cleanup_ctx.append(_resources)
    app.on_shutdown.append(_end_streams)
    app.on_response_prepare.append(add_cors_headers)
    app.add_routes(health.routes)
    # before jobs: /v1/jobs/bulk is not a job id
    app.add_routes(bulk.routes)
    app.add_routes(jobs.routes)
    app.add_routes(batch_routes.routes)
    app.add_routes(sse.routes)
    app.add_routes(ws.routes)
    app.add_routes(webhooks.routes)
    app.add_routes(schedules.routes)
    app.add_routes(openapi.routes)
    app.add_routes(dashboard.routes)
    return app
