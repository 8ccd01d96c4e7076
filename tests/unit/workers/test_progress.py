"""workers/progress.py: coalesced progress, and the hand-over of the last value to the completion."""

from __future__ import annotations

import asyncio

import pytest

from workers.progress import ProgressReporter, Update


async def test_progress_reporter_coalesces_and_never_goes_backwards() -> None:
    writes: list[tuple[float, str | None]] = []

    async def write(update: Update) -> None:
        assert update.take()
        writes.append((update.pct, update.message))
        await asyncio.sleep(0.01)

    reporter = ProgressReporter(write, interval_s=0.05)
    for i in range(1, 5001):
        reporter.report(i / 50, f"n={i}")
        if i % 1000 == 0:
            await asyncio.sleep(0.02)
    reporter.report(10, "a late, lower value")  # ignored for the number, kept for the message
    await reporter.close(flush=True)
    assert len(writes) < 20
    assert writes[-1] == (100.0, "a late, lower value")
    assert [w[0] for w in writes] == sorted(w[0] for w in writes)
    for bad in (-1, 101, float("nan"), True, "50"):
        with pytest.raises(ValueError):
            reporter.report(bad)  # type: ignore[arg-type]


class Flusher:
    """A write that waits, like the group commit, until a flush takes the update (`flush()`)."""

    def __init__(self) -> None:
        self.queued: list[tuple[Update, asyncio.Future[None]]] = []
        self.written: list[tuple[float, str | None]] = []

    async def write(self, update: Update) -> None:
        done = asyncio.get_running_loop().create_future()
        self.queued.append((update, done))
        await done

    async def flush(self, *, commit_delay_s: float = 0.0) -> None:
        batch, self.queued = self.queued, []
        taken = [(u, f) for u, f in batch if u.take()]
        await asyncio.sleep(commit_delay_s)
        self.written += [(u.pct, u.message) for u, _ in taken]
        for _, done in batch:
            done.set_result(None)


async def turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_value_reported_just_before_the_end_is_handed_to_the_completion_unwritten() -> None:
    flusher = Flusher()
    reporter = ProgressReporter(flusher.write, interval_s=10)
    reporter.report(100, "done")  # and the job returns at once
    assert await reporter.last() == (100.0, "done")
    assert flusher.queued == [] and flusher.written == []  # no write was even queued


async def test_last_takes_back_a_write_no_flush_has_taken() -> None:
    flusher = Flusher()
    reporter = ProgressReporter(flusher.write, interval_s=10)
    reporter.report(40, "first")
    await turns(3)  # the reporter's write is queued, not yet taken
    assert len(flusher.queued) == 1
    reporter.report(100, "last")
    assert await reporter.last() == (100.0, "last")  # handed to the completion
    await flusher.flush()
    assert flusher.written == []  # the withdrawn write is never written twice


async def test_last_waits_for_a_write_already_taken_and_keeps_the_newer_value() -> None:
    flusher = Flusher()
    reporter = ProgressReporter(flusher.write, interval_s=10)
    reporter.report(40, "first")
    await turns(3)
    flushing = asyncio.ensure_future(flusher.flush(commit_delay_s=0.05))
    await asyncio.sleep(0)  # the flush took it and is committing
    reporter.report(70, "newer")
    last = asyncio.ensure_future(reporter.last())
    await asyncio.sleep(0.01)
    assert not last.done()  # its event must come before the completion's
    await flushing
    assert flusher.written == [(40.0, "first")]
    assert await last == (70.0, "newer")


async def test_last_hands_back_nothing_when_everything_was_written() -> None:
    flusher = Flusher()
    reporter = ProgressReporter(flusher.write, interval_s=0)
    reporter.report(50)
    await turns(3)
    await flusher.flush()
    await asyncio.sleep(0.01)
    assert flusher.written == [(50.0, None)]
    assert await reporter.last() is None
    assert await ProgressReporter(flusher.write, interval_s=0).last() is None  # never reported
