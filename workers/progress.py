"""Coalesced progress: what `ctx.progress()` feeds on a worker."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from jobwire.logs import get_logger

log = get_logger("jobwire.progress")


@dataclass(eq=False, slots=True)
class Update:
    """One progress value on its way to PostgreSQL. Either a flush takes it (and writes it) or the
    job's completion withdraws it (and writes it itself), never both: whichever comes first wins."""

    pct: float
    message: str | None
    taken: bool = False
    withdrawn: bool = False

    def take(self) -> bool:
        """For the flush about to write it: False when it was withdrawn."""
        if self.withdrawn:
            return False
        self.taken = True
        return True

    def withdraw(self) -> bool:
        """For the completion: False when a flush already took it (then wait for that write)."""
        if self.taken:
            return False
        self.withdrawn = True
        return True


ProgressWriter = Callable[[Update], Awaitable[object]]


class ProgressReporter:
    """Coalesces progress: a job may call `progress()` thousands of times a second; at most one
    write (an UPDATE, an event row and a publish, shared with other jobs' writes) goes out per
    interval, always carrying the latest value. At the end, `close()` writes the last value before
    the job's terminal event, or `last()` hands it to the completion, which writes it with itself."""

    def __init__(self, write: ProgressWriter, interval_s: float) -> None:
        self._write = write
        self._interval_s = interval_s
        self._pending: tuple[float, str | None] | None = None
        self._written: tuple[float, str | None] = (0.0, None)
        self._in_flight: Update | None = None
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
        while True:
            await self._wake.wait()
            # one turn of the loop first: a job that reports and ends at once hands its value to
            # its completion (`last`) without a write that would only be withdrawn
            await asyncio.sleep(0)
            if self._closing:  # the end writes what is left
                return
            self._wake.clear()
            await self._flush()
            # rest between writes; the end cuts the rest short, never a write (a write cancelled
            # after its commit would lose the event's publish)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self._interval_s)

    async def _flush(self) -> None:
        pending = self._pending
        if pending is None or pending == self._written:
            self._pending = None
            return
        update = Update(*pending)
        self._in_flight = update
        try:
            await self._write(update)
        except Exception as exc:  # a missed progress write must not fail the job: the next one carries it
            if not update.withdrawn:
                log.warning("progress write failed", error=str(exc))
            return
        finally:
            self._in_flight = None
        if update.withdrawn:  # the completion writes it
            return
        self._written = pending
        if self._pending is pending:
            self._pending = None

    def _stop(self) -> None:
        self._closing = True
        self._closed.set()
        self._wake.set()

    async def close(self, *, flush: bool) -> None:
        """Stop; with `flush`, write the last value (after any write under way) before returning."""
        self._stop()
        if self._task is not None:
            await self._task
            self._task = None
        if flush:
            await self._flush()

    async def last(self) -> tuple[float, str | None] | None:
        """Stop, and hand back the last value not yet written, for the completion to write in its
        own transaction just before itself. A write a flush has already taken is waited for (its
        event must come first); one still waiting for a flush is withdrawn and handed back."""
        self._stop()
        in_flight = self._in_flight
        if (in_flight is None or not in_flight.withdraw()) and self._task is not None:
            await self._task
        # a withdrawn write's task ends by itself once the flush passes over it
        self._task = None
        pending = self._pending
        return None if pending is None or pending == self._written else pending
