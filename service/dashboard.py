"""GET /dashboard: the live dashboard, a static page (service/dashboard/) that signs in with an API
key and reads everything else from /v1 (REST for snapshots, the WebSocket feed for live updates).

Only files that exist in the folder or its subfolders (js/ holds the page's ES modules), with a known
extension, are served: the file name comes from a listing of the folder, never from joining the
request path onto it, so there is no traversal."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from service.problems import Problem

routes = web.RouteTableDef()

DIRECTORY = Path(__file__).resolve().parent / "dashboard"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
# The page loads nothing from elsewhere, and nothing may frame it (the key is typed into it).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def assets() -> dict[str, Path]:
    """The servable files of the dashboard folder and its subfolders, by path below it ("js/api.js")."""
    if not DIRECTORY.is_dir():
        return {}
    found: dict[str, Path] = {}
    for p in DIRECTORY.rglob("*"):
        name = p.relative_to(DIRECTORY).as_posix()
        if (
            p.is_file()
            and not any(part.startswith(".") for part in name.split("/"))
            and p.suffix in CONTENT_TYPES
        ):
            found[name] = p
    return found


def _file(name: str) -> web.FileResponse:
    path = assets().get(name)
    if path is None:
        raise Problem(404, f"no dashboard file {name!r}", slug="not-found")
    headers = {**HEADERS, "Content-Type": CONTENT_TYPES[path.suffix]}
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = CSP
        headers["X-Frame-Options"] = "DENY"
    return web.FileResponse(path, headers=headers)


@routes.get("/dashboard")
async def index(request: web.Request) -> web.FileResponse:
    return _file("index.html")


@routes.get("/dashboard/")
async def index_slash(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect("/dashboard")


@routes.get("/dashboard/{file:.+}")
async def asset(request: web.Request) -> web.FileResponse:
    return _file(request.match_info["file"])
