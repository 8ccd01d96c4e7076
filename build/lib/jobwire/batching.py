"""Group commit: many concurrent callers share one statement, one commit, one round trip.

A caller hands its item to a `Batcher` and waits. A flush takes everything queued so far (up to
`max_batch`), runs one function over the whole batch, and answers every caller with its own result.
A lone item is flushed at once (no timer, no added latency); under load batches grow by themselves
while earlier ones are in flight. The api's submissions and the worker's job transitions both go
through one, since on this kind of work most of the time is per round trip, not per item.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# What a flush answers for each item, in the order of the items: a result, or the exception that
# this one item gets (the others still get theirs).
Flush = Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]


class Batcher(Generic[T, R]):
    def __init__(self, flush: Flush[T, R], *, max_batch: int = 500, max_in_flight: int = 1) -> None:
        self._flush = flush
        self.max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._batches: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        """The item's result; raises what the flush raised for it (or for the whole batch)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._wake.set()
        return await future

    async def run(self) -> None:
        """Flush until cancelled; batches already in flight are finished, so no caller hangs."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    await self._slots.acquire()
                    batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                    task = asyncio.get_running_loop().create_task(self._run_batch(batch))
                    self._batches.add(task)
                    task.add_done_callback(self._batches.discard)
        finally:
            for task in list(self._batches):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # whatever was queued but never flushed: its callers are not left waiting forever
            for _, future in self._queue:
                if not future.done():
                    future.set_exception(RuntimeError("the batcher stopped before this item was flushed"))
            self._queue = []

    async def _run_batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        live = [(item, fut) for item, fut in batch if not fut.cancelled()]
        try:
            if live:
                results = await self._flush([item for item, _ in live])
                for (_, fut), result in zip(live, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(result, BaseException):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
        except BaseException as exc:
            # every waiting caller gets an answer, never a hang
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._slots.release()
