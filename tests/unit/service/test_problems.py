"""service/problems.py: the problem documents, and how an outage is answered (PostgreSQL's and
Redis's "unreachable" errors are two disjoint sets, so a 503 always names the backend that failed)."""

from __future__ import annotations

import asyncpg
import httpx
import orjson
import pytest
from aiohttp import web
from pydantic import BaseModel, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobwire import db, redis_client
from service import schemas
from service.problems import Problem, invalid, problem_middleware, validation_problem
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


def test_invalid_is_a_422_validation_problem_for_one_value() -> None:
    problem = invalid(["query", "jobs"], "name the jobs to follow")
    body = orjson.loads(problem.response("/v1/events").body)  # type: ignore[arg-type]
    assert body == {
        "type": "urn:jobwire:problem:validation",
        "title": "Validation failed",
        "status": 422,
        "detail": "name the jobs to follow",
        "instance": "/v1/events",
        "errors": [{"loc": ["query", "jobs"], "msg": "name the jobs to follow", "type": "value_error"}],
    }
    schemas.Problem.model_validate(body)
    named = invalid(("query", "limit"), "limit must be 1-200", msg="out of range", type_="range")
    assert named.errors == [{"loc": ["query", "limit"], "msg": "out of range", "type": "range"}]


def test_one_value_and_a_model_give_the_same_kind_of_problem() -> None:
    class Body(BaseModel):
        n: int

    try:
        Body.model_validate({"n": "x"})
    except ValidationError as exc:
        from_model = validation_problem(exc)
    one = invalid(["body", "n"], "n must be a number")
    assert (from_model.status, from_model.slug, from_model.title) == (one.status, one.slug, one.title)
    assert from_model.errors is not None and from_model.errors[0]["loc"] == ["body", "n"]


def test_every_status_the_api_answers_has_its_title() -> None:
    # the statuses API.md lists, 429 (rate limits) included
    for status in (400, 401, 404, 405, 409, 413, 415, 422, 429, 500, 503):
        assert Problem(status, "x").title not in ("", "Error"), status
