"""Bearer API keys on every /v1 route. A key belongs to one tenant; admin keys see every tenant."""

from __future__ import annotations

import time

from aiohttp import web

from common import apikeys
from common.apikeys import Principal
from service.limits import limit_key
from service.problems import Handler, Problem
from service.revocation import REVOCATIONS
from service.state import DB, PRINCIPAL, RATE_LIMITER, TOKENS

# Lookups are cached briefly so that a busy client costs one indexed query per key per half minute,
# not one per request. A revoked key therefore keeps working for up to this long.
CACHE_TTL_S = 30.0
NEGATIVE_TTL_S = 2.0
CACHE_MAX = 10_000


class KeyCache:
    def __init__(self) -> None:
        self._entries: dict[bytes, tuple[Principal | None, float]] = {}

    def get(self, digest: bytes) -> tuple[bool, Principal | None]:
        entry = self._entries.get(digest)
        if entry is None or entry[1] < time.monotonic():
            return False, None
        return True, entry[0]

    def put(self, digest: bytes, principal: Principal | None) -> None:
        if len(self._entries) >= CACHE_MAX:
            self._entries.clear()
        ttl = CACHE_TTL_S if principal is not None else NEGATIVE_TTL_S
        self._entries[digest] = (principal, time.monotonic() + ttl)


KEY_CACHE = web.AppKey("key_cache", KeyCache)


def _unauthorized(detail: str, *, invalid: bool) -> Problem:
    challenge = 'Bearer realm="jobwire"' + (', error="invalid_token"' if invalid else "")
    return Problem(401, detail, slug="unauthorized", headers={"WWW-Authenticate": challenge})


async def authenticate(request: web.Request, key: str) -> Principal:
    cache = request.app[KEY_CACHE]
    digest = apikeys.hash_key(key)
    hit, principal = cache.get(digest)
    if not hit:
        async with request.app[DB].acquire() as conn:
            principal = await apikeys.lookup(conn, key)
        cache.put(digest, principal)
    if principal is None or request.app[REVOCATIONS].is_revoked(principal.key_id):
        raise _unauthorized("the API key is not valid", invalid=True)
    return principal


def bearer_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise _unauthorized("use `Authorization: Bearer <api key>`", invalid=True)
    return credentials.strip()


def is_stream_path(path: str) -> bool:
    """Routes a browser opens with EventSource or WebSocket, which cannot send headers."""
    return path in ("/v1/events", "/v1/ws") or (path.startswith("/v1/jobs/") and path.endswith("/events"))


async def _query_token(request: web.Request, token: str) -> Principal:
    if token.startswith(apikeys.KEY_PREFIX):
        return await authenticate(request, token)
    granted = request.app[TOKENS].verify(token)
    if granted is None:
        raise _unauthorized(
            "the stream token is invalid or expired; read the job again for a fresh one", invalid=True
        )
    job_id, tenant, key_id = granted
    if not await request.app[REVOCATIONS].key_is_live(request.app[DB], key_id):
        raise _unauthorized("the key that issued this stream token was revoked", invalid=True)
    return Principal(tenant=tenant, is_admin=False, key_id=key_id, job_scope=job_id)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v1/"):
        return await handler(request)
    key = bearer_key(request)
    if key is not None:
        request[PRINCIPAL] = await authenticate(request, key)
    elif is_stream_path(request.path) and request.query.get("token"):
        request[PRINCIPAL] = await _query_token(request, request.query["token"])
    else:
        raise _unauthorized(
            "this endpoint needs an API key: `Authorization: Bearer <api key>`", invalid=False
        )
    request.app[RATE_LIMITER].check(limit_key(request[PRINCIPAL]))
    return await handler(request)
