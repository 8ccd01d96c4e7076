"""jobwire.periodic: a loop that outlives its failing steps."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest

from jobwire import periodic
from jobwire.logs import get_logger

pytestmark = pytest.mark.usefixtures("restore_logging")


async def test_a_step_runs_every_interval_and_failures_do_not_end_the_loop(
    capfd: pytest.CaptureFixture[str],
) -> None:
    outcomes: list[BaseException | None] = [
        ConnectionRefusedError("database down"),  # one of db.UNAVAILABLE: skipped
        ValueError("a bug"),  # logged with its traceback
        None,
        None,
    ]
    ran: list[float] = []

    async def step() -> None:
        ran.append(asyncio.get_running_loop().time())
        failure = outcomes[len(ran) - 1] if len(ran) <= len(outcomes) else None
        if failure is not None:
            raise failure
        if len(ran) == len(outcomes):
            done.set()

    done = asyncio.Event()
    loop = asyncio.create_task(periodic.every(0.02, step, what="test sweep", log=get_logger("jobwire.test")))
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    assert len(ran) == 4
    # ±20 % of the interval between steps, never back to back
    assert all(b - a >= 0.015 for a, b in itertools.pairwise(ran))
    out = capfd.readouterr()
    logged = out.out + out.err
    assert "test sweep skipped" in logged and "database down" in logged
    assert "test sweep failed" in logged and "ValueError: a bug" in logged
