"""RFC 9457 problem details: every 4xx and 5xx answer of the api, never HTML, never a stack trace."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from jobwire import db
from jobwire.errors import JobwireError
from jobwire.logs import get_logger
from jobwire.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE

log = get_logger("jobwire.api")

PROBLEM_JSON = "application/problem+json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Problem(JobwireError):
    """Raise from a handler to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.title = title or _TITLES.get(status, "Error")
        self.errors = errors
        self.headers = dict(headers or {})

    def response(self, instance: str | None = None) -> web.Response:
        body: dict[str, Any] = {
            "type": f"urn:jobwire:problem:{self.slug}" if self.slug else "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors is not None:
            body["errors"] = self.errors
        return web.Response(
            status=self.status, body=orjson.dumps(body), content_type=PROBLEM_JSON, headers=self.headers
        )


def validation_problem(
    exc: ValidationError, *, prefix: Iterable[str | int] = ("body",), detail: str | None = None
) -> Problem:
    """A 422 listing every error pydantic found, located under `prefix`."""
    errors = [{"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]} for err in exc.errors()]
    return _validation(
        detail or "the request is well-formed but some fields are invalid; see `errors`", errors
    )


def invalid(
    loc: Iterable[str | int], detail: str, *, msg: str | None = None, type_: str = "value_error"
) -> Problem:
    """A 422 for one invalid value at `loc` (e.g. `["query", "limit"]`): `detail` explains it to a
    person, `msg` (the detail by default) and `type_` describe the error in `errors`."""
    return _validation(detail, [{"loc": list(loc), "msg": msg or detail, "type": type_}])


def _validation(detail: str, errors: list[dict[str, Any]]) -> Problem:
    # one type of problem, one title (RFC 9457 §3.1.3: the title does not change between occurrences)
    return Problem(422, detail, slug="validation", title="Validation failed", errors=errors)


def unavailable(what: str, retry_after: int = 5) -> Problem:
    return Problem(
        503,
        f"{what} is unreachable right now; try again shortly",
        slug="unavailable",
        headers={"Retry-After": str(retry_after)},
    )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response(request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
        detail = {
            404: f"no route {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
            413: f"the request body is larger than the limit of {request.client_max_size} bytes",
        }.get(exc.status, exc.text or exc.reason)
        return Problem(exc.status, detail, headers=headers).response(request.path)
    except REDIS_UNAVAILABLE as exc:
        log.warning("redis unavailable", error=repr(exc), path=request.path)
        return unavailable("redis").response(request.path)
    except db.UNAVAILABLE as exc:
        log.warning("database unavailable", error=repr(exc), path=request.path)
        return unavailable("the database").response(request.path)
    except Exception:
        log.exception("unhandled error", path=request.path, method=request.method)
        return Problem(500, "an internal error occurred; it has been logged").response(request.path)
