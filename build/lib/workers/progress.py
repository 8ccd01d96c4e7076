"""Coalesced progress: what `ctx.progress()` feeds on a worker."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable

from jobwire.logs import get_logger

log = get_logger("jobwire.progress")

ProgressWriter = Callable[[float, str | None], Awaitable[None]]


class ProgressReporter:
    """Coalesces progress: a job may call `progress()` thousands of times a second; at most one
    write (an UPDATE, an event row and a publish) goes out per interval, always carrying the latest
    value, and `close()` writes the last value before the job's terminal event."""

    def __init__(self, write: ProgressWriter, interval_s: float) -> None:
        self._write = write
        self._interval_s = interval_s
        self._pending: tuple[float, str | None] | None = None
        self._written: tuple[float, str | None] = (0.0, None)
        self._high_water = 0.0
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def current(self) -> float:
        return self._high_water

    def report(self, pct: float, message: str | None = None) -> None:
        if isinstance(pct, bool) or not isinstance(pct, int | float) or math.isnan(pct):
            raise ValueError(f"progress must be a number from 0 to 100, not {pct!r}")
        if not 0 <= pct <= 100:
            raise ValueError(f"progress must be from 0 to 100, not {pct}")
        if message is not None and not isinstance(message, str):
            raise ValueError("a progress message must be a string")
        # progress never goes backwards within an attempt; the message may still change
        self._high_water = max(self._high_water, float(pct))
        self._pending = (self._high_water, message[:1000] if message else message)
        self._wake.set()
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()
            # rest between writes; close() cuts the rest short, never a write (a write cancelled
            # after its commit would lose the event's publish)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self._interval_s)

    async def _flush(self) -> None:
        pending = self._pending
        if pending is None or pending == self._written:
            self._pending = None
            return
        try:
            await self._write(*pending)
        except Exception as exc:  # a missed progress write must not fail the job: the next one carries it
            log.warning("progress write failed", error=str(exc))
            return
        self._written = pending
        if self._pending is pending:
            self._pending = None

    async def close(self, *, flush: bool) -> None:
        self._closing = True
        self._closed.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if flush:
            await self._flush()
