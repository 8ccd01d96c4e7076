"""service/problems.py: how an outage is answered. PostgreSQL's and Redis's "unreachable" errors are
two disjoint sets, so a 503 always names the backend that failed."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobwire import db, redis_client
from service.problems import problem_middleware
from tests.conftest import free_port


def test_the_two_backends_never_share_an_error_class() -> None:
    for ours in db.UNAVAILABLE:
        for theirs in redis_client.UNAVAILABLE:
            assert not issubclass(ours, theirs) and not issubclass(theirs, ours), (ours, theirs)


# what each driver raises when its server is gone (asyncpg passes the socket's errors through;
# redis-py wraps them in its own)
DATABASE_ERRORS: list[BaseException] = [
    ConnectionRefusedError(111, "Connect call failed"),
    OSError(113, "No route to host"),
    TimeoutError(),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.TooManyConnectionsError("too many clients"),
    asyncpg.InterfaceError("connection is closed"),
]
REDIS_ERRORS: list[BaseException] = [
    RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    RedisTimeoutError("Timeout reading from socket"),
]


@pytest.mark.parametrize(
    ("error", "blamed"),
    [(e, "the database") for e in DATABASE_ERRORS] + [(e, "redis") for e in REDIS_ERRORS],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v,
)
async def test_a_503_names_the_backend_that_failed(error: BaseException, blamed: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        raise error

    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with httpx.AsyncClient() as client:
            r = await client.get(f"http://127.0.0.1:{port}/")
    finally:
        await runner.cleanup()
    assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
    assert r.json()["detail"].startswith(f"{blamed} is unreachable"), r.json()
