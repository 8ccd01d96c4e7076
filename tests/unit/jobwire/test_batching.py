"""Group commit (jobwire/batching.py): batches grow under load, and every caller gets its own answer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest

from jobwire.batching import Batcher


class Recorder:
    """A flush that doubles numbers, fails the item -1 alone, fails the whole batch when it holds
    -2, and takes `delay_s` (a commit)."""

    def __init__(self, delay_s: float = 0.01) -> None:
        self.delay_s = delay_s
        self.batches: list[list[int]] = []

    async def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await asyncio.sleep(self.delay_s)
        if -2 in items:
            raise ConnectionError("the whole batch failed")
        return [ValueError("bad item") if i == -1 else i * 2 for i in items]


@contextlib.asynccontextmanager
async def running(batcher: Batcher[int, int]) -> AsyncIterator[Batcher[int, int]]:
    task = asyncio.ensure_future(batcher.run())
    try:
        yield batcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_lone_item_is_flushed_at_once_and_batches_grow_under_load() -> None:
    flush = Recorder(delay_s=0.05)
    async with running(Batcher(flush, max_in_flight=1)) as batcher:
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.01)  # the first batch is being "committed"
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(2, 101)]
        assert await first == 2
        assert await asyncio.gather(*rest) == [i * 2 for i in range(2, 101)]
    assert flush.batches == [[1], list(range(2, 101))]


async def test_batches_are_capped() -> None:
    flush = Recorder(delay_s=0.01)
    async with running(Batcher(flush, max_batch=30, max_in_flight=2)) as batcher:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(100)))
    assert results == [i * 2 for i in range(100)]
    assert max(len(b) for b in flush.batches) == 30
    assert sorted(i for b in flush.batches for i in b) == list(range(100))


async def test_one_bad_item_fails_alone() -> None:
    async with running(Batcher(Recorder())) as batcher:
        results = await asyncio.gather(*(batcher.submit(i) for i in (1, -1, 3)), return_exceptions=True)
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], ValueError)


async def test_a_failed_flush_answers_every_caller_with_its_error() -> None:
    async with running(Batcher(Recorder())) as batcher:
        results = await asyncio.gather(*(batcher.submit(i) for i in (1, -2, 3)), return_exceptions=True)
        # the batcher goes on after a failed batch
        assert await batcher.submit(5) == 10
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_a_caller_that_gave_up_does_not_disturb_the_others() -> None:
    flush = Recorder(delay_s=0.05)
    async with running(Batcher(flush)) as batcher:
        busy = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(batcher.submit(1))
        kept = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0)
        gone.cancel()
        assert await busy == 0 and await kept == 4
    assert flush.batches == [[0], [2]]  # the cancelled item was never flushed


async def test_stopping_answers_what_is_still_queued() -> None:
    flush = Recorder(delay_s=0.05)
    batcher: Batcher[int, int] = Batcher(flush)
    task = asyncio.ensure_future(batcher.run())
    in_flight = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await in_flight == 2  # a batch in flight is finished
    with pytest.raises(RuntimeError, match="stopped"):
        await queued
