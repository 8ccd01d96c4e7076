"""A real webhook receiver for the tests: an aiohttp server on a free port that records every request
and answers from a script (a status, or a handler for slow, huge or redirecting answers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.conftest import free_port

Behaviour = int | Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.requests: list[Received] = []
        # answers per path, consumed in order; `default` once a path's script is used up
        self.script: dict[str, list[Behaviour]] = {}
        self.default: Behaviour = 200
        self.in_flight = 0
        self.max_in_flight: dict[str, int] = {}
        self._in_flight_by_path: dict[str, int] = {}
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def on(self, path: str, *behaviours: Behaviour) -> str:
        self.script.setdefault(path, []).extend(behaviours)
        return self.url + path

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Received(request.path, {k.lower(): v for k, v in request.headers.items()}, body))
        script = self.script.get(request.path)
        behaviour = script.pop(0) if script else self.default
        path = request.path
        self._in_flight_by_path[path] = self._in_flight_by_path.get(path, 0) + 1
        self.max_in_flight[path] = max(self.max_in_flight.get(path, 0), self._in_flight_by_path[path])
        try:
            if isinstance(behaviour, int):
                return web.Response(status=behaviour, text="ok" if behaviour < 300 else "no")
            return await behaviour(request)
        finally:
            self._in_flight_by_path[path] -= 1


def sleep_then(seconds: float, status: int = 200) -> Behaviour:
    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(status=status)

    return handler


def answer(status: int, **headers: str) -> Behaviour:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers=headers)

    return handler
