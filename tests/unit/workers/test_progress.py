"""workers/progress.py: coalesced progress."""

from __future__ import annotations

import asyncio

import pytest

from workers.progress import ProgressReporter


async def test_progress_reporter_coalesces_and_never_goes_backwards() -> None:
    writes: list[tuple[float, str | None]] = []

    async def write(pct: float, message: str | None) -> None:
        writes.append((pct, message))
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
