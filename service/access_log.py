"""The access log: one `info` line per request (`method`, `path`, `status`, `duration_ms`, `tenant`)
when JOBWIRE_ACCESS_LOG is on.

It is the one line jobwire writes per request, so its cost is paid thousands of times a second. With
JSON output (the format under a process manager), a request only appends a tuple (about 0.2 µs) and
the lines are rendered with orjson and written together, one write per FLUSH_S or per MAX_PENDING
lines: about 3 µs a line in all. Through structlog, one line and one write at a time, the same
line cost 7-9 µs in-process, and the deployed api 16 % more CPU per request with it on than off
(README, Benchmarks: Cost of logging). The lines are the ones structlog would write, with the
request's own time; a line reaches the file at most FLUSH_S late, and the api flushes when it stops
(a SIGKILL loses at most FLUSH_S of access lines, never another line). With console output (a
terminal) each line goes through structlog at once, as readable text."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import BinaryIO

import orjson
from aiohttp import web

from jobwire import logs

FLUSH_S = 0.1  # how late an access line may reach the log
MAX_PENDING = 1000  # lines held at most before a write, whatever the time
LOGGER = "jobwire.access"

log = logs.get_logger(LOGGER)

# time.time(), method, path, status, duration_ms, tenant
Line = tuple[float, str, str, int, float, str | None]


class AccessLog:
    def __init__(self, enabled: bool, flush_s: float = FLUSH_S, max_pending: int = MAX_PENDING) -> None:
        # decided once, when the app is made: after logs.configure() in every process that serves
        self.enabled = enabled and logs.output.threshold <= logging.INFO
        self._out: BinaryIO | None = logs.output.json_stream
        self._flush_s = flush_s
        self._max_pending = max_pending
        self._pending: list[Line] = []
        self._timer: asyncio.TimerHandle | None = None

    def record(self, method: str, path: str, status: int, duration_ms: float, tenant: str | None) -> None:
        if not self.enabled:
            return
        if self._out is None:
            log.info(
                "request", method=method, path=path, status=status, duration_ms=duration_ms, tenant=tenant
            )
            return
        self._pending.append((time.time(), method, path, status, duration_ms, tenant))
        if len(self._pending) >= self._max_pending:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_s, self.flush)

    def flush(self) -> None:
        """Write every pending line now (the timer's call, and the api's last act when it stops)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending or self._out is None:
            return
        pending, self._pending = self._pending, []
        stamp = logs.add_timestamp.format
        # the keys in structlog's order: the call's, then event, logger, level, timestamp
        data = b"".join(
            orjson.dumps(
                {
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": duration_ms,
                    "tenant": tenant,
                    "event": "request",
                    "logger": LOGGER,
                    "level": "info",
                    "timestamp": stamp(at),
                },
                option=orjson.OPT_APPEND_NEWLINE,
            )
            for at, method, path, status, duration_ms, tenant in pending
        )
        self._out.write(data)
        self._out.flush()


ACCESS_LOG = web.AppKey("access_log", AccessLog)
