"""CORS (JOBWIRE_CORS_ORIGINS): pages on the listed origins may call the REST API, follow SSE
streams and open the WebSocket. Preflights are answered here, before authentication (a browser
sends them without credentials); every other answer, streamed ones included, gets its
Access-Control-* headers when it is prepared, so problem documents carry them too and a page can
read why it was refused."""

from __future__ import annotations

from aiohttp import web

from service.problems import Handler, Problem

ALLOW_METHODS = "GET, POST, PATCH, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, Prefer, If-None-Match, Last-Event-ID"
EXPOSE_HEADERS = "Location, ETag, Retry-After, Idempotent-Replayed, Preference-Applied"
# how long a browser may reuse a preflight's answer
MAX_AGE_S = 600


class Cors:
    def __init__(self, origins: list[str], public_url: str | None) -> None:
        self.enabled = bool(origins)
        self.any = "*" in origins
        self.origins = frozenset(origins)
        self._public_origin = _origin_of(public_url) if public_url else None

    def allows(self, origin: str) -> bool:
        return self.enabled and (self.any or origin in self.origins)

    def websocket_allowed(self, request: web.Request) -> bool:
        """A WebSocket carries no CORS: the Origin is checked on the upgrade when a list is set.
        Clients that are not browsers send no Origin; pages of the api itself (the dashboard) are
        same-origin."""
        origin = request.headers.get("Origin")
        if not self.enabled or origin is None or self.allows(origin):
            return True
        return origin in (f"{request.scheme}://{request.host}", self._public_origin)


def _origin_of(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


CORS = web.AppKey("cors", Cors)


@web.middleware
async def preflight_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    cors = request.app[CORS]
    origin = request.headers.get("Origin")
    if (
        not cors.enabled
        or request.method != "OPTIONS"
        or origin is None
        or "Access-Control-Request-Method" not in request.headers
    ):
        return await handler(request)
    if not cors.allows(origin):
        raise Problem(
            403, f"the origin {origin} is not allowed (JOBWIRE_CORS_ORIGINS)", slug="origin-not-allowed"
        )
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": str(MAX_AGE_S),
            "Vary": "Origin",
        },
    )


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the headers of an actual (not preflight) cross-origin answer."""
    cors = request.app[CORS]
    origin = request.headers.get("Origin")
    if not cors.enabled or origin is None or "Access-Control-Allow-Origin" in response.headers:
        return
    # the answer depends on Origin: caches must not hand one origin's answer to another
    response.headers.add("Vary", "Origin")
    if cors.allows(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
