"""Bearer API keys on every /v1 route. A key belongs to one tenant; admin keys see every tenant."""

from __future__ import annotations

import asyncio
import ipaddress
from uuid import UUID

from aiohttp import web

from jobwire import apikeys, batchstore, jobstore
from jobwire.apikeys import Principal
from jobwire.tokens import Grant
from service.limits import FailureLimiter, limit_key
from service.problems import Handler, Problem
from service.revocation import REVOCATIONS
from service.state import DB, PRINCIPAL, RATE_LIMITER, SETTINGS, TOKENS
from service.ttlcache import TTLCache

# Lookups are cached briefly so that a busy client costs one indexed query per key per half minute,
# not one per request. A revoked key therefore keeps working for up to this long.
CACHE_TTL_S = 30.0
NEGATIVE_TTL_S = 2.0
CACHE_MAX = 10_000
# refused keys have a table of their own, so that a flood of bad keys cannot evict the good ones
NEGATIVE_CACHE_MAX = 1_000


class KeyCache:
    def __init__(self, size: int = CACHE_MAX, negative_size: int = NEGATIVE_CACHE_MAX) -> None:
        self._valid: TTLCache[bytes, Principal] = TTLCache(size)
        self._refused: TTLCache[bytes, None] = TTLCache(negative_size)
        # keys being looked up right now, each by one request that the others with it wait on
        self.inflight: dict[bytes, asyncio.Future[Principal | None]] = {}

    def get(self, digest: bytes) -> tuple[bool, Principal | None]:
        """(True, principal) for a cached key, (True, None) for a key refused moments ago,
        (False, None) when it has to be looked up."""
        valid = self._valid.get(digest)
        if valid is not None:
            return True, valid[0]
        return self._refused.get(digest) is not None, None

    def put(self, digest: bytes, principal: Principal | None) -> None:
        if principal is not None:
            self._refused.pop(digest)
            self._valid.put(digest, principal, CACHE_TTL_S)
        else:
            self._valid.pop(digest)
            self._refused.put(digest, None, NEGATIVE_TTL_S)


KEY_CACHE = web.AppKey("key_cache", KeyCache)
AUTH_FAILURES = web.AppKey("auth_failures", FailureLimiter)


def _unauthorized(detail: str, *, invalid: bool) -> Problem:
    challenge = 'Bearer realm="jobwire"' + (', error="invalid_token"' if invalid else "")
    return Problem(401, detail, slug="unauthorized", headers={"WWW-Authenticate": challenge})


def client_address(request: web.Request) -> str:
    """Who failed authentication, for AUTH_FAILURES: the connection's peer; behind a proxy listed in
    JOBWIRE_TRUSTED_PROXIES, the nearest X-Forwarded-For hop that is not such a proxy (a client can
    write anything in that header, so it is read only from proxies that are trusted to set it)."""
    trusted = request.app[SETTINGS].trusted_proxies
    address = _ip(request.remote)
    if address is None:
        return request.remote or ""  # not an IP connection (a unix socket)
    if trusted:
        hops = ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")
        for hop in reversed(hops):
            if not any(address in net for net in trusted):
                break
            forwarded = _ip(hop.strip())
            if forwarded is None:
                break  # a garbled hop: the last address known good stands
            address = forwarded
    if address.version == 6:
        # one host holds a whole /64 and can change address within it at will
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def refuse(request: web.Request, problem: Problem) -> Problem:
    """Count a failed authentication against the client's address and return the problem to raise:
    the 401 given, or a 429 once the address is over JOBWIRE_AUTH_FAILURE_LIMIT."""
    address = client_address(request)
    failures = request.app[AUTH_FAILURES]
    failures.check(address)
    failures.failed(address)
    return problem


async def authenticate(request: web.Request, key: str) -> Principal:
    cache = request.app[KEY_CACHE]
    digest = apikeys.hash_key(key)
    hit, principal = cache.get(digest)
    if principal is not None:
        if request.app[REVOCATIONS].is_revoked(principal.key_id):
            # revoked on some api since it was cached here: refused now, not when the cache expires
            raise _unauthorized("the API key is not valid", invalid=True)
        return principal  # a key in use is never throttled, whatever its address did
    refused = _unauthorized("the API key is not valid", invalid=True)
    if hit or not apikeys.well_formed(key):
        # refused moments ago, or never issued in this form: no lookup
        raise refuse(request, refused)
    pending = cache.inflight.get(digest)
    if pending is not None:
        # the same key is being looked up for another request: share that answer, so that a client
        # sending many requests at once with a key not cached yet costs one lookup and one charge
        principal = await asyncio.shield(pending)
        if principal is None:
            raise refused
        return principal
    # the lookup is charged as a failure before it runs (and refunded if the key is found), so that
    # an address past its limit costs no lookup, concurrent guesses included
    address = client_address(request)
    failures = request.app[AUTH_FAILURES]
    failures.check(address)
    failures.failed(address)
    principal = await _lookup(request, cache, digest, key)
    if principal is None:
        raise refused
    failures.refund(address)
    return principal


async def _lookup(request: web.Request, cache: KeyCache, digest: bytes, key: str) -> Principal | None:
    """Look a key up, with concurrent requests for the same key waiting on this one lookup."""
    pending: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
    cache.inflight[digest] = pending
    try:
        async with request.app[DB].acquire() as conn:
            principal = await apikeys.lookup(conn, key)
    except asyncio.CancelledError:
        pending.cancel()
        raise
    except BaseException as exc:
        pending.set_exception(exc)  # the waiters answer as this request does (a 503, say)
        pending.exception()  # retrieved: with no waiter, asyncio must not report it as lost
        raise
    finally:
        del cache.inflight[digest]
    cache.put(digest, principal)
    pending.set_result(principal)
    return principal


def bearer_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise refuse(request, _unauthorized("use `Authorization: Bearer <api key>`", invalid=True))
    return credentials.strip()


def is_stream_path(path: str) -> bool:
    """Routes a browser opens with EventSource or WebSocket, which cannot send headers."""
    return path in ("/v1/events", "/v1/ws") or (
        path.startswith(("/v1/jobs/", "/v1/batches/")) and path.endswith("/events")
    )


async def _query_token(request: web.Request, token: str) -> Principal:
    if token.startswith(apikeys.KEY_PREFIX):
        return await authenticate(request, token)
    granted = request.app[TOKENS].verify(token)
    if granted is None:
        raise refuse(
            request,
            _unauthorized(
                "the stream token is invalid or expired; read the job again for a fresh one", invalid=True
            ),
        )
    if not await request.app[REVOCATIONS].key_is_live(request.app[DB], granted.key_id):
        raise refuse(
            request, _unauthorized("the key that issued this stream token was revoked", invalid=True)
        )
    if granted.expired and not await _job_still_streams(request, granted):
        raise refuse(
            request,
            _unauthorized("the stream token has expired; read the job again for a fresh one", invalid=True),
        )
    return Principal(tenant=granted.tenant, is_admin=False, key_id=granted.key_id, job_scope=granted.job_id)


async def _job_still_streams(request: web.Request, granted: Grant) -> bool:
    try:
        job_id = UUID(granted.job_id)
    except ValueError:
        return False
    pool, ttl_s = request.app[DB], request.app[TOKENS].ttl_s
    if request.path.startswith("/v1/batches/"):
        # a batch's token (its events_url): good while the batch runs, and a while after it ended
        return await batchstore.stream_open(pool, job_id, granted.tenant, ttl_s)
    return await jobstore.stream_open(pool, job_id, granted.tenant, ttl_s)


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
