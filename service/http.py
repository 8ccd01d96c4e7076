"""Request parsing and response helpers shared by the route modules."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from jobwire import jobstore
from jobwire.registry import JobType
from jobwire.webhooks import ssrf
from service.problems import Handler, Problem, invalid, validation_problem
from service.schemas import MAX_LABEL_VALUE, MAX_LABELS, label_key_ok
from service.state import REGISTRY, SETTINGS

M = TypeVar("M", bound=BaseModel)

JSON = "application/json"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON, headers=headers)


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body, or the right problem: 415 (not JSON), 413 (too large), 400 (malformed)."""
    ctype = request.content_type
    if ctype != JSON and not (ctype.startswith("application/") and ctype.endswith("+json")):
        raise Problem(
            415,
            f"send the body as {JSON} (got {request.headers.get('Content-Type') or 'no Content-Type'})",
            slug="unsupported-media-type",
        )
    length = request.content_length
    if length is not None and length > request.client_max_size:
        raise web.HTTPRequestEntityTooLarge(max_size=request.client_max_size, actual_size=length)
    body = await request.read()  # aiohttp raises 413 past client_max_size when no length was sent
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"the body is not valid JSON: {exc}", slug="malformed-json") from None
    # PostgreSQL stores no NUL character in text or jsonb; the byte search keeps the walk off the
    # hot path
    if b"\\u0000" in body and _has_nul(parsed):
        raise _nul_problem("body")
    return parsed


def body_model(body: Any, model: type[M]) -> M:
    """A parsed JSON body as `model`, or a 422 naming every field at fault."""
    if not isinstance(body, dict):
        raise invalid(
            ["body"], "the body must be a JSON object", msg="must be an object", type_="object_type"
        )
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_problem(exc) from None


def job_params(
    request: web.Request, type_name: str, params: dict[str, Any], *, loc: Sequence[str | int] = ("body",)
) -> tuple[JobType, dict[str, Any]]:
    """The job type and its params validated by the type's model, normalised (defaults filled in) as
    they are stored, so that a job shows exactly what it runs with; a 422 at `loc` + "type" or
    "params" otherwise. For submissions and for schedules' jobs alike."""
    registry = request.app[REGISTRY]
    jt = registry.get(type_name)
    if jt is None:
        raise invalid(
            [*loc, "type"],
            f"unknown job type {type_name!r}; known types: {', '.join(registry.names())}",
            msg=f"unknown job type {type_name!r}",
            type_="unknown_type",
        )
    try:
        validated = jt.params_model.model_validate(params)
    except ValidationError as exc:
        raise validation_problem(
            exc, prefix=(*loc, "params"), detail=f"params do not match job type {type_name!r}; see `errors`"
        ) from None
    return jt, validated.model_dump(mode="json")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _nul_problem(where: str) -> Problem:
    return invalid(
        [where],
        f"the {where} contains a NUL character (\\u0000), which jobwire cannot store",
        msg="NUL characters are not allowed",
        type_="nul_character",
    )


@web.middleware
async def reject_nul_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A NUL in a query parameter would reach PostgreSQL (a filter, a tenant name) and fail there."""
    if "%00" in request.rel_url.raw_query_string:
        raise _nul_problem("query")
    return await handler(request)


# ---- destinations ----------------------------------------------------------------------------


async def check_destination(request: web.Request, url: str, *, field: str | list[str | int] = "url") -> None:
    """422 unless the (canonical) URL's host resolves to public addresses only (or private ones are
    allowed); 503 when its name could not be resolved in time. For the webhook URLs of jobs, of
    schedules' jobs and of endpoints alike. `field` is where the URL is in the body (a path for a
    nested one)."""
    try:
        await ssrf.check_url(url, allow_private=request.app[SETTINGS].webhook_allow_private)
    except ssrf.BlockedDestination as exc:
        loc = ["body", *([field] if isinstance(field, str) else field)]
        raise invalid(loc, str(exc), type_="blocked_destination") from None
    except ssrf.DestinationUnchecked as exc:
        raise Problem(
            503,
            f"could not check the webhook URL's host: {exc}; try again shortly",
            slug="unavailable",
            headers={"Retry-After": "5"},
        ) from None


# ---- numbers ---------------------------------------------------------------------------------
# Every number the api reads from a query, a header or a frame goes through `decimal`: ASCII digits
# only (str.isdigit() and int() also take "١٢" and "²"), and never more of them than the largest
# value allowed has (int() of thousands of digits is slow, and past 4300 a ValueError), so a
# hostile value is a 400/422 answer, never a 500 or a PostgreSQL overflow.

# job_events.seq, and so every event id and cursor, is a PostgreSQL integer
MAX_SEQ = 2**31 - 1


# the longest Idempotency-Key header accepted (API.md: 1-255 characters)
IDEMPOTENCY_KEY_MAX = 255


def idempotency_key(request: web.Request) -> str | None:
    """The request's `Idempotency-Key` (jobs and batches), or None; 400 when it is malformed."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise Problem(
            400,
            f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} printable characters",
            slug="invalid-idempotency-key",
        )
    return key


def decimal(text: str, *, hi: int) -> int | None:
    """`text` as an integer from 0 to `hi` when it is written in ASCII decimal digits, else None."""
    if not 0 < len(text) <= len(str(hi)) or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= hi else None


def seq_value(value: object) -> int | None:
    """An event seq sent in JSON (a number or a string of digits), or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_SEQ else None
    if isinstance(value, str):
        return decimal(value, hi=MAX_SEQ)
    return None


def query_int(request: web.Request, name: str, *, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = decimal(raw, hi=hi)
    if value is None or value < lo:
        raise invalid(
            ["query", name],
            f"query parameter {name!r} must be an integer from {lo} to {hi}",
            msg=f"must be an integer from {lo} to {hi}",
            type_="range",
        )
    return value


def query_cursor(request: web.Request) -> tuple[datetime, UUID] | None:
    """The keyset position of the `cursor` query parameter (one this API issued), or None."""
    cursor = request.query.get("cursor")
    if not cursor:
        return None
    try:
        return jobstore.decode_cursor(cursor)
    except ValueError:
        raise invalid(
            ["query", "cursor"],
            "cursor is not one returned by this API",
            msg="invalid cursor",
            type_="cursor",
        ) from None


def query_uuid(request: web.Request, name: str) -> UUID | None:
    """An id in the query (a filter such as `schedule_id`), or None when absent; 422 when it is
    not an id."""
    value = request.query.get(name)
    if not value:
        return None
    try:
        return UUID(value)
    except ValueError:
        raise invalid(
            ["query", name], f"{name} is not an id", msg="not a UUID", type_="uuid_parsing"
        ) from None


_WAIT_RE = re.compile(r"(?:^|[;,\s])wait\s*=\s*\"?([^\s;,\"]*)\"?", re.IGNORECASE)


def prefer_wait(request: web.Request, limit: int) -> int | None:
    """The `wait` preference of a `Prefer` header (RFC 7240), capped at `limit` seconds; 400 when
    its value is not a number of seconds."""
    header = request.headers.get("Prefer")
    if not header:
        return None
    match = _WAIT_RE.search(header)
    if match is None:
        return None
    text = match.group(1)
    if not text.isascii() or not text.isdigit():
        raise Problem(
            400,
            "the wait preference must be a whole number of seconds (Prefer: wait=10)",
            slug="invalid-prefer",
            errors=[{"loc": ["header", "Prefer"], "msg": "wait must be digits", "type": "int_parsing"}],
        )
    value = decimal(text, hi=limit)
    return limit if value is None else value  # digits, but more than the cap


def if_none_match(request: web.Request) -> list[str]:
    """The entity tags of If-None-Match, compared weakly (RFC 9110 §13.1.2): W/ prefixes dropped."""
    header = request.headers.get("If-None-Match")
    if not header:
        return []
    return [tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()]


def query_labels(request: web.Request) -> dict[str, str]:
    """The `label=k:v` query parameters (repeatable, all must match) as one dict; 422 naming the
    parameter for one that is not `key:value` with a valid key and value (service/schemas.py
    Labels), or a key given twice."""
    labels: dict[str, str] = {}
    for raw in request.query.getall("label", []):
        key, sep, value = raw.partition(":")
        problem = None
        if not sep:
            problem = "must be key:value"
        elif not label_key_ok(key):
            problem = "the key must be 1-63 characters of a-z, 0-9, '_', '.' and '-'"
        elif len(value) > MAX_LABEL_VALUE:
            problem = f"the value may be at most {MAX_LABEL_VALUE} characters"
        elif key in labels:
            problem = f"label {key!r} is given twice: a job has one value per key"
        if problem is not None:
            raise invalid(["query", "label"], f"label {raw[:80]!r}: {problem}", msg=problem, type_="label")
        labels[key] = value
    if len(labels) > MAX_LABELS:
        raise invalid(["query", "label"], f"at most {MAX_LABELS} labels", type_="too_long")
    return labels
