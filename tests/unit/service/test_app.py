"""service/app.py: stopping the api's background loops never hangs."""

from __future__ import annotations

import asyncio
import time

from service.app import stop_tasks


async def _absorbs(cancels: int, released: asyncio.Event | None = None) -> None:
    """A loop that carries on after its first `cancels` cancels (all of them until `released`), as
    one awaiting redis-py's writes can on Python 3.11 (asyncio.wait_for returns instead of raising)."""
    absorbed = 0
    while True:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            absorbed += 1
            if absorbed > cancels and (released is None or released.is_set()):
                raise


async def _fails() -> None:
    raise RuntimeError("boom")


async def test_loops_that_absorb_a_cancel_are_cancelled_again_and_stop() -> None:
    tasks = [asyncio.get_running_loop().create_task(_absorbs(n)) for n in (0, 1, 3)]
    failed = asyncio.get_running_loop().create_task(_fails())
    await asyncio.sleep(0)
    t0 = time.monotonic()
    await stop_tasks([*tasks, failed], timeout_s=5)
    assert time.monotonic() - t0 < 2
    assert all(t.cancelled() for t in tasks) and failed.done()


async def test_a_loop_that_never_stops_is_left_after_the_deadline() -> None:
    released = asyncio.Event()
    stubborn = asyncio.get_running_loop().create_task(_absorbs(0, released))
    await asyncio.sleep(0)
    t0 = time.monotonic()
    await stop_tasks([stubborn], timeout_s=0.5)
    assert 0.4 < time.monotonic() - t0 < 2 and not stubborn.done()
    released.set()  # the test's own cleanup
    await stop_tasks([stubborn], timeout_s=1)
    assert stubborn.cancelled()
